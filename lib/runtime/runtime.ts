import { EventEmitter } from 'node:events';
import * as os from 'node:os';
import type {
  ChatHistoryItem,
  Llama,
  LlamaChat,
  LlamaCompletion,
  LlamaContext,
  LlamaContextSequence,
  LlamaGrammar,
  LlamaGrammarEvaluationState,
  LlamaJsonSchemaGrammar,
  LlamaModel,
  Token,
} from 'node-llama-cpp' with { 'resolution-mode': 'import' };
import { checkAdapterFile, type ResolvedAdapter } from './adapters';
import { BatchGatherer } from './batching';
import { ThreadGovernor } from './threads';
import { LlmError, isLlmError } from './errors';
import { JsonEnd } from './json-end';
import { ForcedRuns } from './jump-forward';
import { compileSchema, describeErrors, schemaHash, type CompiledSchema } from './json-schema';
import { calibratedThreads, defaultThreads, loadNodeLlamaCpp } from './llama';
import { MetricsWindow, type RuntimeMetrics } from './metrics';
import { Scheduler, type Priority, type ScheduleOptions } from './scheduler';

export interface ContextSettings {
  /** CPU threads for decoding; default: the fastest count for this model and machine, timed at load (see calibratedThreads). */
  threads?: number;
  contextSize?: number;
  /** Parallel sequences: this many requests decode together in one batch. */
  sequences?: number;
  /** Requests that may wait for a sequence; one more is rejected at once. */
  queueLimit?: number;
  /** Deadline applied to a request that gives none, in ms. */
  defaultTimeoutMs?: number;
}

export interface ResolvedContextSettings {
  threads: number;
  contextSize: number;
  sequences: number;
  queueLimit: number;
  defaultTimeoutMs: number;
}

export function resolveContextSettings(settings: ContextSettings = {}): ResolvedContextSettings {
  const positive = (v: number | undefined, fallback: number): number =>
    v !== undefined && Number.isFinite(v) && v > 0 ? Math.floor(v) : fallback;
  return {
    threads: positive(settings.threads, defaultThreads()),
    contextSize: positive(settings.contextSize, 4096),
    sequences: positive(settings.sequences, 4),
    queueLimit:
      settings.queueLimit !== undefined && settings.queueLimit >= 0 ? Math.floor(settings.queueLimit) : 32,
    defaultTimeoutMs: positive(settings.defaultTimeoutMs, 120_000),
  };
}

/**
 * Settings as a person types them in a form: blank means the default, anything else must be a
 * whole number in range.
 */
export function parseContextSettings(raw: {
  threads?: string;
  contextSize?: string;
  sequences?: string;
  queueLimit?: string;
  timeout?: string;
}): ContextSettings {
  const num = (value: string | undefined, label: string, min: number, max: number): number | undefined => {
    if (value === undefined || String(value).trim() === '') return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new LlmError(
        'bad_request',
        `${label} must be a whole number from ${min} to ${max} (got "${value}").`,
      );
    }
    return n;
  };
  const timeoutS = num(raw.timeout, 'Timeout (s)', 1, 3600);
  return {
    threads: num(raw.threads, 'Threads', 1, 256),
    contextSize: num(raw.contextSize, 'Context size', 128, 1_048_576),
    sequences: num(raw.sequences, 'Sequences', 1, 64),
    queueLimit: num(raw.queueLimit, 'Queue limit', 0, 100_000),
    defaultTimeoutMs: timeoutS === undefined ? undefined : timeoutS * 1000,
  };
}

