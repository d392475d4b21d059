/**
 * Side by side on the same synthesized models and thread counts, interleaved round-robin: the
 * runtime (out of process, as Node-RED runs it: its own thread choice, 1 and 2 threads),
 * node-llama-cpp used directly (in this process), and, where they could be built, llama.cpp's own
 * llama-bench (tg) and llama-batched-bench (npl 4) from the source node-llama-cpp ships
 * (bench/build-llama-cpp.sh). Prints decode tokens/s (median [min–max]), the load average seen
 * during each variant, and the ratios. Not a test.
 *
 *   npm run build && nice -n -5 node dist/bench/speed.js [--rounds 2] [--tokens 64]
 *     [--models smol,qwen] [--threads 1,2] [--no-llama-cpp] [--only single,x4]
 *
 * --only keeps the variants whose name holds one of the words (`--only single`: one request only,
 * so that more rounds fit in the same time).
 *
 * Models (random weights in the exact shape of SmolLM2-135M Q8_0 and Qwen2.5-0.5B Q4_0, with their
 * real vocabulary sizes) are synthesized once into ~/.cache/edge-llm/models (EDGE_LLM_CACHE).
 */
import { execFile, spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import type { LlamaCompletion, LlamaContext, LlamaContextSequence, LlamaModel } from 'node-llama-cpp' with {
  'resolution-mode': 'import',
};
import {
  RuntimeProcess,
  getSharedLlama,
  loadNodeLlamaCpp,
  type LlmRuntime,
  type RuntimeProcessOptions,
} from '../lib/runtime';
import { BatchGatherer } from '../lib/runtime/batching';
import { cell, machine, median, parseArgs, rotated, table } from './runtime';
import { BENCH_CACHE_DIR, shapedModels } from './synth-gguf';

const run = promisify(execFile);
const cacheDir = BENCH_CACHE_DIR;

/** The folder with llama-bench and llama-batched-bench, built on first use; undefined when it cannot be. */
function llamaCppBin(): string | undefined {
  const script = path.join(__dirname, '..', '..', 'bench', 'build-llama-cpp.sh');
  console.error('building llama.cpp benchmarks (once, ~5 min on 2 cores) ...');
  const r = spawnSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) {
    console.error(`llama.cpp benchmarks not available (build-llama-cpp.sh exited ${r.status}): skipped`);
    return undefined;
  }
  return r.stdout.trim().split('\n').pop();
}

const PROMPT =
  'The maintenance log for pump station 4 shows that the bearing temperature rose during the night shift, ' +
  'and the operator wrote down every reading from the inlet manifold, the outlet valve and the motor, ' +
  'because the alarm summary for line 3 had reported vibration on motor M-12 twice before midnight';

/** One measurement: decode tokens/s and the 1-minute load average when it ended. */
interface Got {
  tps: number;
  load: number;
}

async function llamaBench(bin: string, model: string, threads: number, tokens: number): Promise<number> {
  const { stdout } = await run(
    path.join(bin, 'llama-bench'),
    ['-m', model, '-p', '0', '-n', String(tokens), '-r', '2', '-t', String(threads), '-o', 'json'],
    { maxBuffer: 1 << 24 },
  );
  const rows = JSON.parse(stdout) as Array<{ avg_ts: number }>;
  return rows[0].avg_ts;
}

async function batchedBench(bin: string, model: string, threads: number, tokens: number): Promise<number> {
  const { stdout } = await run(
    path.join(bin, 'llama-batched-bench'),
    [
      '-m',
      model,
      '-c',
      '8192',
      '-b',
      '2048',
      '-ub',
      '512',
      '-npp',
      '64',
      '-ntg',
      String(tokens),
      '-npl',
      '4',
      '-t',
      String(threads),
      '-tb',
      String(threads),
    ],
    { maxBuffer: 1 << 24 },
  );
  // |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
  const row = stdout
    .split('\n')
    .map((l) => l.split('|').map((c) => c.trim()))
    .find((cells) => cells.length > 9 && /^\d+$/.test(cells[1]) && cells[3] === '4');
  if (!row) throw new Error(`llama-batched-bench printed no npl 4 row:\n${stdout}`);
  return Number(row[8]);
}

