import { setMaxListeners } from 'node:events';
import type { Node, NodeAPI, NodeMessage, NodeMessageInFlow, NodeStatus } from 'node-red';
import {
  DEFAULT_MAX_INPUT,
  buildMessages,
  generateValidJson,
  inputLength,
  inputTooLong,
  rejectReason,
  type AttemptOptions,
  type Example,
} from '../lib/llm/prompt';
import {
  messagesFor,
  type MissionState,
  type MissionUpdate,
  type SessionRecord,
  type SessionStore,
} from '../lib/session';
import {
  LlmError,
  type CompiledSchema,
  type ChatMessage,
  type GenerateOptions,
  type GenerationResult,
  type JsonResult,
  type LeaseState,
  type LlmRuntime,
  type Priority,
} from '../lib/runtime';
import { defaultSessionKey, type KvSessionStoreNode } from './kv-session-store';
import { formNumber } from './form';
import { StatusThrottle } from './status';
import type { LlmRuntimeNode } from './types';

type Send = (msg: Array<NodeMessage | null>) => void;
type Done = (err?: Error) => void;

/** The runtime config node's strings: its "ready" is what an idle LLM node shows. */
const RUNTIME_NS = 'node-red-contrib-edge-llm/llm-runtime:llm-runtime';

/** The settings llm-parse and llm-plan share, as stored by their edit dialogs. */
export interface GenerationDef {
  runtime: string;
  /** Optional kv-session-store: continue the conversation and advance the mission of msg.session. */
  sessions?: string;
  maxTokens: string;
  temperature: string;
  timeout: string;
  priority: string;
  retries: string;
  /** The longest input accepted, in characters (blank: DEFAULT_MAX_INPUT). */
  maxInput?: string;
}

export interface GenerationSettings {
  maxTokens: number;
  temperature: number;
  timeoutMs: number | undefined;
  priority: Priority;
  retries: number;
  maxInput: number;
}

/** What a message may set in place of its node's settings, when the node allows it. */
export interface SettingsMsg {
  temperature?: unknown;
  maxTokens?: unknown;
  priority?: unknown;
  /** Seconds, like the node's Timeout field. */
  timeout?: unknown;
}

/**
 * The settings for one message: the node's, with `msg.temperature`, `msg.maxTokens`,
 * `msg.priority` and `msg.timeout` (seconds) in their place where the node allows it (its
 * "msg overrides" box). A value out of range is refused with a sentence that names the field, never
 * clamped; a node that does not allow overrides ignores them (`msg.priority` and `msg.timeout` have
 * other meanings in other nodes' messages).
 */
export function withOverrides(
  settings: GenerationSettings,
  msg: SettingsMsg,
  allowed: boolean,
): GenerationSettings {
  if (!allowed) return settings;
  const number = (
    value: unknown,
    field: string,
    min: number,
    max: number,
    whole = false,
  ): number | undefined => {
    if (value === undefined) return undefined;
    const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max || (whole && !Number.isInteger(n)))
      throw new LlmError(
        'bad_request',
        `msg.${field} must be ${whole ? 'a whole number' : 'a number'} from ${min} to ${max}, not ${JSON.stringify(value) ?? String(value)}.`,
      );
    return n;
  };
  const out = { ...settings };
  const temperature = number(msg.temperature, 'temperature', 0, 2);
  if (temperature !== undefined) out.temperature = temperature;
  const maxTokens = number(msg.maxTokens, 'maxTokens', 1, 32768, true);
  if (maxTokens !== undefined) out.maxTokens = maxTokens;
  const timeout = number(msg.timeout, 'timeout', 0, 3600);
  if (timeout !== undefined) out.timeoutMs = timeout > 0 ? timeout * 1000 : undefined;
  if (msg.priority !== undefined) {
    if (!['high', 'normal', 'low'].includes(msg.priority as string))
      throw new LlmError(
        'bad_request',
        `msg.priority must be "high", "normal" or "low", not ${JSON.stringify(msg.priority) ?? String(msg.priority)}.`,
      );
    out.priority = msg.priority as Priority;
  }
  return out;
}