export interface ModelInfo {
  name?: string;
  version?: string;
  architecture: string;
  /** llama.cpp's file type (quantization), e.g. 7 = Q8_0, 15 = Q4_K_M. */
  fileType?: number;
  parameters: number;
  trainContextSize: number;
  /** Whether the file carries its own chat template (else a generic one is used). */
  chatTemplate: boolean;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface GenerateOptions {
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  priority?: Priority;
  /** Relative deadline in ms: a request that cannot start in time fails, one that runs past it is aborted. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Who asks (node id): the scheduler is fair between owners. */
  owner?: string;
  /** Requests sharing a prompt prefix name it here to reuse a sequence that already holds it. */
  affinity?: string;
  /** Streams text as it is decoded. */
  onText?: (text: string) => void;
  stop?: string[];
  /** Called when the request leaves the queue and starts on a sequence. */
  onStart?: () => void;
  /** A health probe: waits behind production requests and never counts against the queue limit. */
  probe?: boolean;
  /**
   * A KV-cache snapshot for this conversation: loaded into the sequence before decoding when the
   * sequence does not already hold the conversation, and written after. The caller ties the file
   * to this exact model (see `modelSha256`): a snapshot of another model can crash llama.cpp.
   */
  snapshot?: { load?: string; save?: string };
  /**
   * JSON only: characters the grammar forces (keys, punctuation, the rest of an enum value) are fed
   * to the model as one batch instead of one decode each. Default true; false decodes every token
   * (for comparison).
   */
  jumpForward?: boolean;
}

export interface GenerationResult {
  text: string;
  /** Where the sequence's prefix came from: already in the sequence, a snapshot file, or evaluated. */
  prefix?: 'warm' | 'snapshot' | 'cold';
  /** False when the requested KV snapshot could not be written (the answer stands). */
  snapshotSaved?: false;
  tokensIn: number;
  tokensOut: number;
  queuedMs: number;
  ttftMs: number;
  totalMs: number;
  stopReason: 'eos' | 'stop' | 'maxTokens';
  /** JSON with jump-forward: how many of tokensOut the grammar forced (fed without sampling). */
  tokensForced?: number;
}

export interface JsonResult<T = unknown> extends GenerationResult {
  value: T;
  schemaHash: string;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the schema is the user's, known only at run time
type JsonGrammar = LlamaJsonSchemaGrammar<any>;

const GRAMMAR_CACHE = 32;
/** Tokens per decode batch (a prompt longer than this is read in several). */
const BATCH_SIZE = 128;
/** Models smaller than this keep defaultThreads() when no thread count is set. */
const CALIBRATE_MIN_BYTES = 20e6;
/** Compiled schemas (ajv validators) by hash: one compile per distinct msg.schema while it is used. */
const SCHEMA_CACHE = 64;
/** Open runtimes per node-llama-cpp instance whose thread count was set by the user. */
const fixedThreadUsers = new WeakMap<Llama, number>();

/**
 * What a node sees of a runtime, whether it runs in this process (ModelRuntime) or in the runtime
 * child process (RemoteRuntime): plain data in, plain data out, reason-coded errors.
 */
export interface LlmRuntime {
  readonly modelSha256: string;
  readonly settings: ResolvedContextSettings;
  complete(prompt: string, options?: GenerateOptions): Promise<GenerationResult>;
  chat(messages: ChatMessage[], options?: GenerateOptions): Promise<GenerationResult>;
  generateJson<T = unknown>(
    input: string | ChatMessage[],
    schema: unknown,
    options?: GenerateOptions,
  ): Promise<JsonResult<T>>;
  /** Tokens the model's tokenizer makes of each text (for windows over a conversation). */
  tokenCounts(texts: string[]): Promise<number[]>;
  getMetrics(): RuntimeMetrics;
  on(event: 'change', listener: () => void): this;
  off(event: 'change', listener: () => void): this;
}

interface Slot {
  sequence: LlamaContextSequence;
  completion: LlamaCompletion;
  chat: LlamaChat;
}

/** What decode() hands back before it is made a GenerationResult. */
interface Decoded {
  text: string;
  tokensIn: number;
  tokensOut: number;
  firstTokenAt: number;
  /** node-llama-cpp's stop reason, or 'jsonComplete' when the value's closing bracket ended it. */
  rawStop: string;
  tokensForced?: number;
}

/**
 * One context over a loaded model: N sequences behind a scheduler. Every method takes and returns
 * plain data (prompts, options, results, reason-coded errors) so the same interface can later be
 * served from a child process.
 */
export class ModelRuntime extends EventEmitter implements LlmRuntime {
  readonly settings: ResolvedContextSettings;
  private readonly schemas = new Map<string, CompiledSchema>();
  private readonly scheduler: Scheduler;
  private readonly metrics = new MetricsWindow();
  private readonly slots: Slot[] = [];
  private readonly grammars = new Map<string, Promise<JsonGrammar>>();
  private readonly running = new Set<AbortController>();
  private readonly gatherer = new BatchGatherer();
  /** The thread counts the governor moves between, when the runtime chose the count. */
  private governed: { low: number; high: number } | undefined;
  private governor: ThreadGovernor | undefined;
  /** The thread count was set by the user: it holds for the whole process while this runtime is open. */
  private userThreads = false;
  private context: LlamaContext | undefined;

