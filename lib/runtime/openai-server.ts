import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { redactUrl } from '../util/redact';
import { LlmError, isLlmError } from './errors';
import { compileSchema, describeErrors, schemaHash, type CompiledSchema } from './json-schema';
import { MetricsWindow, type RuntimeMetrics } from './metrics';
import type { Lease, LeaseStatus, ProbeResult, Registry, RuntimeInfo, RuntimeSpec } from './registry';
import {
  resolveContextSettings,
  type ChatMessage,
  type GenerateOptions,
  type GenerationResult,
  type JsonResult,
  type LlmRuntime,
  type ModelInfo,
  type ResolvedContextSettings,
} from './runtime';
import { Scheduler, type ScheduleOptions } from './scheduler';

/**
 * The model on an OpenAI-compatible server on the site's network (llama.cpp's llama-server, vLLM,
 * Ollama) behind the same scheduler as a local model: priorities, deadlines, the bounded queue and
 * cancellation work as they do locally, so every node works unchanged against it.
 */
export interface ServerOptions {
  /** Base URL of the server, with or without `/v1` (`http://10.0.0.5:8080`). */
  url: string;
  /** Sent as `Authorization: Bearer <key>`; from the config node's credentials. */
  apiKey?: string;
  /** The `model` field of each request; blank: the server's first model (llama-server has one). */
  model?: string;
  /** Extra tries after a connection error or a 5xx answer that came before any output. */
  retries?: number;
  /** The first wait before a retry (ms); it doubles each time, with jitter. */
  retryDelayMs?: number;
  /** How often the server is asked whether it is up (ms), for the status. */
  healthIntervalMs?: number;
}

export interface ServerRuntimeSpec extends RuntimeSpec {
  server: ServerOptions;
}

const CACHED_SCHEMAS = 64;

/** A failure before any output reached the caller, worth another try (the server was away or busy). */
class Retryable extends Error {}

/** The server's base URL without a trailing slash or `/v1`; an error that says what is wrong otherwise. */
export function serverBaseUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    throw new LlmError('bad_request', `The server URL "${redactUrl(url)}" is not a URL (http://host:port).`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new LlmError(
      'bad_request',
      `The server URL must start with http:// or https:// (got "${redactUrl(url)}").`,
    );
  }
  if (parsed.username || parsed.password) {
    throw new LlmError('bad_request', 'Put the API key in the key field, not in the server URL.');
  }
  return parsed.href.replace(/\/+$/, '').replace(/\/v1$/, '');
}

export class ServerRuntime extends EventEmitter implements LlmRuntime {
  /** No model file here: KV snapshots of sessions are off for a server (they are tied to a file's hash). */
  readonly modelSha256 = '';
  readonly settings: ResolvedContextSettings;
  readonly baseUrl: string;
  /** What the server says it serves (GET /v1/models), once it has answered. */
  serverModels: string[] = [];
  private readonly scheduler: Scheduler;
  private readonly metrics = new MetricsWindow();
  private readonly schemas = new Map<string, CompiledSchema>();
  private readonly running = new Set<AbortController>();
  private tokenizeMissing = false;

  constructor(
    readonly options: ServerOptions,
    settings: ResolvedContextSettings,
  ) {
    super();
    this.baseUrl = serverBaseUrl(options.url);
    this.settings = settings;
    this.scheduler = new Scheduler({ slots: settings.sequences, queueLimit: settings.queueLimit });
  }

  /** The model name requests carry: the configured one, else what the server listed first. */
  get model(): string | undefined {
    return this.options.model?.trim() || this.serverModels[0];
  }

  get modelInfo(): ModelInfo {
    return {
      name: this.model,
      architecture: 'server',
      parameters: 0,
      trainContextSize: 0,
      chatTemplate: true,
    };
  }

  get queueLimit(): number {
    return this.scheduler.limit;
  }

  getMetrics(): RuntimeMetrics {
    return this.metrics.snapshot({
      queued: this.scheduler.queued,
      active: this.scheduler.active,
      sequences: this.settings.sequences,
    });
  }

  complete(prompt: string, options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.generate(prompt, options).then(({ result }) => result);
  }

