import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Llama, LlamaModel } from 'node-llama-cpp' with { 'resolution-mode': 'import' };

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
 * The thread count used when none is set and none was calibrated (see calibratedThreads). On a
 * 2-core box one thread is the safe guess: two threads are up to twice as fast on a quiet box and
 * many times slower on a busy one, and node-llama-cpp's own default of 4 is hundreds of times slower.
 */
export function defaultThreads(cores = os.availableParallelism()): number {
  if (cores <= 2) return 1;
  return Math.min(cores - 1, 8);
}

export interface ThreadCalibration {
  threads: number;
  /** Decode tokens/s measured per thread count. */
  measured: Record<string, number>;
  at: string;
  /** The 1-minute load average when it was timed. */
  load: number;
}

/** Thread counts worth timing on this machine: one, two, and the counts near all cores. */
export function threadCandidates(cores = os.availableParallelism()): number[] {
  const all = [1, 2, Math.floor(cores / 2), cores - 1, cores].filter(
    (t) => t >= 1 && t <= Math.min(cores, 16),
  );
  return [...new Set(all)].sort((a, b) => a - b);
}

const calibrations = new Map<string, Promise<number>>();

function machineKey(): string {
  return `${os.cpus()[0]?.model ?? 'cpu'}|${os.availableParallelism()}|${os.arch()}`;
}

function readCache(file: string | undefined): Record<string, ThreadCalibration> {
  if (!file) return {};
  try {
    const data = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return data && typeof data === 'object' ? (data as Record<string, ThreadCalibration>) : {};
  } catch {
    return {};
  }
}

/**
 * The thread count that decodes this model fastest here, timed once at load (a few dozen tokens per
 * candidate) and remembered per model and machine in `cacheFile` (JSON). On a 2-core box two
 * threads can be twice as fast as one on a quiet machine and many times slower on a busy one
 * (ggml's workers spin at each barrier and wait for a core), so it is measured, not guessed.
 * A candidate that runs past its time budget counts as slower. A choice timed while the machine
 * is busy (load average above the core count) holds for this process only. Any failure falls
 * back to defaultThreads().
 */
export function calibratedThreads(
  model: LlamaModel,
  key: string,
  options: { cacheFile?: string; candidates?: number[]; budgetMs?: number } = {},
): Promise<number> {
  const id = `${key}|${machineKey()}`;
  let choice = calibrations.get(id);
  if (!choice) {
    choice = (async () => {
      const cached = readCache(options.cacheFile)[id];
      if (cached && Number.isInteger(cached.threads) && cached.threads >= 1) return cached.threads;
      const measured: Record<string, number> = {};
      for (const t of options.candidates ?? threadCandidates()) {
        measured[t] = await decodeSpeed(model, t, options.budgetMs ?? 2000).catch(() => 0);
      }
      let best = defaultThreads();
      let bestTps = 0;
      for (const [t, tps] of Object.entries(measured)) {
        // More threads only when clearly faster: a near tie is noise, and fewer threads leave a core free.
        if (tps > bestTps * 1.05) {
          best = Number(t);
          bestTps = tps;
        }
      }
      // Timed on a busy machine, the choice is this load's, not this machine's: not remembered.
      const busy = os.loadavg()[0] > os.availableParallelism();
      if (bestTps > 0 && options.cacheFile && !busy) {
        try {
          const all = readCache(options.cacheFile);
          all[id] = { threads: best, measured, at: new Date().toISOString(), load: os.loadavg()[0] };
          mkdirSync(path.dirname(options.cacheFile), { recursive: true });
          const partial = `${options.cacheFile}.${process.pid}.tmp`;
          writeFileSync(partial, JSON.stringify(all, null, 1));
          renameSync(partial, options.cacheFile);
        } catch {
          // An unwritable cache only costs a calibration at the next load.
        }
      }
      return bestTps > 0 ? best : defaultThreads();
    })();
    calibrations.set(id, choice);
  }
  return choice;
}

/** Decode tokens/s of one sequence with `threads` threads: a short prompt, then greedy tokens. */
async function decodeSpeed(model: LlamaModel, threads: number, budgetMs: number): Promise<number> {
  const context = await model.createContext({ contextSize: 256, sequences: 1, threads, batchSize: 64 });
  try {
    const sequence = context.getSequence();
    const prompt = model
      .tokenize('The maintenance log for pump station 4 shows that the bearing')
      .slice(0, 16);
    const deadline = performance.now() + budgetMs;
    let first = 0;
    let tokens = 0;
    for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
      void token;
      const now = performance.now();
      if (tokens === 0) first = now;
      tokens++;
      if (tokens >= 33 || now > deadline) break;
    }
    const elapsed = performance.now() - first;
    return tokens > 1 && elapsed > 0 ? ((tokens - 1) * 1000) / elapsed : 0;
  } finally {
    await context.dispose();
  }
}