  private constructor(
    private readonly model: LlamaModel,
    settings: ResolvedContextSettings,
    /** The sha256 of the model file: what a KV snapshot must be tied to. */
    readonly modelSha256: string,
  ) {
    super();
    this.settings = settings;
    this.scheduler = new Scheduler({ slots: settings.sequences, queueLimit: settings.queueLimit });
  }

  static async create(
    model: LlamaModel,
    settings: ContextSettings = {},
    modelSha256 = '',
    /** Where calibrated thread counts are remembered (JSON); none: once per process. */
    threadsCacheFile?: string,
    /** LoRA adapters applied to this context (checked against the model first). */
    adapters: readonly ResolvedAdapter[] = [],
  ): Promise<ModelRuntime> {
    for (const adapter of adapters) await checkAdapterFile(adapter, model.fileInfo);
    // A model of a few MB decodes a token in less time than a thread takes to wake: more threads
    // only cost there (perf anchor, stories260K: 1,414 t/s at 1 thread, 67 at 2), so it keeps
    // defaultThreads() without a calibration.
    const calibrated =
      settings.threads === undefined && model.size >= CALIBRATE_MIN_BYTES
        ? await calibratedThreads(model, modelSha256 || model.filename || 'model', {
            cacheFile: threadsCacheFile,
          })
        : undefined;
    const threads = settings.threads ?? calibrated;
    const runtime = new ModelRuntime(model, resolveContextSettings({ ...settings, threads }), modelSha256);
    // A count chosen by the runtime is kept right while the load changes; a count the user set is kept.
    const cores = os.availableParallelism();
    runtime.userThreads = settings.threads !== undefined;
    if (calibrated !== undefined && cores > 1) {
      const high = Math.max(calibrated, 2);
      runtime.governed = { low: high > 2 ? Math.floor(high / 2) : 1, high };
    }
    await runtime.open(adapters);
    return runtime;
  }

