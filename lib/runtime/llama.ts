import * as os from 'node:os';
import type { Llama } from 'node-llama-cpp' with { 'resolution-mode': 'import' };

export type NodeLlamaCpp = typeof import('node-llama-cpp', { with: { 'resolution-mode': 'import' } });

/** node-llama-cpp is ESM-only and Node-RED 4 loads nodes with require(): a real dynamic import. */
let binding: Promise<NodeLlamaCpp> | undefined;
export function loadNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  binding ??= import('node-llama-cpp');
  return binding;
}

export type GpuChoice = 'auto' | false;

/**
 * One Llama per process (node-llama-cpp's rule: each holds the native backend and its thread
 * pools). It is process-wide state by nature, so it is memoized here rather than per registry.
 */
const instances = new Map<string, Promise<Llama>>();
export function getSharedLlama(gpu: GpuChoice = 'auto'): Promise<Llama> {
  const key = String(gpu);
  let llama = instances.get(key);
  if (!llama) {
    llama = loadNodeLlamaCpp().then(({ getLlama, LlamaLogLevel }) =>
      getLlama({
        gpu,
        // A missing prebuilt binary must fail fast, never start a compile on a gateway.
        build: 'never',
        maxThreads: os.availableParallelism(),
        logLevel: LlamaLogLevel.error,
      }),
    );
    instances.set(key, llama);
    llama.catch(() => instances.delete(key));
  }
  return llama;
}

/**
 * The thread count that decodes fastest here. On a 2-core box one thread beats two for small
 * models (a per-token stall when the Node main thread competes with two ggml workers, see the
 * perf anchor), and node-llama-cpp's own default of 4 is hundreds of times slower.
 */
export function defaultThreads(cores = os.availableParallelism()): number {
  if (cores <= 2) return 1;
  return Math.min(cores - 1, 8);
}
