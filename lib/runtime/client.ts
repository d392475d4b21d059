import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import { LlmError } from './errors';
import { EMPTY_METRICS, type RuntimeMetrics } from './metrics';
import {
  fromWire,
  toWire,
  type FromChild,
  type ReadyInfo,
  type RequestKind,
  type ToChild,
  type WireOptions,
} from './protocol';
import type { Lease, LeaseStatus, Registry, RegistryOptions, RuntimeInfo, RuntimeSpec } from './registry';
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

export interface RuntimeProcessOptions extends RegistryOptions {
  /** The first restart after a crash waits this long; each further one twice as long (ms). */
  restartBaseMs?: number;
  restartMaxMs?: number;
  /** With no lease left the child is stopped after this long (a redeploy re-acquires at once). */
  idleExitMs?: number;
  /** Said when the child ends unexpectedly or is started again. */
  onLog?: (level: 'warn' | 'info' | 'error', message: string) => void;
}

/** Answers handed on per tick of the event loop (see settleSoon). */
const SETTLE_BATCH = 8;

interface Request {
  id: number;
  lease: RemoteLease;
  message: Extract<ToChild, { t: 'run' }>;
  /** The absolute deadline of the whole request, kept across a restart of the child. */
  deadline: number;
  /** Sent to the current child; started: it holds a sequence there. */
  sent: boolean;
  started: boolean;
  onText?: (text: string) => void;
  resolve: (value: unknown) => void;
  reject: (err: LlmError) => void;
  cleanup: () => void;
}

interface Call {
  resolve: (value: unknown) => void;
  reject: (err: LlmError) => void;
  timer: NodeJS.Timeout;
}

/** A node's claim on a runtime in the child; it outlives restarts of the child. */
export class RemoteLease extends EventEmitter implements Lease {
  status: LeaseStatus = { state: 'resolving', progress: 0 };
  runtime: RemoteRuntime | undefined;
  settings: ResolvedContextSettings;
  released = false;
  /** The current child has this lease's runtime ready. */
  live = false;
  private current: Promise<RemoteRuntime> | undefined;
  private settle!: { resolve: (r: RemoteRuntime) => void; reject: (e: LlmError) => void };
  private settled = false;

  constructor(
    readonly id: number,
    readonly spec: RuntimeSpec,
    private readonly onRelease: (lease: RemoteLease) => Promise<void>,
  ) {
    super();
    this.settings = resolveContextSettings(spec.settings);
    this.reset();
  }

  get ready(): Promise<RemoteRuntime> {
    return this.current!;
  }

  /** @internal */
  reset(): void {
    if (this.current && !this.settled) return;
    this.settled = false;
    this.current = new Promise<RemoteRuntime>((resolve, reject) => (this.settle = { resolve, reject }));
    this.current.catch(() => undefined);
  }

  /** @internal */
  update(status: LeaseStatus): void {
    if (this.released) return;
    this.status = status;
    this.emit('status', status);
  }

  /** @internal */
  becameReady(runtime: RemoteRuntime): void {
    // settings stay this user's own (its timeout and queue limit), as with an in-process lease.
    this.runtime = runtime;
    this.live = true;
    this.update({ state: 'ready', progress: 1 });
    this.settled = true;
    this.settle.resolve(runtime);
  }

  /** @internal */
  failed(error: LlmError): void {
    this.live = false;
    this.update({ state: 'error', progress: 0, error });
    this.settled = true;
    this.settle.reject(error);
  }

  release(): Promise<void> {
    if (this.released) return Promise.resolve();
    this.update({ state: 'closed', progress: 0 });
    this.released = true;
    this.live = false;
    this.removeAllListeners();
    this.settled = true;
    this.settle.reject(new LlmError('closed', 'The runtime lease was released.'));
    return this.onRelease(this);
  }
}