  private async open(adapters: readonly ResolvedAdapter[]): Promise<void> {
    const { LlamaCompletion, LlamaChat, resolveChatWrapper } = await loadNodeLlamaCpp();
    const { contextSize, sequences, threads } = this.settings;
    const lora = adapters.length
      ? { adapters: adapters.map((a) => ({ filePath: a.file, scale: a.scale })) }
      : undefined;
    try {
      this.context = await this.model.createContext({
        // Per sequence: node-llama-cpp gives each sequence its own contextSize cells.
        contextSize: Math.min(contextSize, this.model.trainContextSize),
        sequences,
        // Governed: the context may use up to the high count; the governor sets how many it does.
        threads: this.governed?.high ?? threads,
        lora,
        // node-llama-cpp's default of 512 reserves a 99 MB compute buffer on a SmolLM2-sized model,
        // 128 a 25 MB one; reading a prompt on one CPU thread was within the noise of 512 in
        // batches of 128 (llama-bench pp512, bench/README.md).
        batchSize: Math.min(BATCH_SIZE, Math.min(contextSize, this.model.trainContextSize) * sequences),
        batching: {
          dispatchSchedule: (dispatch) => {
            this.metrics.batches++;
            setImmediate(dispatch);
          },
          itemPrioritizationStrategy: this.gatherer.strategy,
        },
      });
    } catch (err) {
      if (!lora) throw err;
      throw new LlmError(
        'model_load',
        `The LoRA adapters (${adapters.map((a) => a.file).join(', ')}) could not be applied to the model: ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.gatherer.track(this.context);
    const llama = this.model.llama;
    if (this.userThreads) {
      fixedThreadUsers.set(llama, (fixedThreadUsers.get(llama) ?? 0) + 1);
      // A governor of another runtime may have lowered the limit: a count the user set is used whole.
      llama.maxThreads = Math.max(llama.maxThreads, os.availableParallelism());
    } else if (this.governed) {
      this.governor = new ThreadGovernor({
        ...this.governed,
        start: threads,
        // node-llama-cpp hands each decode at most llama.maxThreads threads. It holds for every
        // context of this process: while a context with a count the user set is open, that count
        // stands and nothing is governed.
        knob: (n) => {
          if (fixedThreadUsers.get(llama)) return;
          llama.maxThreads = n;
          this.settings.threads = n;
        },
      });
      this.gatherer.onBatch = (tokens, generation) => this.governor?.step(tokens, generation);
    }
    const chatWrapper = resolveChatWrapper(this.model);
    for (let i = 0; i < sequences; i++) {
      const sequence = this.context.getSequence();
      this.slots.push({
        sequence,
        completion: new LlamaCompletion({ contextSequence: sequence }),
        chat: new LlamaChat({ contextSequence: sequence, chatWrapper }),
      });
    }
  }

  /** What the model file says of itself: for health checks and the admin endpoint. */
  get modelInfo(): ModelInfo {
    const general = this.model.fileInfo.metadata?.general ?? ({} as Record<string, unknown>);
    const meta = general as Record<string, unknown>;
    return {
      name: typeof meta.name === 'string' ? meta.name : undefined,
      version: typeof meta.version === 'string' ? meta.version : undefined,
      architecture: String(meta.architecture ?? ''),
      fileType: typeof meta.file_type === 'number' ? meta.file_type : undefined,
      parameters: this.model.fileInsights.totalParameters,
      trainContextSize: this.model.trainContextSize,
      chatTemplate: Boolean(
        (this.model.fileInfo.metadata as { tokenizer?: { chat_template?: unknown } })?.tokenizer
          ?.chat_template,
      ),
    };
  }

  /** The GPU backend the model runs on (`cuda`, `vulkan`, `metal`), or false on CPU. */
  get gpu(): string | false {
    return this.model.llama.gpu;
  }

  /** Another user shares this context and asks for a longer queue. */
  raiseQueueLimit(limit: number): void {
    this.scheduler.raiseQueueLimit(limit);
  }

  get queueLimit(): number {
    return this.scheduler.limit;
  }

  /** The context size each sequence really has: what was asked, capped by what the model was trained on. */
  get contextSize(): number {
    return this.context?.contextSize ?? Math.min(this.settings.contextSize, this.model.trainContextSize);
  }

  /** How many compiled schemas are kept (for tests and the bench). */
  get cachedSchemas(): number {
    return this.schemas.size;
  }

  /** Tokens this model's tokenizer makes of a text: for windows over a conversation. */
  countTokens(text: string): number {
    return this.model.tokenize(text).length;
  }

  async tokenCounts(texts: string[]): Promise<number[]> {
    return texts.map((t) => this.countTokens(t));
  }

  getMetrics(): RuntimeMetrics {
    return {
      ...this.metrics.snapshot({
        queued: this.scheduler.queued,
        active: this.scheduler.active,
        sequences: this.settings.sequences,
      }),
      decodes: this.gatherer.decodes,
      threads: this.settings.threads,
      ...(this.governor ? { threadSwitches: this.governor.switches } : {}),
    };
  }

  complete(prompt: string, options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.generate(prompt, options);
  }

  chat(messages: ChatMessage[], options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.generate(messages, options);
  }

  /**
   * Decodes under a grammar built from the schema (structure, string and array bounds), then
   * validates the whole schema with ajv (minimum, pattern, ... that the grammar cannot force).
   */
  async generateJson<T = unknown>(
    input: string | ChatMessage[],
    schema: unknown | CompiledSchema,
    options: GenerateOptions = {},
  ): Promise<JsonResult<T>> {
    // The queue first: a request that would be refused costs no schema compile and no grammar.
    const refused = this.scheduler.admission(this.scheduleOptions(options));
    if (refused) throw this.failed(refused);
    let compiled: CompiledSchema;
    try {
      compiled = isCompiled(schema) ? schema : this.compiled(schema);
    } catch (err) {
      throw this.failed(err);
    }
    const grammar = await this.grammarFor(compiled);
    const result = await this.generate(
      input,
      { ...options, temperature: options.temperature ?? 0 },
      grammar,
      jumpsForward(compiled.grammarSchema),
    );
    let value: unknown;
    try {
      value = grammar.parse(result.text);
    } catch (err) {
      const truncated = result.stopReason === 'maxTokens';
      throw this.failed(
        new LlmError(
          truncated ? 'truncated' : 'invalid',
          truncated
            ? `The output was cut off at ${result.tokensOut} tokens before the JSON was complete; raise max tokens or tighten the schema's bounds.`
            : `The output is not valid JSON: ${(err as Error).message}`,
          { cause: err },
        ),
      );
    }
    if (!compiled.validate(value)) {
      throw this.failed(
        new LlmError(
          'invalid',
          `The output does not match the schema: ${describeErrors(compiled.validate.errors)}`,
        ),
      );
    }
    return { ...result, value: value as T, schemaHash: compiled.hash };
  }