  chat(messages: ChatMessage[], options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.generate(messages, options).then(({ result }) => result);
  }

  /**
   * The server constrains decoding to the schema (`response_format` with a JSON schema; llama-server
   * turns it into a grammar); the answer is then validated against the whole schema here, as a
   * local answer is.
   */
  async generateJson<T = unknown>(
    input: string | ChatMessage[],
    schema: unknown,
    options: GenerateOptions = {},
  ): Promise<JsonResult<T>> {
    const refused = this.scheduler.admission(this.scheduleOptions(options));
    if (refused) throw this.failed(refused);
    let compiled: CompiledSchema;
    try {
      compiled = isCompiled(schema) ? schema : this.compiled(schema);
    } catch (err) {
      throw this.failed(err);
    }
    const { result, finish } = await this.generate(
      input,
      { ...options, temperature: options.temperature ?? 0 },
      compiled,
    );
    let value: unknown;
    try {
      value = JSON.parse(result.text);
    } catch (err) {
      const truncated = finish === 'length';
      throw this.failed(
        new LlmError(
          truncated ? 'truncated' : 'invalid',
          truncated
            ? `The output was cut off at ${result.tokensOut} tokens before the JSON was complete; raise max tokens or tighten the schema's bounds.`
            : 'The output is not valid JSON (does the server support JSON-schema output?).',
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

  /** llama-server's /tokenize where the server has it, else about four characters a token. */
  async tokenCounts(texts: string[]): Promise<number[]> {
    if (this.tokenizeMissing) return texts.map(estimateTokens);
    try {
      return await Promise.all(
        texts.map(async (content) => {
          const res = await fetch(`${this.baseUrl}/tokenize`, {
            method: 'POST',
            headers: this.headers(),
            body: JSON.stringify({ content }),
            signal: AbortSignal.timeout(10_000),
          });
          if (res.status === 404) throw new Retryable('no /tokenize');
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          const body = (await res.json()) as { tokens?: unknown[] };
          return Array.isArray(body.tokens) ? body.tokens.length : estimateTokens(content);
        }),
      );
    } catch (err) {
      if (err instanceof Retryable) this.tokenizeMissing = true;
      return texts.map(estimateTokens);
    }
  }

  /** Asks the server what it serves: true when it answered. */
  async check(timeoutMs = 5000): Promise<void> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}/v1/models`, {
        headers: this.headers(),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw this.unreachable(err, 1);
    }
    if (res.status === 401 || res.status === 403) throw await this.httpError(res);
    if (!res.ok) throw await this.httpError(res);
    const body = (await res.json().catch(() => ({}))) as { data?: { id?: unknown }[] };
    this.serverModels = (body.data ?? []).map((m) => String(m.id ?? '')).filter(Boolean);
  }

  private compiled(schema: unknown): CompiledSchema {
    const hash = schemaHash(schema);
    let compiled = this.schemas.get(hash);
    if (compiled) this.schemas.delete(hash);
    else {
      compiled = compileSchema(schema);
      if (this.schemas.size >= CACHED_SCHEMAS) this.schemas.delete(this.schemas.keys().next().value!);
    }
    this.schemas.set(hash, compiled);
    return compiled;
  }

  private scheduleOptions(options: GenerateOptions): ScheduleOptions {
    return {
      priority: options.priority,
      owner: options.owner,
      signal: options.signal,
      deadline: Date.now() + (options.timeoutMs ?? this.settings.defaultTimeoutMs),
      probe: options.probe,
    };
  }

  private headers(): Record<string, string> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    return headers;
  }

  private async generate(
    input: string | ChatMessage[],
    options: GenerateOptions,
    schema?: CompiledSchema,
  ): Promise<{ result: GenerationResult; finish: string }> {
    if (typeof input === 'string' ? input.length === 0 : !Array.isArray(input) || input.length === 0) {
      throw this.failed(new LlmError('bad_request', 'The prompt is empty.'));
    }
    const enqueuedAt = performance.now();
    try {
      return await this.scheduler.run(async ({ signal }) => {
        const controller = new AbortController();
        const abort = (): void => controller.abort(signal.reason);
        signal.addEventListener('abort', abort, { once: true });
        this.running.add(controller);
        options.onStart?.();
        this.emit('change');
        try {
          return await this.request(input, options, schema, controller.signal, enqueuedAt);
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

  /** One request with its retries: only while nothing of the answer has reached the caller. */
  private async request(
    input: string | ChatMessage[],
    options: GenerateOptions,
    schema: CompiledSchema | undefined,
    signal: AbortSignal,
    enqueuedAt: number,
  ): Promise<{ result: GenerationResult; finish: string }> {
    const chat = typeof input !== 'string';
    const body: Record<string, unknown> = {
      ...(this.model ? { model: this.model } : {}),
      max_tokens: options.maxTokens ?? 256,
      temperature: options.temperature ?? 0,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.stop?.length ? { stop: options.stop } : {}),
      stream: true,
      stream_options: { include_usage: true },
    };
    if (chat) body.messages = input.map((m) => ({ role: m.role, content: m.content }));
    else body.prompt = input;
    if (schema) {
      body.response_format = {
        type: 'json_schema',
        json_schema: { name: 'answer', strict: true, schema: schema.grammarSchema },
      };
      // llama-server's completion endpoint reads the schema from here.
      if (!chat) body.json_schema = schema.grammarSchema;
    }
    const url = `${this.baseUrl}${chat ? '/v1/chat/completions' : '/v1/completions'}`;
    const retries = Math.max(0, this.options.retries ?? 2);
    for (let attempt = 0; ; attempt++) {
      const startedAt = performance.now();
      const progress = { delivered: false };
      try {
        const answer = await this.stream(url, body, chat, options, signal, progress);
        const end = performance.now();
        const firstTokenAt = answer.firstTokenAt || end;
        const result: GenerationResult = {
          text: answer.text,
          tokensIn: answer.tokensIn,
          tokensOut: answer.tokensOut,
          queuedMs: round(startedAt - enqueuedAt),
          ttftMs: round(firstTokenAt - enqueuedAt),
          totalMs: round(end - enqueuedAt),
          stopReason:
            answer.finish === 'length'
              ? 'maxTokens'
              : answer.finish === 'stop' && !options.stop
                ? 'eos'
                : 'stop',
        };
        this.metrics.record({
          tokensIn: result.tokensIn,
          tokensOut: result.tokensOut,
          ttftMs: result.ttftMs,
          totalMs: result.totalMs,
          decodeMs: end - firstTokenAt,
        });
        this.emit('reachable');
        return { result, finish: answer.finish };
      } catch (err) {
        if (signal.aborted) {
          throw isLlmError(signal.reason)
            ? signal.reason
            : new LlmError('cancelled', 'The request was cancelled.');
        }
        if (!(err instanceof Retryable)) throw err;
        if (progress.delivered) {
          throw new LlmError(
            'unavailable',
            `The model server at ${redactUrl(this.baseUrl)} broke off the answer (${err.message}); not retried because part of it was already delivered.`,
            { cause: err },
          );
        }
        if (attempt >= retries) {
          const error = new LlmError(
            'unavailable',
            `The model server at ${redactUrl(this.baseUrl)} did not answer after ${attempt + 1} ${attempt ? 'tries' : 'try'}: ${err.message}`,
            { cause: err },
          );
          this.emit('unreachable', error);
          throw error;
        }
        const wait = (this.options.retryDelayMs ?? 500) * 2 ** attempt * (0.75 + Math.random() * 0.5);
        await sleep(wait, signal).catch(() => undefined);
        if (signal.aborted) {
          throw isLlmError(signal.reason)
            ? signal.reason
            : new LlmError('cancelled', 'The request was cancelled.');
        }
      }
    }
  }

  /** POSTs with `stream: true` and reads the server-sent events as they come. */
  private async stream(
    url: string,
    body: Record<string, unknown>,
    chat: boolean,
    options: GenerateOptions,
    signal: AbortSignal,
    progress: { delivered: boolean },
  ): Promise<{ text: string; finish: string; tokensIn: number; tokensOut: number; firstTokenAt: number }> {
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers: this.headers(), body: JSON.stringify(body), signal });
    } catch (err) {
      if (signal.aborted) throw err;
      throw new Retryable(connectionReason(err));
    }
    if (!res.ok) {
      const error = await this.httpError(res);
      if (res.status >= 500 || res.status === 429) throw new Retryable(error.message);
      throw error;
    }
    if (!res.body) throw new Retryable('the answer had no body');
    let text = '';
    let finish = '';
    let chunks = 0;
    let usage: { prompt_tokens?: number; completion_tokens?: number } | undefined;
    let firstTokenAt = 0;
    const decoder = new TextDecoder();
    let buffer = '';
    let done = false;
    const onEvent = (data: string): void => {
      if (data === '[DONE]') {
        done = true;
        return;
      }
      let event: StreamChunk;
      try {
        event = JSON.parse(data) as StreamChunk;
      } catch {
        return;
      }
      if (event.error) {
        throw new LlmError('internal', `The model server reported: ${errorText(event.error)}`);
      }
      if (event.usage) usage = event.usage;
      const choice = event.choices?.[0];
      if (!choice) return;
      const piece = chat ? (choice.delta?.content ?? '') : (choice.text ?? '');
      if (piece) {
        if (!firstTokenAt) firstTokenAt = performance.now();
        chunks++;
        text += piece;
        progress.delivered = progress.delivered || options.onText !== undefined;
        options.onText?.(piece);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    };
    try {
      for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(part, { stream: true });
        let cut: number;
        while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, '');
          const data = block
            .split(/\r?\n/)
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).trimStart())
            .join('\n');
          if (data) onEvent(data);
        }
        if (done) break;
      }
    } catch (err) {
      if (signal.aborted || isLlmError(err)) throw err;
      throw new Retryable(`the connection broke mid-answer (${connectionReason(err)})`);
    }
    if (!done && !finish) throw new Retryable('the answer ended before it was complete');
    return {
      text,
      finish: finish || 'stop',
      tokensIn: usage?.prompt_tokens ?? 0,
      tokensOut: usage?.completion_tokens ?? chunks,
      firstTokenAt,
    };
  }

  private async httpError(res: Response): Promise<LlmError> {
    const raw = await res.text().catch(() => '');
    let detail = raw.slice(0, 300);
    try {
      detail = errorText((JSON.parse(raw) as { error?: unknown }).error ?? JSON.parse(raw)).slice(0, 300);
    } catch {
      // not JSON: the text as it came
    }
    const where = `The model server at ${redactUrl(this.baseUrl)}`;
    if (res.status === 401 || res.status === 403) {
      return new LlmError('bad_request', `${where} refused the API key (HTTP ${res.status}): check the key.`);
    }
    if (res.status === 404) {
      return new LlmError(
        'bad_request',
        `${where} has no ${new URL(res.url || this.baseUrl).pathname} (HTTP 404): is it OpenAI-compatible, and is the model name right? ${detail}`,
      );
    }
    return new LlmError(
      res.status >= 500 || res.status === 429 ? 'unavailable' : 'bad_request',
      `${where} answered HTTP ${res.status}${detail ? `: ${detail}` : ''}`,
    );
  }

  private unreachable(err: unknown, tries: number): LlmError {
    return new LlmError(
      'unavailable',
      `The model server at ${redactUrl(this.baseUrl)} cannot be reached (${connectionReason(err)})${tries > 1 ? ` after ${tries} tries` : ''}.`,
      { cause: err },
    );
  }

  private failed(err: unknown): LlmError {
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

  /** Rejects what waits and aborts what runs (the server stops decoding when the connection closes). */
  async dispose(): Promise<void> {
    this.scheduler.close('The model runtime was closed (redeploy or shutdown).');
    for (const controller of this.running)
      controller.abort(new LlmError('closed', 'The model runtime was closed.'));
    const deadline = Date.now() + 5000;
    while (this.running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.removeAllListeners();
  }
}

interface StreamChunk {
  choices?: { text?: string; delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number };
  error?: unknown;
}

/**
 * A config node's claim on a server: ready at once (every request tries the server, with retries),
 * while the status says whether the server answers, checked at start, every healthIntervalMs, and
 * after each request.
 */
export class ServerLease extends EventEmitter implements Lease {
  status: LeaseStatus = { state: 'resolving', progress: 0 };
  readonly runtime: ServerRuntime;
  readonly ready: Promise<ServerRuntime>;
  settings: ResolvedContextSettings;
  private timer: NodeJS.Timeout | undefined;
  private released = false;

  constructor(
    readonly spec: ServerRuntimeSpec,
    private readonly onRelease: (lease: ServerLease) => void,
  ) {
    super();
    this.settings = resolveContextSettings(spec.settings);
    this.runtime = new ServerRuntime(spec.server, this.settings);
    this.ready = Promise.resolve(this.runtime);
    this.runtime.on('reachable', () => this.update({ state: 'ready', progress: 1 }));
    this.runtime.on('unreachable', (error: LlmError) => this.update({ state: 'error', progress: 0, error }));
    // The first status after the node has subscribed to events.
    setImmediate(() => void this.check());
    const every = spec.server.healthIntervalMs ?? 15_000;
    this.timer = setInterval(() => void this.check(), every);
    this.timer.unref();
  }

  async check(): Promise<void> {
    if (this.released) return;
    try {
      await this.runtime.check();
      this.update({ state: 'ready', progress: 1 });
    } catch (err) {
      this.update({ state: 'error', progress: 0, error: err as LlmError });
    }
  }

  private update(status: LeaseStatus): void {
    if (this.released) return;
    const same = status.state === this.status.state && status.error?.message === this.status.error?.message;
    this.status = status;
    if (!same) this.emit('status', status);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    this.status = { state: 'closed', progress: 0 };
    this.removeAllListeners();
    this.onRelease(this);
    await this.runtime.dispose();
  }
}

/** The servers the config nodes of this Node-RED use, for the admin endpoint. */
export class ServerRegistry implements Registry {
  private readonly leases = new Set<ServerLease>();
  private probing: Promise<RuntimeInfo[]> | undefined;

  acquire(spec: ServerRuntimeSpec): ServerLease {
    const lease = new ServerLease(spec, (l) => this.leases.delete(l));
    this.leases.add(lease);
    return lease;
  }

  async list(): Promise<RuntimeInfo[]> {
    return [...this.leases].map((lease, i) => this.info(lease, i));
  }

  probe(): Promise<RuntimeInfo[]> {
    this.probing ??= (async () => {
      const out: RuntimeInfo[] = [];
      for (const [i, lease] of [...this.leases].entries()) {
        const started = Date.now();
        let probe: ProbeResult;
        try {
          const r = await lease.runtime.complete('Hello', { maxTokens: 4, probe: true, timeoutMs: 30_000 });
          probe = { ok: true, ms: Date.now() - started, tokens: r.tokensOut, text: r.text };
        } catch (err) {
          probe = { ok: false, error: (err as Error).message };
        }
        out.push({ ...this.info(lease, i), probe });
      }
      return out;
    })().finally(() => (this.probing = undefined));
    return this.probing;
  }

  private info(lease: ServerLease, i: number): RuntimeInfo {
    const runtime = lease.runtime;
    return {
      id: `server-${i + 1}`,
      source: redactUrl(runtime.baseUrl) + (runtime.model ? ` ${runtime.model}` : ''),
      model: { path: '', size: 0, sha256: '', gpu: false, info: runtime.modelInfo },
      settings: { ...lease.settings, queueLimit: runtime.queueLimit },
      users: 1,
      state: lease.status.state === 'ready' ? 'ready' : lease.status.state === 'error' ? 'error' : 'loading',
      metrics: runtime.getMetrics(),
      process: 'server',
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.leases].map((l) => l.release()));
  }
}

function isCompiled(schema: unknown): schema is CompiledSchema {
  return typeof schema === 'object' && schema !== null && 'grammarSchema' in schema && 'validate' in schema;
}

function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/** `ECONNREFUSED 127.0.0.1:8080` rather than undici's bare "fetch failed". */
function connectionReason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err);
}

function errorText(error: unknown): string {
  if (typeof error === 'string') return error;
  if (error && typeof error === 'object' && 'message' in error) return String(error.message);
  return JSON.stringify(error);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