export function parseGenerationSettings(def: GenerationDef): GenerationSettings {
  const number = (raw: string, label: string, fallback: number, min: number, max: number): number =>
    formNumber(raw, fallback, { min, max }, () => `${label} must be from ${min} to ${max}.`);
  const priority = (def.priority || 'normal') as Priority;
  if (!['high', 'normal', 'low'].includes(priority)) throw new Error('Priority must be high, normal or low.');
  const timeoutS = number(def.timeout, 'Timeout', 0, 0, 3600);
  return {
    maxTokens: Math.floor(number(def.maxTokens, 'Max tokens', 512, 1, 32768)),
    temperature: number(def.temperature, 'Temperature', 0, 0, 2),
    timeoutMs: timeoutS > 0 ? timeoutS * 1000 : undefined,
    priority,
    retries: Math.floor(number(def.retries, 'Retries', 1, 0, 10)),
    maxInput: Math.floor(number(def.maxInput ?? '', 'Max input', DEFAULT_MAX_INPUT, 1, 10_000_000)),
  };
}

/**
 * The conversation a message continues: its windowed history goes into the prompt, the sequence
 * that last served it (or its KV snapshot) is reused, and the answer is appended afterwards.
 */
export class SessionTurn {
  private constructor(
    private readonly store: SessionStore,
    readonly key: string,
    readonly record: SessionRecord,
    private readonly snapshot: { load?: string; save: string } | undefined,
  ) {}

  static begin(store: SessionStore, key: string, runtime: LlmRuntime): SessionTurn {
    const record = store.get(key);
    return new SessionTurn(store, key, record, store.snapshotFor(record, runtime.modelSha256));
  }

  /**
   * The system prompt, the examples, then as much of the conversation as fits, then the new text.
   * The model's tokenizer counts every text in one call (in the runtime process, not here).
   */
  async messages(
    system: string,
    examples: Example[],
    text: string,
    runtime: LlmRuntime,
  ): Promise<ChatMessage[]> {
    const texts = [system, text, ...this.record.conversation.map((m) => m.content)];
    const counts = await runtime.tokenCounts(texts);
    const known = new Map(texts.map((t, i) => [t, counts[i]]));
    const windowed = messagesFor(
      this.record,
      system,
      text,
      this.store.maxTokens,
      (t) => known.get(t) ?? Math.ceil(t.length / 3.5),
    );
    const shots: ChatMessage[] = examples.flatMap((e) => [
      { role: 'user' as const, content: e.input },
      { role: 'assistant' as const, content: JSON.stringify(e.output) },
    ]);
    return [windowed[0], ...shots, ...windowed.slice(1)];
  }

  options(): Pick<GenerateOptions, 'affinity' | 'snapshot'> {
    return { affinity: this.record.id, snapshot: this.snapshot };
  }

  /**
   * Records the turn and moves the mission along the states `path` allows from where it is
   * (for example Idle → ReceiveCmd → Parse); a mission elsewhere keeps its state.
   */
  async finish(
    runtime: LlmRuntime,
    text: string,
    result: JsonResult<unknown>,
    path: MissionState[],
    update: MissionUpdate,
  ): Promise<MissionState> {
    await this.recordTurn(runtime, text, JSON.stringify(result.value), result);
    return this.store.advance(this.key, path, update).mission.state;
  }

  /** Records a free-text turn (llm-chat): the conversation grows, the mission stays where it is. */
  async finishText(runtime: LlmRuntime, text: string, result: GenerationResult): Promise<void> {
    await this.recordTurn(runtime, text, result.text, result);
  }

  private async recordTurn(
    runtime: LlmRuntime,
    text: string,
    answer: string,
    result: GenerationResult,
  ): Promise<void> {
    // A snapshot the disk refused (perhaps half written) is never offered for loading.
    const saved = result.snapshotSaved !== false;
    if (!saved) await this.abandon();
    await this.store.appendTurn(this.key, text, answer, {
      snapshotFile: saved ? this.snapshot?.save : undefined,
      modelSha256: runtime.modelSha256,
    });
  }

  async abandon(): Promise<void> {
    if (this.snapshot) await this.store.discardSnapshot(this.snapshot.save);
  }
}

/** A message this node is working on: when it came, and how much of its answer is decoded. */
interface Work {
  receivedAt: number;
  chars: number;
}