  /** A schema compiled once per hash, the most recently used kept (msg.schema can be endless). */
  private compiled(schema: unknown): CompiledSchema {
    const hash = schemaHash(schema);
    let compiled = this.schemas.get(hash);
    if (compiled) {
      this.schemas.delete(hash);
    } else {
      compiled = compileSchema(schema);
      if (this.schemas.size >= SCHEMA_CACHE) this.schemas.delete(this.schemas.keys().next().value!);
    }
    this.schemas.set(hash, compiled);
    return compiled;
  }

  private scheduleOptions(options: GenerateOptions): ScheduleOptions {
    const timeoutMs = options.timeoutMs ?? this.settings.defaultTimeoutMs;
    return {
      priority: options.priority,
      owner: options.owner,
      affinity: options.affinity,
      signal: options.signal,
      deadline: Date.now() + timeoutMs,
      probe: options.probe,
    };
  }

  /**
   * Grammars by schema, the most recently used last: schemas from msg.schema can be endless, so
   * only the newest GRAMMAR_CACHE are kept (a dropped grammar is freed by the garbage collector).
   */
  private grammarFor(compiled: CompiledSchema): Promise<JsonGrammar> {
    let grammar = this.grammars.get(compiled.hash);
    if (grammar) {
      this.grammars.delete(compiled.hash);
      this.grammars.set(compiled.hash, grammar);
    } else {
      if (this.grammars.size >= GRAMMAR_CACHE) this.grammars.delete(this.grammars.keys().next().value!);
      grammar = this.model.llama
        .createGrammarForJsonSchema(compiled.grammarSchema as never)
        .then((g) => g as JsonGrammar)
        .catch((err: Error) => {
          this.grammars.delete(compiled.hash);
          throw new LlmError('bad_request', `The schema cannot be turned into a grammar: ${err.message}`, {
            cause: err,
          });
        });
      this.grammars.set(compiled.hash, grammar);
    }
    return grammar;
  }

  private async generate(
    input: string | ChatMessage[],
    options: GenerateOptions,
    grammar?: LlamaGrammar,
    jumpForward = false,
  ): Promise<GenerationResult> {
    if (typeof input === 'string' ? input.length === 0 : !Array.isArray(input) || input.length === 0) {
      throw this.failed(new LlmError('bad_request', 'The prompt is empty.'));
    }
    const enqueuedAt = performance.now();
    try {
      return await this.scheduler.run(async ({ slot, signal, warm }) => {
        const controller = new AbortController();
        const abort = (): void => controller.abort(signal.reason);
        signal.addEventListener('abort', abort, { once: true });
        this.running.add(controller);
        options.onStart?.();
        this.emit('change');
        try {
          const prefix = await this.restore(this.slots[slot], warm, options.snapshot?.load);
          const result = await this.decode(
            this.slots[slot],
            input,
            options,
            controller.signal,
            enqueuedAt,
            grammar,
            jumpForward,
          );
          // A snapshot only saves a later re-read: a disk that refuses it must not cost this answer.
          const saved = options.snapshot?.save
            ? await this.slots[slot].sequence.saveStateToFile(options.snapshot.save).then(
                () => true,
                () => false,
              )
            : undefined;
          return { ...result, prefix, ...(saved === false ? { snapshotSaved: false as const } : {}) };
        } finally {
          signal.removeEventListener('abort', abort);
          this.running.delete(controller);
          this.emit('change');
        }
      }, this.scheduleOptions(options));
    } catch (err) {
      throw this.failed(err);
    } finally {
      this.emit('change');
    }
  }

