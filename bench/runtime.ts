/**
 * The model runtime against node-llama-cpp used directly, on the same Llama and threads: single-request
 * decode speed (and so the runtime's overhead), aggregate speed with 1, 2, 4 concurrent requests on a
 * 4-sequence context, threads 1 vs 2, and resident memory of 1 and 6 nodes sharing a model through the
 * registry versus 6 separate loads (each configuration in a fresh child process). Not a test: prints
 * markdown tables. Repetitions are interleaved round-robin; each cell is median [min–max]; ratios are
 * taken within a round (the variants ran side by side) and then summarised.
 *
 *   npm run build && node dist/bench/runtime.js [--quick] [--rounds N] [--only single,concurrency,memory]
 *     [--smol FILE] [--models FILE,FILE,...] [--max-tokens N]
 *
 * Models: the SmolLM2-135M-shaped Q8_0 model (synthesized into bench/models/ when missing, see
 * synth-gguf.ts) and the two test models (EDGE_LLM_MODELS_DIR or ../shared/models).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { LlamaCompletion, LlamaContext, LlamaModel } from 'node-llama-cpp' with {
  'resolution-mode': 'import',
};
import { inputLength, inputTooLong } from '../lib/llm/prompt';
import {
  RuntimeProcess,
  RuntimeRegistry,
  defaultThreads,
  getSharedLlama,
  loadNodeLlamaCpp,
  type ContextSettings,
  type LlmRuntime,
  type ModelRuntime,
  type Registry,
} from '../lib/runtime';
import { testModel } from '../test/support/models';
import { synthesizeGguf } from './synth-gguf';

// ---------------------------------------------------------------------------------------------
// Statistics and tables (also used by bench/llm.ts)

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** `median [min–max]`, the one cell format of every table here. */
export function cell(xs: number[], digits = 1): string {
  const ok = xs.filter((x) => Number.isFinite(x));
  if (ok.length === 0) return '–';
  const f = (x: number): string => x.toFixed(digits);
  if (ok.length === 1) return f(ok[0]);
  return `${f(median(ok))} [${f(Math.min(...ok))}–${f(Math.max(...ok))}]`;
}