/** Decode t/s of one request seen from the caller: tokens after the first over the time after the first. */
async function single(runtime: LlmRuntime, tokens: number): Promise<number> {
  const r = await runtime.complete(PROMPT, { maxTokens: tokens, temperature: 0 });
  return ((r.tokensOut - 1) * 1000) / (r.totalMs - r.ttftMs);
}

/**
 * Aggregate decode t/s of four concurrent requests: every token after each request's first, over the
 * time from the earliest first token to the last end (a request that starts late costs its wait).
 */
async function concurrent(runtime: LlmRuntime, tokens: number): Promise<number> {
  const t0 = performance.now();
  const out = await Promise.all(
    [0, 1, 2, 3].map((i) =>
      runtime
        .complete(`${i} ${PROMPT}`, { maxTokens: tokens, temperature: 0 })
        .then((r) => ({ r, end: performance.now() })),
    ),
  );
  const first = Math.min(...out.map(({ r }) => t0 + r.ttftMs));
  const end = Math.max(...out.map((o) => o.end));
  return (out.reduce((n, { r }) => n + r.tokensOut - 1, 0) * 1000) / (end - first);
}

interface Direct {
  context: LlamaContext;
  sequences: LlamaContextSequence[];
  completions: LlamaCompletion[];
  /** The runtime's batching strategy, or node-llama-cpp's default. */
  gatherer?: BatchGatherer;
  /** Native decodes (llama_decode on a libuv thread, until its promise resolves) of the last run. */
  decodes: number;
  decodeMs: number;
}

/** Where one token's time went in the last directRun: per generated token, in ms. */
interface Split {
  decodesPerToken: number;
  decodeMs: number;
  otherMs: number;
}

async function direct(model: LlamaModel, threads: number, gathered: boolean): Promise<Direct> {
  const { LlamaCompletion } = await loadNodeLlamaCpp();
  const gatherer = gathered ? new BatchGatherer() : undefined;
  const context = await model.createContext({
    contextSize: 2048,
    sequences: 4,
    threads,
    ...(gatherer ? { batching: { itemPrioritizationStrategy: gatherer.strategy } } : {}),
  });
  const sequences = [0, 1, 2, 3].map(() => context.getSequence());
  const completions = sequences.map((contextSequence) => new LlamaCompletion({ contextSequence }));
  gatherer?.track(context);
  const d: Direct = { context, sequences, completions, gatherer, decodes: 0, decodeMs: 0 };
  // Bench instrumentation only: node-llama-cpp's native context, timed around each decode.
  const addon = (context as unknown as { _ctx: { decodeBatch(): Promise<void> } })._ctx;
  const decodeBatch = addon.decodeBatch.bind(addon);
  // (a read-only property of the native object: defined on the instance instead)
  Object.defineProperty(addon, 'decodeBatch', {
    configurable: true,
    value: async () => {
      const t0 = performance.now();
      d.decodes++;
      try {
        await decodeBatch();
      } finally {
        d.decodeMs += performance.now() - t0;
      }
    },
  });
  return d;
}