  private async restore(
    slot: Slot,
    warm: boolean,
    file: string | undefined,
  ): Promise<'warm' | 'snapshot' | 'cold'> {
    if (warm) return 'warm';
    if (!file) return 'cold';
    try {
      await slot.sequence.clearHistory();
      await slot.sequence.loadStateFromFile(file, { acceptRisk: true });
      return 'snapshot';
    } catch {
      // A missing or unreadable snapshot only costs a re-read of the history.
      await slot.sequence.clearHistory();
      return 'cold';
    }
  }

  private async decode(
    slot: Slot,
    input: string | ChatMessage[],
    options: GenerateOptions,
    signal: AbortSignal,
    enqueuedAt: number,
    grammar: LlamaGrammar | undefined,
    jumpForward: boolean,
  ): Promise<GenerationResult> {
    const startedAt = performance.now();
    let decoded: Decoded | undefined;
    this.gatherer.generating++;
    try {
      if (grammar && jumpForward && options.jumpForward !== false && !options.stop?.length) {
        decoded = await this.decodeJumpingForward(slot, input, options, signal, grammar);
      }
      decoded ??= await this.decodeGeneral(slot, input, options, signal, grammar);
    } catch (err) {
      if (signal.aborted) {
        throw isLlmError(signal.reason)
          ? signal.reason
          : new LlmError('cancelled', 'The request was cancelled.');
      }
      throw err;
    } finally {
      if (--this.gatherer.generating === 0) this.governor?.idle();
    }
    const { text, tokensIn, tokensOut, firstTokenAt, rawStop, tokensForced } = decoded;
    if (rawStop === 'abort') {
      throw isLlmError(signal.reason)
        ? signal.reason
        : new LlmError('cancelled', 'The request was cancelled.');
    }
    const end = performance.now();
    const ttftMs = (firstTokenAt || end) - enqueuedAt;
    const result: GenerationResult = {
      text,
      tokensIn,
      tokensOut,
      queuedMs: round(startedAt - enqueuedAt),
      ttftMs: round(ttftMs),
      totalMs: round(end - enqueuedAt),
      stopReason: rawStop === 'maxTokens' ? 'maxTokens' : rawStop === 'eogToken' ? 'eos' : 'stop',
      ...(tokensForced !== undefined ? { tokensForced } : {}),
    };
    this.metrics.record({
      tokensIn,
      tokensOut,
      tokensForced,
      ttftMs: result.ttftMs,
      totalMs: result.totalMs,
      decodeMs: end - (firstTokenAt || startedAt),
    });
    return result;
  }

  /** Through node-llama-cpp's LlamaCompletion / LlamaChat: every prompt, any grammar. */
  private async decodeGeneral(
    slot: Slot,
    input: string | ChatMessage[],
    options: GenerateOptions,
    signal: AbortSignal,
    grammar: LlamaGrammar | undefined,
  ): Promise<Decoded> {
    let firstTokenAt = 0;
    let tokensOut = 0;
    const onToken = (tokens: readonly unknown[]): void => {
      if (tokensOut === 0) firstTokenAt = performance.now();
      tokensOut += tokens.length;
    };
    // Under a grammar the answer ends with its closing bracket: generation stops there, without the
    // whitespace a grammar allows after it (each of those tokens is a full decode).
    const jsonEnd = grammar ? new JsonEnd() : undefined;
    const complete = new AbortController();
    const onTextChunk =
      options.onText || jsonEnd
        ? (text: string) => {
            options.onText?.(text);
            if (jsonEnd?.push(text)) complete.abort();
          }
        : undefined;
    const common = {
      maxTokens: options.maxTokens ?? 256,
      temperature: options.temperature ?? 0,
      seed: options.seed,
      signal: jsonEnd ? AbortSignal.any([signal, complete.signal]) : signal,
      stopOnAbortSignal: jsonEnd ? true : undefined,
      grammar,
      onToken,
      onTextChunk,
    };
    let text: string;
    let tokensIn: number;
    let rawStop: string;
    if (typeof input === 'string') {
      tokensIn = this.model.tokenize(input).length;
      const res = await slot.completion.generateCompletionWithMeta(input, {
        ...common,
        customStopTriggers: options.stop,
      });
      text = res.response;
      rawStop = res.metadata.stopReason;
    } else {
      tokensIn = this.messageTokens(input);
      const res = await slot.chat.generateResponse(toHistory(input), {
        ...common,
        customStopTriggers: options.stop,
      });
      text = res.response;
      rawStop = res.metadata.stopReason;
    }
    if (rawStop === 'abort' && complete.signal.aborted && !signal.aborted) rawStop = 'jsonComplete';
    return { text, tokensIn, tokensOut, firstTokenAt, rawStop };
  }