/**
 * The wiring llm-parse and llm-plan share: the runtime config node, the status that mixes the
 * runtime's state with the node's own work and last result, and the one place failures are routed.
 */
export class LlmNodeSupport {
  readonly config: LlmRuntimeNode | undefined;
  readonly sessions: KvSessionStoreNode | undefined;
  private lastResult: NodeStatus = {};
  /**
   * Whether timeouts, a full queue and the like go to the node's "rejected" output (llm-parse,
   * llm-plan); llm-chat has none, and sends them to a Catch node with their code.
   */
  rejectedOutput = true;
  private readonly closing = new AbortController();
  private readonly inFlight = new Set<Promise<unknown>>();
  private runtimeReady = false;
  private runtimeView: NodeStatus = {};
  /** This node's own messages, not the runtime's: other nodes on the same runtime are theirs. */
  private readonly working = new Map<object, Work>();
  // Progress comes with every decoded piece: a few status updates a second are enough.
  private readonly shown = new StatusThrottle(() => this.node.status(this.currentStatus()), 500);

  constructor(
    private readonly RED: NodeAPI,
    private readonly node: Node,
    runtimeId: string,
    private readonly ns: string,
    sessionsId?: string,
  ) {
    this.sessions = sessionsId
      ? (RED.nodes.getNode(sessionsId) as KvSessionStoreNode | undefined)
      : undefined;
    // Every message in flight listens for the node's close: as many listeners as messages.
    setMaxListeners(0, this.closing.signal);
    this.config = RED.nodes.getNode(runtimeId) as LlmRuntimeNode | undefined;
    if (!this.config) {
      node.status({ fill: 'red', shape: 'ring', text: this.t('status.no-runtime') });
      node.error(this.t('errors.no-runtime'));
      return;
    }
    this.config.register({
      id: node.id,
      runtimeStatus: (status: NodeStatus, state: LeaseState | 'config-error') => {
        this.runtimeReady = state === 'ready';
        this.runtimeView = status;
        this.shown.now();
      },
    });
  }

  /**
   * A runtime that is not ready shows why (loading, error); a ready one shows this node's own
   * work, else its last result, else "ready" (the runtime's queue belongs to every node on it).
   */
  private currentStatus(): NodeStatus {
    if (!this.runtimeReady) return this.runtimeView;
    const count = this.working.size;
    if (count === 1) {
      const [work] = this.working.values();
      if (work.chars > 0)
        return { fill: 'blue', shape: 'ring', text: this.t('status.generating', { chars: work.chars }) };
    }
    if (count > 0) return { fill: 'blue', shape: 'dot', text: this.t('status.working', { count }) };
    if (this.lastResult.text) return this.lastResult;
    return this.runtimeView.fill === 'green'
      ? this.runtimeView
      : { fill: 'green', shape: 'dot', text: this.RED._(`${RUNTIME_NS}.status.ready`) };
  }

  /** Sets the node's last result and shows it (once no other message of this node is running). */
  private ended(msg: object, status: NodeStatus): void {
    this.working.delete(msg);
    this.lastResult = status;
    this.shown.now();
  }

  t(key: string, params?: Record<string, string | number>): string {
    return this.RED._(`${this.ns}.${key}`, params);
  }

