/**
 * The runtime child process: every model of a Node-RED process is loaded here, so that a fault in
 * llama.cpp (SIGBUS from a model file overwritten under its memory map, an abort) ends this
 * process and not Node-RED, and tokenizing, schema compiling and grammar building never run on
 * Node-RED's event loop. Started by RuntimeProcess (client.ts) with child_process.fork.
 */
import { LlmError } from './errors';
import { toWire, type FromChild, type ReadyInfo, type ToChild } from './protocol';
import { RuntimeRegistry, type RuntimeLease } from './registry';
import type { GenerateOptions, ModelRuntime } from './runtime';

/** Streamed text and metrics are sent at most this often: one IPC message per token would cost decode speed. */
const FLUSH_MS = 50;

function send(message: FromChild): void {
  if (!process.connected) return;
  // Node-RED's process may be gone mid-write: the child then ends on 'disconnect'.
  process.send?.(message, undefined, undefined, () => undefined);
}
process.on('error', () => undefined);

let registry: RuntimeRegistry | undefined;
const leases = new Map<number, RuntimeLease>();
const requests = new Map<number, AbortController>();

function readyInfo(runtime: ModelRuntime): ReadyInfo {
  return {
    modelSha256: runtime.modelSha256,
    settings: runtime.settings,
    contextSize: runtime.contextSize,
    gpu: runtime.gpu,
    modelInfo: runtime.modelInfo,
    metrics: runtime.getMetrics(),
  };
}

function acquire(id: number, lease: RuntimeLease): void {
  leases.set(id, lease);
  let watched: ModelRuntime | undefined;
  let pending: NodeJS.Timeout | undefined;
  const change = (): void => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = undefined;
      if (watched && leases.get(id) === lease)
        send({ t: 'change', lease: id, metrics: watched.getMetrics() });
    }, FLUSH_MS);
  };
  let lastProgressAt = 0;
  lease.on('status', (s) => {
    if (s.state === 'ready' && lease.runtime) {
      watched?.off('change', change);
      watched = lease.runtime;
      watched.on('change', change);
      send({ t: 'ready', lease: id, info: readyInfo(lease.runtime) });
      return;
    }
    // Progress is worth a message a few times a second, not per callback of the loader.
    const now = Date.now();
    if ((s.state === 'loading' || s.state === 'downloading') && s.progress > 0 && s.progress < 1) {
      if (now - lastProgressAt < 200) return;
    }
    lastProgressAt = now;
    send({
      t: 'status',
      lease: id,
      state: s.state,
      progress: s.progress,
      error: s.error ? toWire(s.error) : undefined,
    });
  });
}

/** A request that arrives while its lease reloads waits for the new model (or its signal). */
async function runtimeOf(leaseId: number, signal: AbortSignal): Promise<ModelRuntime> {
  const lease = leases.get(leaseId);
  if (!lease) throw new LlmError('closed', 'The runtime lease was released.');
  if (lease.runtime) return lease.runtime;
  return Promise.race([
    lease.ready,
    new Promise<never>((_, reject) =>
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }),
    ),
  ]);
}

async function run(message: Extract<ToChild, { t: 'run' }>): Promise<void> {
  const controller = new AbortController();
  requests.set(message.id, controller);
  let buffered = '';
  let flush: NodeJS.Timeout | undefined;
  const flushText = (): void => {
    if (flush) clearTimeout(flush);
    flush = undefined;
    if (buffered) send({ t: 'text', id: message.id, text: buffered });
    buffered = '';
  };
  try {
    const runtime = await runtimeOf(message.lease, controller.signal);
    const options: GenerateOptions = {
      ...message.options,
      signal: controller.signal,
      onStart: () => send({ t: 'started', id: message.id }),
      onText: message.stream
        ? (text) => {
            buffered += text;
            flush ??= setTimeout(flushText, FLUSH_MS);
          }
        : undefined,
    };
    const value =
      message.kind === 'json'
        ? await runtime.generateJson(message.input, message.schema, options)
        : message.kind === 'chat'
          ? await runtime.chat(message.input as never, options)
          : await runtime.complete(message.input as string, options);
    flushText();
    send({ t: 'result', id: message.id, value });
  } catch (err) {
    flushText();
    send({ t: 'error', id: message.id, error: toWire(err) });
  } finally {
    requests.delete(message.id);
  }
}

async function reply(id: number, work: () => Promise<unknown>): Promise<void> {
  try {
    send({ t: 'result', id, value: await work() });
  } catch (err) {
    send({ t: 'error', id, error: toWire(err) });
  }
}

function handle(message: ToChild): void {
  switch (message.t) {
    case 'init':
      registry = new RuntimeRegistry({
        ...message.options,
        onLog: (level, text) => send({ t: 'log', level, message: text }),
      });
      return;
    case 'acquire':
      if (registry) acquire(message.lease, registry.acquire(message.spec));
      return;
    case 'release': {
      const lease = leases.get(message.lease);
      leases.delete(message.lease);
      void lease?.release();
      return;
    }
    case 'run':
      void run(message);
      return;
    case 'cancel':
      requests.get(message.id)?.abort(new LlmError(message.error.code, message.error.message));
      return;
    case 'count':
      void reply(message.id, async () => {
        const lease = leases.get(message.lease);
        const runtime = lease?.runtime ?? (await lease?.ready);
        if (!runtime) throw new LlmError('closed', 'The runtime lease was released.');
        return runtime.tokenCounts(message.texts);
      });
      return;
    case 'list':
      void reply(message.id, async () => registry?.listNow() ?? []);
      return;
    case 'probe':
      void reply(message.id, async () => registry?.probe() ?? []);
      return;
  }
}

process.on('message', (message: ToChild) => handle(message));
// Ctrl-C in a terminal reaches the whole process group: Node-RED's process decides when this one
// ends (it disconnects), so that requests in flight end as 'cancelled', not 'runtime_crashed'.
process.on('SIGINT', () => undefined);
// Node-RED's process is gone (or let this one go): nothing here may outlive it.
process.on('disconnect', () => {
  void (registry?.close() ?? Promise.resolve()).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref();
});