/** A runtime in the child, seen from Node-RED's process: the same calls, answered by message. */
export class RemoteRuntime extends EventEmitter implements LlmRuntime {
  modelSha256 = '';
  settings: ResolvedContextSettings;
  contextSize = 0;
  gpu: string | false = false;
  modelInfo: ModelInfo | undefined;
  private metrics: RuntimeMetrics = EMPTY_METRICS;

  constructor(
    private readonly client: RuntimeProcess,
    private readonly lease: RemoteLease,
  ) {
    super();
    this.settings = lease.settings;
  }

  /** @internal */
  update(info: ReadyInfo): void {
    this.modelSha256 = info.modelSha256;
    this.settings = info.settings;
    this.contextSize = info.contextSize;
    this.gpu = info.gpu;
    this.modelInfo = info.modelInfo;
    this.setMetrics(info.metrics);
  }

  /** @internal */
  setMetrics(metrics: RuntimeMetrics): void {
    this.metrics = metrics;
    this.emit('change');
  }

  getMetrics(): RuntimeMetrics {
    return this.metrics;
  }

  complete(prompt: string, options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.client.request(
      this.lease,
      'complete',
      prompt,
      undefined,
      options,
    ) as Promise<GenerationResult>;
  }

  chat(messages: ChatMessage[], options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.client.request(this.lease, 'chat', messages, undefined, options) as Promise<GenerationResult>;
  }

  generateJson<T = unknown>(
    input: string | ChatMessage[],
    schema: unknown,
    options: GenerateOptions = {},
  ): Promise<JsonResult<T>> {
    // A schema compiled here (a node's own, at deploy) crosses as its source: the child compiles
    // and caches it by hash.
    const source =
      typeof schema === 'object' && schema !== null && 'grammarSchema' in schema && 'schema' in schema
        ? (schema as { schema: unknown }).schema
        : schema;
    return this.client.request(this.lease, 'json', input, source, options) as Promise<JsonResult<T>>;
  }

  tokenCounts(texts: string[]): Promise<number[]> {
    return this.client.call({ t: 'count', id: 0, lease: this.lease.id, texts }) as Promise<number[]>;
  }
}

/**
 * Every model of this Node-RED process in one child process (child.ts). Requests, streamed text,
 * cancellation and metrics cross by message. When the child dies (SIGKILL, SIGBUS, an abort in
 * llama.cpp), the requests it was decoding fail with `runtime_crashed`, the ones still queued
 * wait, and the child is started again with a growing backoff and every lease loaded again.
 */
export class RuntimeProcess implements Registry {
  private child: ChildProcess | undefined;
  private readonly leases = new Map<number, RemoteLease>();
  private readonly requests = new Map<number, Request>();
  private readonly calls = new Map<number, Call>();
  private readonly outcomes: Array<[Request, { value: unknown } | LlmError]> = [];
  private nextId = 1;
  private crashes = 0;
  private startedAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Child processes started, for tests and the bench. */
  starts = 0;

  constructor(
    private readonly options: RuntimeProcessOptions,
    private readonly entry = path.join(__dirname, 'child.js'),
  ) {}