  /** The runtime, once loaded; a clear error if it is missing or failed. */
  /**
   * The runtime, once loaded; a clear error if it is missing or failed. A message does not wait
   * longer than its timeout for a model that is still downloading or loading.
   */
  async runtime(timeoutMs: number | undefined): Promise<LlmRuntime> {
    if (!this.config) throw new Error(this.t('errors.no-runtime'));
    if (this.config.configError) throw new Error(this.config.configError);
    const lease = this.config.lease;
    if (!lease) throw new Error(this.t('errors.no-runtime'));
    if (lease.runtime) return lease.runtime;
    let timer: NodeJS.Timeout | undefined;
    let onClose: (() => void) | undefined;
    const limit = timeoutMs ?? lease.settings.defaultTimeoutMs;
    try {
      return await Promise.race([
        lease.ready,
        new Promise<never>((_, reject) => {
          onClose = () => reject(this.closing.signal.reason as Error);
          this.closing.signal.addEventListener('abort', onClose, { once: true });
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new LlmError('timeout', `The model was not loaded within ${Math.round(limit / 1000)} s.`),
              ),
            limit,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      if (onClose) this.closing.signal.removeEventListener('abort', onClose);
    }
  }

  /**
   * The first check on every message, before anything is parsed, serialised or tokenized: an
   * input over this node's bound is refused at once.
   */
  checkInput(input: unknown, settings: GenerationSettings): void {
    const length = inputLength(input, settings.maxInput);
    if (length > settings.maxInput) throw inputTooLong(input, length, settings.maxInput);
  }

  /** Counts a message's handling, so that closing can wait for it (see closeWith). */
  private track(work: Promise<unknown>): void {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  /** The session turn for a message that names one, when a session store is configured. */
  sessionTurn(msg: { session?: unknown; topic?: unknown }, runtime: LlmRuntime): SessionTurn | undefined {
    if (!this.sessions) return undefined;
    if (!this.sessions.store) throw new Error(this.sessions.configError ?? this.t('errors.no-sessions'));
    const key = defaultSessionKey(msg);
    return key === undefined ? undefined : SessionTurn.begin(this.sessions.store, key, runtime);
  }

  modelName(): string {
    const lease = this.config?.lease;
    return (
      lease?.spec.source
        .split(/[?#]/)[0]
        .split(/[\\/:]/)
        .pop() ?? ''
    );
  }

  /** This node's timeout, else its runtime config node's (a shared context serves several). */
  timeoutMs(settings: GenerationSettings): number | undefined {
    return settings.timeoutMs ?? this.config?.lease?.settings.defaultTimeoutMs;
  }

  /**
   * The options of one request: this node's settings, its runtime config node's timeout when the
   * node sets none (a shared context serves config nodes with other timeouts), the session's
   * sequence and snapshot, this node as the owner the scheduler is fair to, and progress.
   */
  options(settings: GenerationSettings, session: SessionTurn | undefined, msg?: object): AttemptOptions {
    return {
      ...settings,
      timeoutMs: this.timeoutMs(settings),
      ...session?.options(),
      signal: this.closing.signal,
      owner: this.node.id,
      onText: this.progress(msg),
    };
  }

  /** Counts what is decoded for a message, for the status while a long answer comes. */
  private progress(msg: object | undefined): (text: string) => void {
    return (text: string) => {
      const work = msg && this.working.get(msg);
      if (!work) return;
      work.chars += text.length;
      this.shown.soon();
    };
  }

  /** Milliseconds since the node received `msg`: what a person watching the canvas waited. */
  elapsedMs(msg: object): number {
    const work = this.working.get(msg);
    return work ? Math.round(performance.now() - work.receivedAt) : 0;
  }

  /**
   * The node's input handler: `handle` does the work and ends the message; anything it throws
   * ends the message through failed(). Closing the node waits for handlers still running.
   */
  onInput<M extends NodeMessageInFlow>(handle: (msg: M, send: Send, done: Done) => Promise<void>): void {
    this.node.on('input', (msg: NodeMessageInFlow, send: Send, done: Done) => {
      this.working.set(msg, { receivedAt: performance.now(), chars: 0 });
      this.shown.soon(0);
      const work = handle(msg as M, send, done)
        .catch((err: unknown) => this.failed(msg, err, send, done))
        .finally(() => {
          if (this.working.delete(msg)) this.shown.soon(0);
        });
      this.track(work);
    });
  }

  /**
   * Asks the model for JSON on behalf of one message and ends the message: the session's history
   * and sequence when the message names one, retries within one deadline, then the answer on the
   * first output (with the mission advanced) or the reason on the second.
   */
  async ask<T>(
    msg: NodeMessageInFlow & { llm?: unknown },
    send: Send,
    done: Done,
    request: {
      settings: GenerationSettings;
      runtime: LlmRuntime;
      system: string;
      examples: Example[];
      text: string;
      /** Compiled at deploy, or a msg.schema's source (compiled and cached in the runtime). */
      schema: CompiledSchema | object;
      check?: (value: T) => string | undefined;
      /**
       * What a valid answer becomes: msg.payload, the mission's next states and data, the status
       * text (`elapsedMs`: since the node received the message).
       */
      deliver: (
        result: JsonResult<T>,
        elapsedMs: number,
      ) => {
        payload: unknown;
        path: MissionState[];
        update: MissionUpdate;
        status: string;
      };
    },
  ): Promise<void> {
    const { runtime, settings, system, examples, text } = request;
    const session = this.sessionTurn(msg, runtime);
    try {
      const messages = session
        ? await session.messages(system, examples, text, runtime)
        : buildMessages(system, examples, text);
      const result = await generateValidJson<T>(
        runtime,
        messages,
        request.schema,
        this.options(settings, session, msg),
        request.check,
      );
      const answer = request.deliver(result, this.elapsedMs(msg));
      msg.payload = answer.payload;
      if (session) await session.finish(runtime, text, result, answer.path, answer.update);
      this.answered(msg, result, answer.status, send, done);
    } catch (err) {
      await session?.abandon();
      this.failed(msg, err, send, done, settings.retries + 1);
    }
  }

  /** A valid answer: its metadata on `msg.llm`, a green status, the message on the first output. */
  answered(
    msg: NodeMessageInFlow & { llm?: unknown },
    result: GenerationResult & { schemaHash?: string; attempts?: number },
    statusText: string,
    send: (msg: Array<NodeMessage | null>) => void,
    done: () => void,
  ): void {
    msg.llm = {
      model: this.modelName(),
      tokensIn: result.tokensIn,
      tokensOut: result.tokensOut,
      ttftMs: result.ttftMs,
      totalMs: result.totalMs,
      ...(result.schemaHash !== undefined
        ? { schemaHash: result.schemaHash, attempts: result.attempts }
        : {}),
      /** warm: the sequence already held the prompt's start; snapshot: restored from disk; cold: read anew. */
      prefix: result.prefix,
      ...(result.schemaHash === undefined ? { stopReason: result.stopReason } : {}),
    };
    this.ended(msg, { fill: 'green', shape: 'dot', text: statusText });
    send([msg, null]);
    done();
  }

  /**
   * An answer that could not be made valid goes to the "rejected" output with its reason code;
   * anything else (configuration, programming, model load) is an error for a Catch node.
   */
  failed(
    msg: NodeMessageInFlow & { rejected?: unknown },
    err: unknown,
    send: (msg: Array<NodeMessage | null>) => void,
    done: (err?: Error) => void,
    /** How many answers were tried, reported for invalid and truncated ones. */
    attempts?: number,
  ): void {
    if (this.closing.signal.aborted) {
      // Stopped mid-request (redeploy, shutdown): the message still ends, as cancelled, at Catch.
      done(
        new LlmError(
          'cancelled',
          `The node was stopped (redeploy or shutdown) before the answer came: ${(err as Error)?.message ?? String(err)}`,
        ),
      );
      return;
    }
    const reason = this.rejectedOutput ? rejectReason(err) : undefined;
    const message = (err as Error)?.message ?? String(err);
    if (reason) {
      const retried = attempts && (reason === 'invalid' || reason === 'truncated');
      msg.rejected = { reason, message, ...(retried ? { attempts } : {}) };
      this.ended(msg, { fill: 'yellow', shape: 'ring', text: this.t('status.rejected', { reason }) });
      send([null, msg]);
      done();
      return;
    }
    this.ended(msg, { fill: 'red', shape: 'ring', text: this.t('status.error') });
    done(err instanceof Error ? err : new LlmError('bad_request', message));
  }

  /**
   * On close (redeploy, shutdown) the node's queued and running requests are cancelled, so the
   * shared runtime does not spend minutes on answers nobody will read; each of their messages ends
   * with `cancelled` at a Catch node. Closing waits for them (a few seconds at most).
   */
  closeWith(): void {
    this.node.on('close', (_removed: boolean, done: () => void) => {
      this.closing.abort(new LlmError('closed', 'The node was stopped (redeploy or shutdown).'));
      this.shown.close();
      this.config?.deregister({ id: this.node.id, runtimeStatus: () => undefined });
      const settled = Promise.allSettled([...this.inFlight]);
      const limit = new Promise((resolve) => setTimeout(resolve, 10_000).unref());
      void Promise.race([settled, limit]).then(() => done());
    });
  }
}