  private messageTokens(messages: ChatMessage[]): number {
    return messages.reduce((n, m) => n + this.model.tokenize(m.content).length, 0);
  }

  /**
   * A JSON answer with jump-forward: after each sampled token, the characters
   * the grammar forces from there (see ForcedRuns) are fed to the model together with that token
   * in one batch, so a key, its quotes and colon or the rest of an enum value cost one decode
   * instead of one each. Sampling (temperature, seed, the repeat penalty of LlamaChat's defaults)
   * is as in LlamaChat. Undefined where it does not apply (a prompt that would need a context
   * shift, a vocabulary the probe cannot use): the caller then goes the general way.
   */
  private async decodeJumpingForward(
    slot: Slot,
    input: string | ChatMessage[],
    options: GenerateOptions,
    signal: AbortSignal,
    grammar: LlamaGrammar,
  ): Promise<Decoded | undefined> {
    const forced = ForcedRuns.for(this.model);
    if (!forced || !this.context) return undefined;
    const { LlamaGrammarEvaluationState } = await loadNodeLlamaCpp();
    const maxTokens = options.maxTokens ?? 256;
    let prompt: Token[];
    let tokensIn: number;
    if (typeof input === 'string') {
      // As LlamaCompletion reads a prompt: the beginning-of-text token where the model wants one.
      const bos = this.model.tokens.shouldPrependBosToken ? this.model.tokens.bos : null;
      prompt =
        bos != null
          ? [bos, ...this.model.tokenize(input, false, 'trimLeadingSpace')]
          : this.model.tokenize(input, false);
      tokensIn = this.model.tokenize(input).length;
    } else {
      const { contextText } = slot.chat.chatWrapper.generateContextState({ chatHistory: toHistory(input) });
      prompt = contextText.tokenize(this.model.tokenizer);
      tokensIn = this.messageTokens(input);
    }
    if (prompt.length === 0 || prompt.length + maxTokens + 1 >= this.context.contextSize) return undefined;
    const { sequence } = slot;
    // What the sequence already holds of this prompt stays (a warm instruction prefix); the last
    // prompt token is always evaluated again, for the logits of the first answer token.
    const kept = Math.min(sequence.compareContextTokens(prompt).firstDifferentIndex, prompt.length - 1);
    if (kept < sequence.nextTokenIndex) {
      await sequence.eraseContextTokenRanges([{ start: kept, end: sequence.nextTokenIndex }]);
    }
    let state: LlamaGrammarEvaluationState = new LlamaGrammarEvaluationState({ model: this.model, grammar });
    const out: Token[] = [];
    const lastPromptTokens = prompt.slice(-8);
    const jsonEnd = new JsonEnd();
    const newline = this.model.tokens.nl;
    let emitted = 0;
    let firstTokenAt = 0;
    let complete = false;
    const emit = (final: boolean): void => {
      const text = this.model.detokenize(out, false, lastPromptTokens);
      // A character split over two tokens waits for its second half.
      let end = text.length;
      while (!final && end > emitted && text.charCodeAt(end - 1) === 0xfffd) end--;
      if (end <= emitted) return;
      const piece = text.slice(emitted, end);
      emitted = end;
      options.onText?.(piece);
      if (jsonEnd.push(piece)) complete = true;
    };
    // Text goes out once the prompt is read: the first token is there when the model has spoken.
    const take = (tokens: Token[]): void => {
      firstTokenAt ||= performance.now();
      out.push(...tokens);
      emit(false);
    };
    let tokensForced = 0;
    const opening = forced.next(state, maxTokens);
    if (opening) {
      state = opening.state;
      out.push(...opening.tokens);
      tokensForced += opening.tokens.length;
    }
    const iterator = sequence.evaluate([...prompt.slice(kept), ...(opening?.tokens ?? [])], {
      temperature: options.temperature ?? 0,
      seed: options.seed,
      grammarEvaluationState: () => state,
      repeatPenalty: {
        punishTokens: () => out.slice(-64).filter((t) => t !== newline),
        maxPunishTokens: 64,
      },
    });
    let rawStop = 'maxTokens';
    try {
      let step = await iterator.next();
      for (;;) {
        if (step.done) {
          rawStop = 'eogToken';
          break;
        }
        const token = step.value;
        take([token]);
        if (complete || out.length >= maxTokens || signal.aborted) break;
        const run = forced.next(state, maxTokens - out.length);
        if (run) {
          state = run.state;
          take(run.tokens);
          tokensForced += run.tokens.length;
          if (complete || out.length >= maxTokens) break;
        }
        step = await iterator.next(run ? [token, ...run.tokens] : undefined);
      }
    } finally {
      await iterator.return();
    }
    if (!complete && !signal.aborted) emit(true);
    if (complete) rawStop = 'jsonComplete';
    else if (signal.aborted) rawStop = 'abort';
    const text = this.model.detokenize(out, false, lastPromptTokens);
    return { text, tokensIn, tokensOut: out.length, firstTokenAt, rawStop, tokensForced };
  }