export function table(headers: string[], rows: string[][]): string {
  return [
    `| ${headers.join(' | ')} |`,
    `|${headers.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

/** Round r runs the variants starting at a different one, so none always goes first after a pause. */
export function rotated<T>(items: T[], round: number): T[] {
  const k = round % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

export const PROMPTS = [
  'The maintenance log for pump station 4 shows that the bearing temperature rose during the night shift, and the operator wrote:',
  'Inspection report, valve network, building B. The pressure readings at the inlet manifold were stable until',
  'Once upon a time, in a factory full of robots, a small inspection drone noticed that one of the conveyor belts',
  'Alarm summary for line 3: vibration on motor M-12 exceeded the warning level twice. The first event started when',
  'The robot arm on cell 7 stopped after a torque limit was reached. According to the controller trace, the last command',
];

export interface BenchModel {
  label: string;
  path: string;
}

export async function benchModels(args: Map<string, string>): Promise<BenchModel[]> {
  const list = args.get('--models');
  if (list) return list.split(',').map((p) => ({ label: path.basename(p), path: path.resolve(p) }));
  const smol = path.resolve(args.get('--smol') ?? path.join('bench', 'models', 'smol135-q8_0.gguf'));
  if (!existsSync(smol)) {
    console.error(`synthesizing ${smol} (SmolLM2-135M shape, Q8_0, 32k vocab) ...`);
    await synthesizeGguf({ out: smol });
  }
  return [
    { label: path.basename(smol), path: smol },
    { label: 'stories260K.gguf', path: await testModel('stories') },
    { label: 'llama-2-tiny-random.gguf', path: await testModel('tinyRandom') },
  ];
}

export function parseArgs(argv: string[]): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (!flag.startsWith('--')) throw new Error(`unexpected argument ${flag}`);
    const value = argv[i + 1];
    if (value === undefined || value.startsWith('--')) args.set(flag, 'true');
    else args.set(flag, argv[++i]);
  }
  return args;
}

export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.availableParallelism()} vCPU (${cpu}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

// ---------------------------------------------------------------------------------------------
// One generation, timed the same way for both paths

interface Sample {
  tokens: number;
  /** Output tokens after the first, per second of decoding (prompt and first token excluded). */
  decodeTps: number;
  /** All output tokens per second of the whole request. */
  e2eTps: number;
  ttftMs: number;
}

function sample(tokens: number, ttftMs: number, totalMs: number): Sample {
  return {
    tokens,
    ttftMs,
    decodeTps: tokens > 1 ? ((tokens - 1) * 1000) / (totalMs - ttftMs) : NaN,
    e2eTps: (tokens * 1000) / totalMs,
  };
}

async function viaRuntime(runtime: ModelRuntime, prompt: string, maxTokens: number): Promise<Sample> {
  const t0 = performance.now();
  const r = await runtime.complete(prompt, { maxTokens, temperature: 0 });
  // The runtime's ttft counts from its own enqueue, a few µs after t0.
  return sample(r.tokensOut, r.ttftMs, performance.now() - t0);
}

async function viaDirect(completion: LlamaCompletion, prompt: string, maxTokens: number): Promise<Sample> {
  let tokens = 0;
  let first = 0;
  const t0 = performance.now();
  await completion.generateCompletionWithMeta(prompt, {
    maxTokens,
    temperature: 0,
    onToken: (t) => {
      if (tokens === 0) first = performance.now();
      tokens += t.length;
    },
  });
  const end = performance.now();
  return sample(tokens, (first || end) - t0, end - t0);
}

/** node-llama-cpp as other Node-RED AI packages use it: one context of its own, LlamaCompletion per sequence. */
interface Direct {
  context: LlamaContext;
  completions: LlamaCompletion[];
}

async function direct(model: LlamaModel, threads: number, sequences: number, contextSize: number) {
  const { LlamaCompletion } = await loadNodeLlamaCpp();
  const context = await model.createContext({ contextSize, sequences, threads });
  const completions = Array.from(
    { length: sequences },
    () => new LlamaCompletion({ contextSequence: context.getSequence() }),
  );
  return { context, completions } satisfies Direct;
}

async function disposeDirect(d: Direct): Promise<void> {
  for (const c of d.completions) c.dispose({ disposeSequence: true });
  await d.context.dispose();
}

/**
 * Two threads on two cores make the tiny test models decode at a few dozen tokens/s (part d shows
 * it); their concurrency runs at 2 threads would take minutes and say nothing new.
 */
function concurrencyThreads(model: BenchModel): number[] {
  return statSync(model.path).size > 50e6 ? [1, 2] : [1];
}

// ---------------------------------------------------------------------------------------------
// a) + d): single request, runtime vs direct, threads 1 and 2; b) concurrency on 4 sequences

interface InProcessResults {
  single: Map<string, Sample[]>;
  /** Per round: runtime / direct decode t/s, per thread count. */
  overhead: Map<number, number[]>;
  /** Per round: 2 threads / 1 thread decode t/s, runtime and direct. */
  threadRatio: Map<string, number[]>;
  concurrency: Map<string, number[]>;
  concurrencyRatio: Map<string, number[]>;
}

async function inProcess(
  model: BenchModel,
  rounds: number,
  maxTokens: number,
  parts: Set<string>,
): Promise<InProcessResults> {
  const llama = await getSharedLlama(false);
  const registry = new RuntimeRegistry({ modelsDir: path.dirname(model.path), gpu: false });
  const lease = (settings: ContextSettings): Promise<ModelRuntime> =>
    registry.acquire({ source: model.path, settings }).ready;
  const threads = [1, 2];
  const res: InProcessResults = {
    single: new Map(),
    overhead: new Map(),
    threadRatio: new Map(),
    concurrency: new Map(),
    concurrencyRatio: new Map(),
  };
  const push = <T>(m: Map<string, T[]>, k: string, v: T): void => {
    m.set(k, [...(m.get(k) ?? []), v]);
  };

  const loaded = await llama.loadModel({ modelPath: model.path });
  const contextSize = Math.min(4096, loaded.trainContextSize);
  const directs: Direct[] = [];
  try {
    if (parts.has('single')) {
      const runtimes = new Map<number, ModelRuntime>();
      const singles = new Map<number, Direct>();
      for (const t of threads) {
        runtimes.set(t, await lease({ threads: t, sequences: 1, contextSize }));
        const d = await direct(loaded, t, 1, contextSize);
        directs.push(d);
        singles.set(t, d);
      }
      const variants = threads.flatMap((t) => [
        { key: `runtime t${t}`, run: (p: string) => viaRuntime(runtimes.get(t)!, p, maxTokens) },
        { key: `direct t${t}`, run: (p: string) => viaDirect(singles.get(t)!.completions[0], p, maxTokens) },
      ]);
      for (const v of variants) await v.run(PROMPTS[0]); // warm-up: page in weights, build graphs
      for (let r = 0; r < rounds; r++) {
        const prompt = PROMPTS[r % PROMPTS.length];
        const got = new Map<string, Sample>();
        for (const v of rotated(variants, r)) got.set(v.key, await v.run(prompt));
        for (const [k, s] of got) push(res.single, k, s);
        for (const t of threads) {
          const ratio = got.get(`runtime t${t}`)!.decodeTps / got.get(`direct t${t}`)!.decodeTps;
          res.overhead.set(t, [...(res.overhead.get(t) ?? []), ratio]);
        }
        for (const who of ['runtime', 'direct']) {
          push(res.threadRatio, who, got.get(`${who} t2`)!.decodeTps / got.get(`${who} t1`)!.decodeTps);
        }
      }
    }

    if (parts.has('concurrency')) {
      const levels = [1, 2, 4];
      const variants: Array<{ key: string; t: number; c: number; run: (r: number) => Promise<number> }> = [];
      for (const t of concurrencyThreads(model)) {
        const runtime = await lease({ threads: t, sequences: 4, contextSize });
        const d = await direct(loaded, t, 4, contextSize);
        directs.push(d);
        for (const c of levels) {
          const prompts = (r: number): string[] =>
            Array.from({ length: c }, (_, i) => PROMPTS[(r + i) % PROMPTS.length]);
          variants.push({
            key: `runtime t${t} c${c}`,
            t,
            c,
            run: async (r) => {
              const t0 = performance.now();
              const out = await Promise.all(
                prompts(r).map((p) => runtime.complete(p, { maxTokens, temperature: 0 })),
              );
              return (out.reduce((n, o) => n + o.tokensOut, 0) * 1000) / (performance.now() - t0);
            },
          });
          variants.push({
            key: `direct t${t} c${c}`,
            t,
            c,
            run: async (r) => {
              let tokens = 0;
              const t0 = performance.now();
              await Promise.all(
                prompts(r).map((p, i) =>
                  d.completions[i].generateCompletionWithMeta(p, {
                    maxTokens,
                    temperature: 0,
                    onToken: (tk) => (tokens += tk.length),
                  }),
                ),
              );
              return (tokens * 1000) / (performance.now() - t0);
            },
          });
        }
      }
      for (const v of variants) if (v.c === 4) await v.run(0);
      for (let r = 0; r < rounds; r++) {
        const got = new Map<string, number>();
        for (const v of rotated(variants, r)) got.set(v.key, await v.run(r));
        for (const [k, tps] of got) push(res.concurrency, k, tps);
        for (const t of concurrencyThreads(model))
          for (const c of levels)
            push(
              res.concurrencyRatio,
              `t${t} c${c}`,
              got.get(`runtime t${t} c${c}`)! / got.get(`direct t${t} c${c}`)!,
            );
      }
    }
  } finally {
    for (const d of directs) await disposeDirect(d);
    await registry.close();
    await loaded.dispose();
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// e) the process boundary: the runtime in its child process vs in this process

interface BoundaryResults {
  decode: Map<string, number[]>;
  /** Per round: child ÷ in-process decode t/s. */
  ratio: number[];
  /** Median latency of a one-token request, per round. */
  small: Map<string, number[]>;
  /** Per round: child − in-process one-token latency (ms). */
  diff: number[];
  /** A message there and back (token count of one character), ms. */
  rtt: number[];
}

async function boundary(model: BenchModel, rounds: number, maxTokens: number): Promise<BoundaryResults> {
  const threads = defaultThreads();
  const settings: ContextSettings = { threads, sequences: 1, contextSize: 2048 };
  const registries: Array<[string, Registry]> = [
    ['in-process', new RuntimeRegistry({ modelsDir: path.dirname(model.path), gpu: false })],
    ['child', new RuntimeProcess({ modelsDir: path.dirname(model.path), gpu: false })],
  ];
  const res: BoundaryResults = { decode: new Map(), ratio: [], small: new Map(), diff: [], rtt: [] };
  try {
    const runtimes = new Map<string, LlmRuntime>();
    for (const [key, registry] of registries)
      runtimes.set(key, await registry.acquire({ source: model.path, settings }).ready);
    // Seen from the caller, streaming on as the nodes use it: everything the boundary costs is in it.
    const decode = async (runtime: LlmRuntime, prompt: string): Promise<number> => {
      const t0 = performance.now();
      const r = await runtime.complete(prompt, { maxTokens, temperature: 0, onText: () => undefined });
      return (r.tokensOut * 1000) / (performance.now() - t0);
    };
    const oneToken = async (runtime: LlmRuntime): Promise<number> => {
      const times: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        await runtime.complete('Once', { maxTokens: 1, temperature: 0 });
        times.push(performance.now() - t0);
      }
      return median(times);
    };
    for (const runtime of runtimes.values()) {
      await decode(runtime, PROMPTS[0]);
      await oneToken(runtime);
    }
    for (let r = 0; r < rounds; r++) {
      const prompt = PROMPTS[r % PROMPTS.length];
      const tps = new Map<string, number>();
      const small = new Map<string, number>();
      for (const [key] of rotated(registries, r)) {
        tps.set(key, await decode(runtimes.get(key)!, prompt));
        small.set(key, await oneToken(runtimes.get(key)!));
      }
      for (const [key, v] of tps) res.decode.set(key, [...(res.decode.get(key) ?? []), v]);
      for (const [key, v] of small) res.small.set(key, [...(res.small.get(key) ?? []), v]);
      res.ratio.push(tps.get('child')! / tps.get('in-process')!);
      res.diff.push(small.get('child')! - small.get('in-process')!);
      const trips: number[] = [];
      for (let i = 0; i < 50; i++) {
        const t0 = performance.now();
        await runtimes.get('child')!.tokenCounts(['x']);
        trips.push(performance.now() - t0);
      }
      res.rtt.push(median(trips));
    }
  } finally {
    for (const [, registry] of registries) await registry.close();
  }
  return res;
}

/** How long an LLM node takes to measure and refuse an input over its bound (ms, median of 20). */
function refusalMs(): Array<[string, number]> {
  const inputs: Array<[string, unknown]> = [
    ['10 MB string', 'x'.repeat(10 * 2 ** 20)],
    [
      '200,000 readings {sensor, value}',
      Array.from({ length: 200_000 }, (_, i) => ({ sensor: `s${i}`, value: i })),
    ],
  ];
  return inputs.map(([label, input]) => {
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const n = inputLength(input, 32_000);
      if (n > 32_000) inputTooLong(input, n, 32_000);
      times.push(performance.now() - t0);
    }
    return [label, median(times)];
  });
}

// ---------------------------------------------------------------------------------------------
// f) memory over redeploys: what grows, and in which process

interface RedeployReport {
  cycles: number[];
  rssMb: number[];
  anonMb: number[];
  heapMb: number[];
  externalMb: number[];
  childRssMb: number[];
}

function statusOf(pid: number | 'self'): { rss: number; anon: number } {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    return { rss: kb('VmRSS') / 1024, anon: kb('RssAnon') / 1024 };
  } catch {
    return { rss: NaN, anon: NaN };
  }
}

/** In a fresh process: 60 redeploys (2 leases with 4 sequences, one request each, released). */
async function redeployChild(isolation: string, modelPath: string): Promise<RedeployReport> {
  const options = { modelsDir: path.dirname(modelPath), gpu: false as const, idleExitMs: 60_000 };
  const registry: Registry =
    isolation === 'child' ? new RuntimeProcess(options) : new RuntimeRegistry(options);
  const report: RedeployReport = {
    cycles: [],
    rssMb: [],
    anonMb: [],
    heapMb: [],
    externalMb: [],
    childRssMb: [],
  };
  const checkpoints = new Set([1, 5, 10, 20, 40, 60]);
  for (let cycle = 1; cycle <= 60; cycle++) {
    const leases = [1, 2].map(() => registry.acquire({ source: modelPath, settings: { sequences: 4 } }));
    const runtime = await leases[0].ready;
    await runtime.generateJson(
      'Zone C level 1',
      { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] },
      { maxTokens: 16 },
    );
    await Promise.all(leases.map((l) => l.release()));
    if (checkpoints.has(cycle)) {
      global.gc?.();
      const own = statusOf('self');
      const mem = process.memoryUsage();
      const pid = registry instanceof RuntimeProcess ? registry.pid : undefined;
      report.cycles.push(cycle);
      report.rssMb.push(own.rss);
      report.anonMb.push(own.anon);
      report.heapMb.push(mem.heapUsed / 2 ** 20);
      report.externalMb.push(mem.external / 2 ** 20);
      report.childRssMb.push(pid ? statusOf(pid).rss : NaN);
    }
  }
  await registry.close();
  return report;
}

function runRedeployChild(isolation: string, modelPath: string, env: NodeJS.ProcessEnv): RedeployReport {
  const text = execFileSync(
    process.execPath,
    ['--expose-gc', __filename, '--redeploy-child', isolation, '--model', modelPath],
    { encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return JSON.parse(text.trim().split('\n').at(-1)!) as RedeployReport;
}

// ---------------------------------------------------------------------------------------------
// c) resident memory, one fresh child process per configuration

type MemoryConfig =
  'baseline' | 'registry-1' | 'registry-6' | 'registry-6-distinct' | 'direct-1' | 'direct-6';

const MEMORY_CONFIGS: Array<{ config: MemoryConfig; label: string }> = [
  { config: 'baseline', label: 'Node + node-llama-cpp, no model' },
  { config: 'registry-1', label: '1 node (registry, 1 lease)' },
  { config: 'registry-6', label: '6 nodes, same settings (registry: 1 model, 1 context)' },
  {
    config: 'registry-6-distinct',
    label: '6 nodes, each its own queue limit (registry: 1 model, 1 shared context)',
  },
  { config: 'direct-1', label: '1 direct load (loadModel + context)' },
  { config: 'direct-6', label: '6 direct loads (6 × loadModel + context)' },
];

interface MemoryReport {
  rssMb: number;
  hwmMb: number;
  anonMb: number;
  fileMb: number;
  pssMb: number;
  loadMs: number;
}

function procStatusMb(): Omit<MemoryReport, 'loadMs'> {
  const kb = (text: string, key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  const status = readFileSync('/proc/self/status', 'utf8');
  const rollup = existsSync('/proc/self/smaps_rollup') ? readFileSync('/proc/self/smaps_rollup', 'utf8') : '';
  return {
    rssMb: kb(status, 'VmRSS') / 1024,
    hwmMb: kb(status, 'VmHWM') / 1024,
    anonMb: kb(status, 'RssAnon') / 1024,
    fileMb: kb(status, 'RssFile') / 1024,
    pssMb: kb(rollup, 'Pss') / 1024,
  };
}

async function memoryChild(
  config: MemoryConfig,
  modelPath: string,
  maxTokens: number,
): Promise<MemoryReport> {
  const llama = await getSharedLlama(false);
  const t0 = performance.now();
  const work: Array<() => Promise<unknown>> = [];
  const prompt = PROMPTS[0];
  if (config.startsWith('registry')) {
    const registry = new RuntimeRegistry({ modelsDir: path.dirname(modelPath), gpu: false });
    const nodes = config === 'registry-1' ? 1 : 6;
    // What six llm-runtime config nodes with the default settings (or six different queue limits) ask for.
    const runtimes = await Promise.all(
      Array.from(
        { length: nodes },
        (_, i) =>
          registry.acquire({
            source: modelPath,
            settings: config === 'registry-6-distinct' ? { queueLimit: 32 + i } : {},
          }).ready,
      ),
    );
    for (const rt of runtimes) work.push(() => rt.complete(prompt, { maxTokens }));
  } else if (config.startsWith('direct')) {
    const { LlamaCompletion } = await loadNodeLlamaCpp();
    const loads = config === 'direct-1' ? 1 : 6;
    for (let i = 0; i < loads; i++) {
      const model = await llama.loadModel({ modelPath });
      const context = await model.createContext({
        contextSize: Math.min(4096, model.trainContextSize),
        threads: defaultThreads(),
      });
      const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
      work.push(() => completion.generateCompletion(prompt, { maxTokens, temperature: 0 }));
    }
  }
  const loadMs = performance.now() - t0;
  // Every node answers once, so compute buffers and KV pages are touched as in a running flow.
  for (const w of work) await w();
  return { ...procStatusMb(), loadMs };
}

function runMemoryChild(config: MemoryConfig, modelPath: string, maxTokens: number): MemoryReport {
  const out = execFileSync(
    process.execPath,
    [__filename, '--memory-child', config, '--model', modelPath, '--max-tokens', String(maxTokens)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 },
  );
  return JSON.parse(out.trim().split('\n').pop()!) as MemoryReport;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const maxTokens = Number(args.get('--max-tokens') ?? 64);
  const redeploy = args.get('--redeploy-child');
  if (redeploy) {
    console.log(JSON.stringify(await redeployChild(redeploy, args.get('--model')!)));
    process.exit(0);
  }
  const child = args.get('--memory-child');
  if (child) {
    const report = await memoryChild(child as MemoryConfig, args.get('--model')!, Math.min(maxTokens, 8));
    console.log(JSON.stringify(report));
    process.exit(0);
  }
  const quick = args.has('--quick');
  const rounds = Number(args.get('--rounds') ?? (quick ? 2 : 5));
  const memoryRounds = Number(args.get('--memory-rounds') ?? (quick ? 1 : 2));
  const parts = new Set((args.get('--only') ?? 'single,concurrency,memory,boundary,redeploys').split(','));
  const models = await benchModels(args);
  const started = Date.now();

  const out: string[] = [];
  const print = (s = ''): void => {
    out.push(s);
    console.log(s);
  };
  print(`# Runtime benchmark, ${new Date().toISOString().slice(0, 10)}`);
  print();
  print(
    `${machine()}; node-llama-cpp CPU backend (gpu: false); default threads here: ${defaultThreads()}. ` +
      `${rounds} interleaved rounds after one warm-up, ${maxTokens} greedy tokens per request; cells: median [min–max].`,
  );

  const results = new Map<string, InProcessResults>();
  for (const model of models) {
    if (!parts.has('single') && !parts.has('concurrency')) break;
    console.error(`${model.label}: in-process runs ...`);
    results.set(model.label, await inProcess(model, rounds, maxTokens, parts));
  }

  if (parts.has('single')) {
    print();
    print('## a) + d) Single request: our runtime vs node-llama-cpp directly (decode tokens/s)');
    print();
    print(
      'Runtime: `RuntimeRegistry` lease with `{threads, sequences: 1}` → `runtime.complete(prompt, {maxTokens, temperature: 0})`. ' +
        'Direct: the same `Llama`, the model loaded once more, `createContext({sequences: 1, threads})` + `LlamaCompletion.generateCompletionWithMeta`. ' +
        'Decode t/s = (tokens − 1) / (time after the first token); ratios per round, runtime ÷ direct.',
    );
    print();
    const rows: string[][] = [];
    for (const [label, r] of results) {
      for (const t of [1, 2]) {
        const rt = r.single.get(`runtime t${t}`) ?? [];
        const d = r.single.get(`direct t${t}`) ?? [];
        rows.push([
          label,
          String(t),
          cell(rt.map((s) => s.decodeTps)),
          cell(d.map((s) => s.decodeTps)),
          cell(r.overhead.get(t) ?? [], 2),
          cell(
            rt.map((s, i) => 1000 / s.decodeTps - 1000 / (d[i]?.decodeTps ?? NaN)),
            2,
          ),
          cell(rt.map((s) => s.ttftMs)),
          cell(d.map((s) => s.ttftMs)),
          cell(
            rt.map((s) => s.tokens),
            0,
          ),
        ]);
      }
    }
    print(
      table(
        [
          'model',
          'threads',
          'runtime t/s',
          'direct t/s',
          'runtime ÷ direct',
          'extra ms/token',
          'runtime TTFT ms',
          'direct TTFT ms',
          'tokens',
        ],
        rows,
      ),
    );
    print();
    print('### d) Threads 2 ÷ 1, single request decode (per round)');
    print();
    print(
      table(
        ['model', 'runtime t1 t/s', 'runtime t2 t/s', 'runtime t2 ÷ t1', 'direct t2 ÷ t1'],
        [...results].map(([label, r]) => [
          label,
          cell((r.single.get('runtime t1') ?? []).map((s) => s.decodeTps)),
          cell((r.single.get('runtime t2') ?? []).map((s) => s.decodeTps)),
          cell(r.threadRatio.get('runtime') ?? [], 2),
          cell(r.threadRatio.get('direct') ?? [], 2),
        ]),
      ),
    );
  }

  if (parts.has('concurrency')) {
    print();
    print('## b) Aggregate tokens/s with 1, 2, 4 concurrent requests on a 4-sequence context');
    print();
    print(
      'Runtime: lease with `{threads, sequences: 4}`, N `complete()` calls at once (distinct prompts). ' +
        'Direct: a 4-sequence context, N `LlamaCompletion`s on N sequences at once. Aggregate = all output tokens / wall time of the batch (prompts included). Threads 2 only for models over 50 MB (the tiny test models crawl at 2 threads on 2 cores, see d).',
    );
    print();
    const rows: string[][] = [];
    for (const [label, r] of results) {
      for (const t of [1, 2]) {
        if (!r.concurrency.has(`runtime t${t} c1`)) continue;
        const at = (who: string, c: number): number[] => r.concurrency.get(`${who} t${t} c${c}`) ?? [];
        rows.push([
          label,
          String(t),
          ...[1, 2, 4].map((c) => cell(at('runtime', c))),
          cell(
            at('runtime', 4).map((x, i) => x / at('runtime', 1)[i]),
            2,
          ),
          ...[1, 2, 4].map((c) => cell(at('direct', c))),
          cell(r.concurrencyRatio.get(`t${t} c4`) ?? [], 2),
        ]);
      }
    }
    print(
      table(
        [
          'model',
          'threads',
          'runtime c=1',
          'runtime c=2',
          'runtime c=4',
          'runtime c4 ÷ c1',
          'direct c=1',
          'direct c=2',
          'direct c=4',
          'runtime ÷ direct (c=4)',
        ],
        rows,
      ),
    );
  }

  if (parts.has('memory')) {
    print();
    print('## c) Resident memory, one fresh process per configuration (MB)');
    print();
    print(
      `Each configuration runs in a new \`node\` process: it loads, every node/load answers one request of ${Math.min(maxTokens, 8)} tokens, then reads /proc/self/status and smaps_rollup. ` +
        'Registry leases use the default settings (4 sequences, context min(4096, train), default threads); a direct load is `loadModel` + `createContext({contextSize: same, threads})` with 1 sequence. ' +
        'RSS counts a file page once per mapping (6 mmaps of one file count 6×); PSS counts each physical page once, which is what the gateway actually spends.',
    );
    for (const model of models) {
      console.error(`${model.label}: memory children ...`);
      const reports = new Map<MemoryConfig, MemoryReport[]>();
      for (let r = 0; r < memoryRounds; r++) {
        for (const { config } of rotated(MEMORY_CONFIGS, r)) {
          reports.set(config, [
            ...(reports.get(config) ?? []),
            runMemoryChild(config, model.path, maxTokens),
          ]);
        }
      }
      print();
      print(
        `**${model.label}** (${memoryRounds} fresh process${memoryRounds > 1 ? 'es' : ''} per configuration)`,
      );
      print();
      print(
        table(
          ['configuration', 'RSS', 'PSS', 'anon', 'file-backed', 'peak RSS', 'load ms'],
          MEMORY_CONFIGS.map(({ config, label }) => {
            const rs = reports.get(config) ?? [];
            const col = (k: keyof MemoryReport, d = 0): string =>
              cell(
                rs.map((x) => x[k]),
                d,
              );
            return [
              label,
              col('rssMb'),
              col('pssMb'),
              col('anonMb'),
              col('fileMb'),
              col('hwmMb'),
              col('loadMs'),
            ];
          }),
        ),
      );
    }
  }
  if (parts.has('boundary')) {
    print();
    print(
      "## e) The process boundary: the runtime in its child process vs in Node-RED's (decode tokens/s, ms)",
    );
    print();
    print(
      `The same model and settings (\`{threads: ${defaultThreads()}, sequences: 1, contextSize: 2048}\`) through \`RuntimeRegistry\` (in-process) and \`RuntimeProcess\` (child, the default). ` +
        `Tokens/s of a ${maxTokens}-token request seen by the caller (wall time, prompt included, text streamed as the nodes ask for it); one-token request: median of 20 \`complete('Once', {maxTokens: 1})\` end to end; ` +
        "round trip: median of 50 `tokenCounts(['x'])` (a message there and back). Ratios and differences per round.",
    );
    print();
    const rows: string[][] = [];
    for (const model of models) {
      console.error(`${model.label}: boundary ...`);
      const b = await boundary(model, rounds, maxTokens);
      rows.push([
        model.label,
        cell(b.decode.get('in-process') ?? []),
        cell(b.decode.get('child') ?? []),
        cell(b.ratio, 3),
        cell(b.small.get('in-process') ?? [], 2),
        cell(b.small.get('child') ?? [], 2),
        cell(b.diff, 2),
        cell(b.rtt, 3),
      ]);
    }
    print(
      table(
        [
          'model',
          't/s in-process',
          't/s child',
          'child ÷ in-process',
          '1-token request ms in-process',
          '1-token request ms child',
          'child − in-process ms',
          'IPC round trip ms',
        ],
        rows,
      ),
    );
    print();
    print('Refusing an input over the 32,000-character bound (`inputLength` + the error), ms, median of 20:');
    print();
    print(
      table(
        ['input', 'ms'],
        refusalMs().map(([label, ms]) => [label, ms.toFixed(3)]),
      ),
    );
  }

  if (parts.has('redeploys')) {
    print();
    print('## f) Memory over 60 redeploys (MB)');
    print();
    print(
      'A fresh process per row (`--expose-gc`, gc before each reading): each redeploy acquires 2 leases with 4 sequences on the model, answers one JSON request, releases both. ' +
        "RSS / anonymous RSS / V8 heap / external of Node-RED's process, and the runtime child's RSS where there is one. `MALLOC_ARENA_MAX=2` caps glibc's per-thread malloc arenas.",
    );
    const model = models.find((m) => m.label.startsWith('stories')) ?? models[0];
    const variants: Array<[string, string, NodeJS.ProcessEnv]> = [
      ['in-process', 'in-process', {}],
      ['in-process, MALLOC_ARENA_MAX=2', 'in-process', { MALLOC_ARENA_MAX: '2' }],
      // Large blocks straight from mmap go back to the OS at free(): the test of the allocator theory.
      ['in-process, MALLOC_MMAP_THRESHOLD_=65536', 'in-process', { MALLOC_MMAP_THRESHOLD_: '65536' }],
      ['child', 'child', {}],
    ];
    for (const [label, isolation, env] of variants) {
      console.error(`redeploys: ${label} ...`);
      const r = runRedeployChild(isolation, model.path, env);
      print();
      print(`**${label}** (${model.label})`);
      print();
      print(
        table(
          ['after redeploy', 'RSS', 'anon RSS', 'V8 heap used', 'external', 'child RSS'],
          r.cycles.map((c, i) => [
            String(c),
            r.rssMb[i].toFixed(0),
            r.anonMb[i].toFixed(0),
            r.heapMb[i].toFixed(1),
            r.externalMb[i].toFixed(1),
            Number.isFinite(r.childRssMb[i]) ? r.childRssMb[i].toFixed(0) : '–',
          ]),
        ),
      );
    }
  }

  print();
  print(`(total bench time ${((Date.now() - started) / 60000).toFixed(1)} min)`);
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      console.error(err.stack ?? err.message);
      process.exit(1);
    },
  );
}