  /** The child's process id, while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  acquire(spec: RuntimeSpec): RemoteLease {
    if (this.closed) throw new LlmError('closed', 'The runtime process was closed.');
    clearTimeout(this.idleTimer);
    this.hold(true);
    const lease = new RemoteLease(this.nextId++, spec, (l) => this.release(l));
    this.leases.set(lease.id, lease);
    if (this.child) this.send({ t: 'acquire', lease: lease.id, spec });
    else if (!this.restartTimer) this.start();
    return lease;
  }

  private async release(lease: RemoteLease): Promise<void> {
    this.leases.delete(lease.id);
    for (const request of [...this.requests.values()]) {
      if (request.lease === lease)
        this.settle(request, new LlmError('closed', 'The runtime lease was released.'));
    }
    this.send({ t: 'release', lease: lease.id });
    if (this.leases.size === 0 && this.child) {
      // Nothing waits for the child now: it must not keep Node-RED's process from exiting.
      this.hold(false);
      clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => {
        if (this.leases.size === 0) this.stopChild();
      }, this.options.idleExitMs ?? 10_000);
      this.idleTimer.unref();
    }
  }

  private start(): void {
    this.restartTimer = undefined;
    if (this.closed || this.leases.size === 0) return;
    // Only plain settings cross: the child logs by message.
    const registryOptions: Omit<RegistryOptions, 'onLog'> = {
      modelsDir: this.options.modelsDir,
      gpu: this.options.gpu,
      identityCacheFile: this.options.identityCacheFile,
      watchMs: this.options.watchMs,
      stallMs: this.options.stallMs,
    };
    const child = fork(this.entry, [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Debugger or loader flags of Node-RED's process do not belong in the child.
      execArgv: [],
      serialization: 'json',
      env: {
        ...process.env,
        // llama.cpp's context buffers are large malloc blocks; once one is freed glibc raises its
        // mmap threshold and serves the next ones from the heap, which it never gives back: RSS
        // then grows with every redeploy (bench/README.md, part f). Blocks over 1 MiB from mmap
        // go back to the OS at free() (a 32k vocabulary's logits per token, 128 KiB, stay below).
        MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? String(2 ** 20),
        // Loading a model from several threads leaves a malloc arena per thread holding freed
        // read buffers: two arenas kept 42 MB less after the load (bench/memory.ts).
        MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2',
      },
    });
    this.child = child;
    this.starts++;
    this.startedAt = Date.now();
    child.on('message', (m: FromChild) => this.receive(m));
    child.on('exit', (code, signal) => this.exited(child, code, signal));
    child.on('error', (err) => {
      this.options.onLog?.('error', `The model runtime process failed: ${err.message}`);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    this.send({ t: 'init', options: registryOptions });
    for (const lease of this.leases.values()) this.send({ t: 'acquire', lease: lease.id, spec: lease.spec });
  }

  /** Whether the child (and its IPC channel) keeps this process alive: only while it has users. */
  private hold(on: boolean): void {
    const child = this.child;
    if (!child) return;
    const channel = child.channel as { ref(): void; unref(): void } | null | undefined;
    if (on) {
      child.ref();
      channel?.ref();
    } else {
      child.unref();
      channel?.unref();
    }
  }