  private failed(err: unknown): LlmError {
    // Not the answer's fault, so not worth a retry: it goes to the caller (a Catch node) as is.
    const error = isLlmError(err)
      ? err
      : new LlmError('internal', `Generation failed: ${(err as Error)?.message ?? String(err)}`, {
          cause: err,
        });
    if (!(error as { counted?: boolean }).counted) {
      Object.defineProperty(error, 'counted', { value: true });
      this.metrics.fail(error.message, error.code === 'queue_full' || error.code === 'closed');
    }
    return error;
  }

  /** Rejects what waits, aborts what runs, then frees the sequences and the context (not the model). */
  async dispose(): Promise<void> {
    this.scheduler.close('The model runtime was closed (redeploy or shutdown).');
    for (const controller of this.running)
      controller.abort(new LlmError('closed', 'The model runtime was closed.'));
    const deadline = Date.now() + 5000;
    while (this.running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const slot of this.slots.splice(0)) {
      slot.chat.dispose({ disposeSequence: false });
      slot.completion.dispose({ disposeSequence: false });
      slot.sequence.dispose();
    }
    await this.context?.dispose();
    if (this.context && this.userThreads) {
      const llama = this.model.llama;
      fixedThreadUsers.set(llama, (fixedThreadUsers.get(llama) ?? 1) - 1);
    }
    this.context = undefined;
    this.removeAllListeners();
  }
}

/**
 * Whether jump-forward may decode this schema's answers: an object or array at the top (its end is
 * the closing bracket, see JsonEnd) and only ASCII in the schema, so that every character the
 * grammar could admit outside a string is one the probe tries (see ForcedRuns).
 */
function jumpsForward(schema: unknown): boolean {
  const type = (schema as { type?: unknown })?.type;
  return (type === 'object' || type === 'array') && /^[\x20-\x7e]*$/.test(JSON.stringify(schema));
}

function isCompiled(schema: unknown): schema is CompiledSchema {
  return typeof schema === 'object' && schema !== null && 'grammarSchema' in schema && 'validate' in schema;
}

function toHistory(messages: ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = messages.map((m) =>
    m.role === 'system'
      ? { type: 'system', text: m.content }
      : m.role === 'user'
        ? { type: 'user', text: m.content }
        : { type: 'model', response: [m.content] },
  );
  history.push({ type: 'model', response: [] });
  return history;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