async function directRun(
  d: Direct,
  parallel: number,
  tokens: number,
  splits?: Map<string, Split[]>,
  key?: string,
): Promise<number> {
  const firsts: number[] = [];
  const ends: number[] = [];
  let count = 0;
  d.decodes = 0;
  d.decodeMs = 0;
  const t0 = performance.now();
  if (d.gatherer) d.gatherer.generating = parallel;
  await Promise.all(
    d.completions.slice(0, parallel).map(async (c, i) => {
      let first = 0;
      await c
        .generateCompletionWithMeta(`${parallel > 1 ? `${i} ` : ''}${PROMPT}`, {
          maxTokens: tokens,
          temperature: 0,
          onToken: (t) => {
            if (!first) first = performance.now();
            else count += t.length;
          },
        })
        .finally(() => {
          if (d.gatherer) d.gatherer.generating--;
        });
      firsts.push(first);
      ends.push(performance.now());
    }),
  );
  const wall = Math.max(...ends) - t0;
  // Whole run, prompt included: every token (first ones too) against every decode.
  const all = count + parallel;
  if (splits && key) {
    splits.set(key, [
      ...(splits.get(key) ?? []),
      { decodesPerToken: d.decodes / all, decodeMs: d.decodeMs / all, otherMs: (wall - d.decodeMs) / all },
    ]);
  }
  // Each completion keeps its history: cleared so that every round decodes the same prompt cold.
  for (const s of d.sequences) await s.clearHistory();
  // As for the runtime: from the earliest first token to the last end.
  return (count * 1000) / (Math.max(...ends) - Math.min(...firsts));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const rounds = Number(args.get('--rounds') ?? 2);
  const tokens = Number(args.get('--tokens') ?? 64);
  const threads = (args.get('--threads') ?? '1,2').split(',').map(Number);
  const list = await shapedModels((args.get('--models') ?? 'smol,qwen').split(','));
  const bin = args.has('--no-llama-cpp') ? undefined : llamaCppBin();
  const started = new Date().toISOString();

  const options: RuntimeProcessOptions = {
    modelsDir: path.join(cacheDir, 'models'),
    gpu: false,
    identityCacheFile: path.join(cacheDir, 'bench-state', 'model-hashes.json'),
  };
  // The runtime's own choice in a child of its own: a context with a count the user set holds
  // node-llama-cpp's thread limit for its whole process, and the governor would stand still.
  const registry = new RuntimeProcess(options);
  const governed = new RuntimeProcess(options);
  const llama = await getSharedLlama(false);
  const report: string[] = [];
  console.log(
    `## bench/speed.ts — ${started}\n\n${machine()}; ${rounds} interleaved rounds, ${tokens} tokens; ` +
      `the load average (1 min) after each sample is shown: the machine is shared\n`,
  );
  try {
    for (const model of list) {
      const runtimes = new Map<string, LlmRuntime>();
      const auto = governed.acquire({ source: model.path, settings: { sequences: 4, contextSize: 2048 } });
      runtimes.set('auto', await auto.ready);
      const chosen = auto.settings.threads;
      for (const t of threads) {
        const lease = registry.acquire({
          source: model.path,
          settings: { threads: t, sequences: 4, contextSize: 2048 },
        });
        runtimes.set(`t${t}`, await lease.ready);
      }
      const loaded = await llama.loadModel({ modelPath: model.path, useMmap: false });
      // node-llama-cpp's own batching ("before") and the runtime's gathering strategy ("after").
      const directs = new Map<string, Direct>();
      for (const t of threads) {
        directs.set(`t${t}`, await direct(loaded, t, false));
        directs.set(`t${t} gathered`, await direct(loaded, t, true));
      }
      const splits = new Map<string, Split[]>();

      type Variant = { key: string; run: () => Promise<number> };
      const variants: Variant[] = [];
      for (const [key, runtime] of runtimes) {
        variants.push({ key: `runtime ${key} single`, run: () => single(runtime, tokens) });
        variants.push({ key: `runtime ${key} x4`, run: () => concurrent(runtime, tokens) });
      }
      for (const [k, d] of directs) {
        for (const [n, label] of [
          [1, 'single'],
          [4, 'x4'],
        ] as const) {
          const key = `node-llama-cpp ${k} ${label}`;
          variants.push({ key, run: () => directRun(d, n, tokens, splits, key) });
        }
      }
      if (bin) {
        for (const t of threads) {
          variants.push({
            key: `llama-bench t${t} single`,
            run: () => llamaBench(bin, model.path, t, tokens),
          });
          variants.push({
            key: `llama-batched-bench t${t} x4`,
            run: () => batchedBench(bin, model.path, t, tokens),
          });
        }
      }
      const only = args.get('--only')?.split(',');
      if (only)
        variants.splice(0, variants.length, ...variants.filter((v) => only.some((w) => v.key.includes(w))));
      // Warm-up: pages in the weights, builds the graphs.
      for (const v of variants) if (!v.key.startsWith('llama')) await v.run();

      const got = new Map<string, Got[]>();
      for (let r = 0; r < rounds; r++) {
        for (const v of rotated(variants, r)) {
          const tps = await v.run().catch((err: Error) => {
            console.error(`${v.key}: ${err.message}`);
            return NaN;
          });
          got.set(v.key, [...(got.get(v.key) ?? []), { tps, load: os.loadavg()[0] }]);
          console.error(
            `${model.key} r${r} ${v.key}: ${tps.toFixed(1)} t/s (load ${os.loadavg()[0].toFixed(1)})`,
          );
        }
      }
      const m = runtimes.get('auto')!.getMetrics();
      const governedNote =
        m.threadSwitches === undefined
          ? 'not governed'
          : `${m.threads} at the end, after ${m.threadSwitches} changes with the load`;
      const tpsOf = (key: string): number[] => (got.get(key) ?? []).map((g) => g.tps);
      const best = (keys: string[]): number =>
        Math.max(...keys.map((k) => median(tpsOf(k))).filter(Number.isFinite));
      const rows = variants.map((v) => [
        v.key,
        cell(tpsOf(v.key)),
        cell((got.get(v.key) ?? []).map((g) => g.load)),
      ]);
      const ratios: string[][] = [];
      if (bin) {
        const bench1 = best(threads.map((t) => `llama-bench t${t} single`));
        const batched4 = best(threads.map((t) => `llama-batched-bench t${t} x4`));
        const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');
        ratios.push(
          [
            `runtime, its own choice (${chosen} thread${chosen > 1 ? 's' : ''}) ÷ best llama-bench`,
            f(median(tpsOf('runtime auto single')) / bench1),
          ],
          ...threads.map((t) => [
            `runtime ${t}T ÷ best llama-bench`,
            f(median(tpsOf(`runtime t${t} single`)) / bench1),
          ]),
          ...threads.map((t) => [
            `node-llama-cpp ${t}T ÷ best llama-bench`,
            f(median(tpsOf(`node-llama-cpp t${t} single`)) / bench1),
          ]),
          [
            `runtime x4, its own choice ÷ best llama-batched-bench npl 4`,
            f(median(tpsOf('runtime auto x4')) / batched4),
          ],
          ...threads.map((t) => [
            `runtime x4 ${t}T ÷ best llama-batched-bench npl 4`,
            f(median(tpsOf(`runtime t${t} x4`)) / batched4),
          ]),
          ...threads.flatMap((t) => [
            [
              `node-llama-cpp x4 ${t}T, its own batching ÷ best llama-batched-bench npl 4`,
              f(median(tpsOf(`node-llama-cpp t${t} x4`)) / batched4),
            ],
            [
              `node-llama-cpp x4 ${t}T, gathered ÷ best llama-batched-bench npl 4`,
              f(median(tpsOf(`node-llama-cpp t${t} gathered x4`)) / batched4),
            ],
          ]),
        );
      }
      const f2 = (xs: number[]): string => median(xs).toFixed(2);
      const splitRows = [...splits].map(([key, xs]) => [
        key.replace('node-llama-cpp ', ''),
        f2(xs.map((x) => x.decodesPerToken)),
        f2(xs.map((x) => x.decodeMs)),
        f2(xs.map((x) => x.otherMs)),
        f2(xs.map((x) => x.decodeMs + x.otherMs)),
      ]);
      report.push(
        `### ${model.label}\n\nruntime's own thread choice: ${chosen} at load; ${governedNote}\n\n` +
          table(['variant', 'decode t/s', 'load average (1 min)'], rows) +
          (ratios.length ? `\n\n${table(['ratio (medians)', 'value'], ratios)}` : '') +
          `\n\nWhere one token's time goes, node-llama-cpp in this process (medians per generated token, prompt ` +
          `included; decode: from node-llama-cpp's native decode call to its promise; other: sampling, ` +
          `JavaScript, waiting between decodes):\n\n` +
          table(
            ['threads, batching, requests', 'decodes per token', 'decode ms', 'other ms', 'total ms'],
            splitRows,
          ),
      );
      // Printed at once: a model's tables survive whatever happens to the next one.
      console.log(`${report[report.length - 1]}\n`);
      for (const d of directs.values()) {
        for (const c of d.completions) c.dispose({ disposeSequence: true });
        await d.context.dispose();
      }
      await loaded.dispose();
    }
  } finally {
    // The child may take a moment to go; the tables are printed by then.
    setTimeout(() => process.exit(0), 5000).unref();
    await Promise.all([registry.close(), governed.close()]);
  }
  process.exit(0);
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