  private stopChild(): void {
    const child = this.child;
    this.child = undefined;
    if (!child) return;
    child.removeAllListeners('exit');
    child.on('exit', () => undefined);
    if (child.connected) child.disconnect();
    // It ends itself on disconnect; one that hangs in native code is ended for it.
    setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }, 3000).unref();
  }

  private exited(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = undefined;
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    if (Date.now() - this.startedAt > 60_000) this.crashes = 0;
    this.crashes++;
    const delay = Math.min(
      this.options.restartMaxMs ?? 30_000,
      (this.options.restartBaseMs ?? 500) * 2 ** (this.crashes - 1),
    );
    const crashed = new LlmError(
      'runtime_crashed',
      `The model runtime process ended (${how}) while this request was decoding; it restarts in ${(delay / 1000).toFixed(1)} s.`,
    );
    let failed = 0;
    for (const request of [...this.requests.values()]) {
      if (request.started) {
        failed++;
        this.settle(request, crashed);
      } else request.sent = false;
    }
    for (const call of [...this.calls.values()]) call.reject(crashed);
    this.calls.clear();
    for (const lease of this.leases.values()) {
      lease.live = false;
      lease.update({
        state: 'restarting',
        progress: 0,
        error: new LlmError('runtime_crashed', `The model runtime process ended (${how}); restarting.`),
      });
    }
    if (this.closed) return;
    this.options.onLog?.(
      'error',
      `The model runtime process ended (${how}): ${failed} request(s) in flight failed with runtime_crashed, ${this.requests.size} queued wait; restarting in ${(delay / 1000).toFixed(1)} s.`,
    );
    if (this.leases.size > 0) {
      this.restartTimer = setTimeout(() => this.start(), delay);
      this.restartTimer.unref();
    }
  }

  private send(message: ToChild): boolean {
    const child = this.child;
    if (!child?.connected) return false;
    try {
      child.send(message);
      return true;
    } catch {
      return false;
    }
  }

  private receive(m: FromChild): void {
    switch (m.t) {
      case 'status': {
        const lease = this.leases.get(m.lease);
        if (!lease) return;
        if (m.state === 'error') {
          const error = fromWire(
            m.error ?? { code: 'model_load', message: 'The model could not be loaded.' },
          );
          lease.failed(error);
          // What waits for this lease would wait for nothing.
          for (const request of [...this.requests.values()])
            if (request.lease === lease && !request.sent) this.settle(request, error);
          return;
        }
        if (m.state === 'reloading' || m.state === 'loading') {
          if (m.state === 'reloading') lease.live = false;
          if (lease.status.state === 'error') lease.reset();
        }
        lease.update({
          state: m.state,
          progress: m.progress,
          error: m.error ? fromWire(m.error) : undefined,
        });
        return;
      }
      case 'ready': {
        const lease = this.leases.get(m.lease);
        if (!lease) return;
        const runtime = lease.runtime ?? new RemoteRuntime(this, lease);
        runtime.update(m.info);
        // The child resolves a blank thread count (timed at load), as the in-process registry does.
        lease.settings = { ...lease.settings, threads: m.info.settings.threads };
        lease.becameReady(runtime);
        this.flush(lease);
        return;
      }
      case 'change':
        this.leases.get(m.lease)?.runtime?.setMetrics(m.metrics);
        return;
      case 'started': {
        const request = this.requests.get(m.id);
        if (request) request.started = true;
        return;
      }
      case 'text':
        this.requests.get(m.id)?.onText?.(m.text);
        return;
      case 'result':
      case 'error': {
        const call = this.calls.get(m.id);
        if (call) {
          this.calls.delete(m.id);
          clearTimeout(call.timer);
          if (m.t === 'result') call.resolve(m.value);
          else call.reject(fromWire(m.error));
          return;
        }
        const request = this.requests.get(m.id);
        if (request) this.settleSoon(request, m.t === 'result' ? { value: m.value } : fromWire(m.error));
        return;
      }
      case 'log':
        this.options.onLog?.(m.level, m.message);
        return;
    }
  }

  /** Sends what waits for a lease that is ready in the current child. */
  private flush(lease: RemoteLease): void {
    for (const request of this.requests.values()) {
      if (request.lease !== lease || request.sent) continue;
      const timeoutMs = request.deadline - Date.now();
      if (timeoutMs <= 0) {
        this.settle(request, new LlmError('timeout', 'The request could not start before its deadline.'));
        continue;
      }
      request.message.options.timeoutMs = timeoutMs;
      request.sent = this.send(request.message);
    }
  }

  /**
   * Answers arrive in bursts (a full queue refuses hundreds at once, in one read of the channel):
   * they are handed on at most SETTLE_BATCH per tick, so a burst cannot stall Node-RED's loop.
   */
  private settleSoon(request: Request, outcome: { value: unknown } | LlmError): void {
    this.outcomes.push([request, outcome]);
    if (this.outcomes.length > 1) return;
    const drain = (): void => {
      for (const [r, o] of this.outcomes.splice(0, SETTLE_BATCH)) this.settle(r, o);
      if (this.outcomes.length > 0) setImmediate(drain);
    };
    setImmediate(drain);
  }

  private settle(request: Request, outcome: { value: unknown } | LlmError): void {
    if (!this.requests.delete(request.id)) return;
    request.cleanup();
    if (outcome instanceof LlmError) request.reject(outcome);
    else request.resolve(outcome.value);
  }

  /** @internal */
  request(
    lease: RemoteLease,
    kind: RequestKind,
    input: string | ChatMessage[],
    schema: unknown,
    options: GenerateOptions,
  ): Promise<unknown> {
    if (lease.released) return Promise.reject(new LlmError('closed', 'The runtime lease was released.'));
    const { signal, onText, ...rest } = options;
    delete rest.onStart;
    if (signal?.aborted) {
      return Promise.reject(new LlmError('cancelled', 'The request was cancelled before it was queued.'));
    }
    // A model that failed to load fails what asks for it at once (it is retried when its file changes).
    if (lease.status.state === 'error' && lease.status.error) return Promise.reject(lease.status.error);
    // While the child restarts, what waits here is bounded like the child's own queue.
    if (!lease.live) {
      let waiting = 0;
      for (const r of this.requests.values()) if (r.lease === lease && !r.sent) waiting++;
      if (waiting >= lease.settings.queueLimit + lease.settings.sequences) {
        return Promise.reject(
          new LlmError(
            'queue_full',
            `The queue is full (${waiting} waiting while the model runtime restarts); try again later.`,
          ),
        );
      }
    }
    const timeoutMs = rest.timeoutMs ?? lease.settings.defaultTimeoutMs;
    const id = this.nextId++;
    const wireOptions: WireOptions = { ...rest, timeoutMs };
    return new Promise((resolve, reject) => {
      const request: Request = {
        id,
        lease,
        message: {
          t: 'run',
          id,
          lease: lease.id,
          kind,
          input,
          schema,
          options: wireOptions,
          stream: onText !== undefined,
        },
        deadline: Date.now() + timeoutMs,
        sent: false,
        started: false,
        onText,
        resolve,
        reject,
        cleanup: () => undefined,
      };
      // The child enforces the deadline; this one only fires if the child cannot (it is down).
      const timer = setTimeout(
        () => this.abandon(request, new LlmError('timeout', 'The request ran past its deadline.')),
        timeoutMs + 2000,
      );
      const onAbort = (): void =>
        this.abandon(
          request,
          signal?.reason instanceof LlmError
            ? signal.reason
            : new LlmError('cancelled', 'The request was cancelled.'),
        );
      signal?.addEventListener('abort', onAbort, { once: true });
      request.cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      this.requests.set(id, request);
      if (lease.live) request.sent = this.send(request.message);
    });
  }

  /** Ends a request here at once and tells the child to stop working on it. */
  private abandon(request: Request, error: LlmError): void {
    if (request.sent) this.send({ t: 'cancel', id: request.id, error: toWire(error) });
    this.settle(request, error);
  }

  /** @internal A question with a plain answer (token counts, the list, a probe). */
  call(message: Extract<ToChild, { id: number }>, timeoutMs = 30_000): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(id);
        reject(new LlmError('timeout', 'The model runtime process did not answer in time.'));
      }, timeoutMs);
      this.calls.set(id, { resolve, reject, timer });
      if (!this.send({ ...message, id })) {
        clearTimeout(timer);
        this.calls.delete(id);
        reject(new LlmError('runtime_crashed', 'The model runtime process is not running (it restarts).'));
      }
    });
  }

  async list(): Promise<RuntimeInfo[]> {
    if (!this.child) return [];
    const infos = (await this.call({ t: 'list', id: 0 }, 5000).catch(() => [])) as RuntimeInfo[];
    return infos.map((info) => ({ ...info, process: 'child' as const }));
  }

  async probe(): Promise<RuntimeInfo[]> {
    if (!this.child) return [];
    const infos = (await this.call({ t: 'probe', id: 0 }, 60_000)) as RuntimeInfo[];
    return infos.map((info) => ({ ...info, process: 'child' as const }));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.idleTimer);
    await Promise.all([...this.leases.values()].map((l) => l.release()));
    const child = this.child;
    this.stopChild();
    if (child && child.exitCode === null && child.signalCode === null) {
      await new Promise((resolve) => {
        child.once('exit', resolve);
        setTimeout(resolve, 3500).unref();
      });
    }
  }
}
