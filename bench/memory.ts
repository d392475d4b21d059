/**
 * Where the memory of a loaded model goes: peak RSS with 4 sequences of 2,048 tokens active, one
 * fresh process per configuration (the runtime child's environment), broken down by mapping
 * (node, node-llama-cpp's native libraries, glibc's heap, anonymous blocks: llama.cpp's buffers)
 * beside the buffer sizes llama.cpp reports when it logs at debug level. Memory does not depend on
 * the machine's load, so one process per configuration is a measurement. Not a test.
 *
 *   npm run build && node dist/bench/memory.js [--models smol,qwen] [--only runtime,direct,...] [--fill 2040]
 *
 * Models: the random-weight SmolLM2-135M Q8_0 and Qwen2.5-0.5B Q4_0 shapes of bench/speed.ts
 * (~/.cache/edge-llm/models, synthesized when missing).
 */
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { ModelRuntime, loadNodeLlamaCpp } from '../lib/runtime';
import { machine, parseArgs, table } from './runtime';
import { shapedModels } from './synth-gguf';

const run = promisify(execFile);
const SEQUENCES = 4;
const CONTEXT = 2048;
/** Tokens each sequence holds when the peak is read (the rest of the 2,048 is room for the answer). */
let FILL = 2040;

interface Variant {
  key: string;
  what: string;
  env?: Record<string, string>;
  /** Goes through ModelRuntime.create (the runtime's own context options); else createContext below. */
  runtime?: boolean;
  batchSize?: number;
  flashAttention?: boolean;
  kvType?: string;
  useMmap?: boolean;
}

/** The runtime child's malloc settings before this change (mmap threshold only) and now. */
const CHILD_ENV = { MALLOC_MMAP_THRESHOLD_: String(2 ** 20) };
const CHILD_ENV_NOW = { ...CHILD_ENV, MALLOC_ARENA_MAX: '2' };

const VARIANTS: Variant[] = [
  {
    key: 'runtime',
    what: 'the runtime now (ModelRuntime.create: batch 128; child env: mmap threshold 1 MiB, MALLOC_ARENA_MAX=2)',
    runtime: true,
    env: CHILD_ENV_NOW,
  },
  {
    key: 'direct',
    what: 'the runtime before: createContext with node-llama-cpp defaults (batch 512), mmap threshold 1 MiB',
    env: CHILD_ENV,
  },
  { key: 'glibc', what: 'same, glibc defaults (no MALLOC_ tunables)' },
  { key: 'arena2', what: 'same + MALLOC_ARENA_MAX=2', env: { ...CHILD_ENV, MALLOC_ARENA_MAX: '2' } },
  { key: 'mmap', what: 'same, weights mapped (useMmap: true)', env: CHILD_ENV, useMmap: true },
  { key: 'batch128', what: 'batch 128', env: CHILD_ENV, batchSize: 128 },
  { key: 'batch32', what: 'batch 32', env: CHILD_ENV, batchSize: 32 },
  { key: 'flash', what: 'flash attention', env: CHILD_ENV, flashAttention: true },
  {
    key: 'flash128',
    what: 'flash attention + batch 128',
    env: CHILD_ENV,
    flashAttention: true,
    batchSize: 128,
  },
  {
    key: 'q8kv',
    what: 'flash attention + batch 128 + KV cache Q8_0',
    env: CHILD_ENV,
    flashAttention: true,
    batchSize: 128,
    kvType: 'Q8_0',
  },
];

interface Reading {
  stage: string;
  rss: number;
  hwm: number;
  anon: number;
  file: number;
}

interface ChildReport {
  readings: Reading[];
  /** MB by mapping kind at the end. */
  byMapping: Record<string, number>;
  /** llama.cpp's own buffer sizes (MiB), from its debug log. */
  buffers: Record<string, number>;
  v8Heap: number;
  batchSize: number;
  flashAttention: boolean;
  loadSeconds: number;
}

function status(): { rss: number; hwm: number; anon: number; file: number } {
  const text = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return {
    rss: kb('VmRSS') / 1024,
    hwm: kb('VmHWM') / 1024,
    anon: kb('RssAnon') / 1024,
    file: kb('RssFile') / 1024,
  };
}

/** Resident MB by what a mapping holds. */
function byMapping(): Record<string, number> {
  const out: Record<string, number> = {};
  let kind = '';
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1];
      if (name === '') kind = 'anonymous (llama.cpp buffers, V8, malloc blocks)';
      else if (name === '[heap]') kind = 'glibc heap (brk)';
      else if (name.startsWith('[')) kind = 'stack, vdso';
      else if (/node-llama-cpp|llama|ggml/.test(name)) kind = 'node-llama-cpp native libraries';
      else if (/\.gguf$/.test(name)) kind = 'model file (mapped)';
      else if (name === process.execPath || /\/node$/.test(name)) kind = 'node binary';
      else kind = 'other libraries and files';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) out[kind] = (out[kind] ?? 0) + Number(rss[1]) / 1024;
  }
  return out;
}

async function child(modelPath: string, variant: Variant): Promise<ChildReport> {
  const readings: Reading[] = [];
  const read = (stage: string): void => {
    readings.push({ stage, ...status() });
  };
  read('node started');
  const { getLlama, LlamaLogLevel } = await loadNodeLlamaCpp();
  const buffers: Record<string, number> = {};
  const llama = await getLlama({
    gpu: false,
    build: 'never',
    logLevel: LlamaLogLevel.debug,
    logger: (_level, message) => {
      // e.g. "load_tensors:   CPU_REPACK model buffer size =   123.45 MiB", "llama_kv_cache: CPU KV buffer size = 188.00 MiB"
      const m = /(\w+)[:\s]+\s*(\S+) (model|KV|compute|output|RS) buffer size =\s*([\d.]+) MiB/.exec(message);
      if (m) {
        const key = `${m[3]} buffer ${m[2]}`;
        buffers[key] = (buffers[key] ?? 0) + Number(m[4]);
      }
    },
  });
  read('llama.cpp loaded');
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath, useMmap: variant.useMmap ?? false });
  const loadSeconds = (performance.now() - t0) / 1000;
  read('model loaded');
  // One thread: the machine is shared, and threads do not change what is allocated.
  const threads = 1;
  let batchSize: number;
  let flashAttention: boolean;
  let fill: (sequences: number) => Promise<void>;
  if (variant.runtime) {
    const runtime = await ModelRuntime.create(model, {
      threads,
      sequences: SEQUENCES,
      contextSize: CONTEXT,
      defaultTimeoutMs: 3_600_000,
    });
    const context = (runtime as unknown as { context: { batchSize: number; flashAttention: boolean } })
      .context;
    batchSize = context.batchSize;
    flashAttention = context.flashAttention === true;
    read('context created');
    const prompts = [0, 1, 2, 3].map((i) => fillText(model, i));
    fill = async () => {
      await Promise.all(prompts.map((p) => runtime.complete(p, { maxTokens: 4 })));
    };
  } else {
    const context = await model.createContext({
      contextSize: CONTEXT,
      sequences: SEQUENCES,
      threads,
      batchSize: variant.batchSize,
      flashAttention: variant.flashAttention ?? false,
      experimentalKvCacheKeyType: variant.kvType as never,
      experimentalKvCacheValueType: variant.kvType as never,
    });
    batchSize = context.batchSize;
    flashAttention = context.flashAttention === true;
    read('context created');
    const sequences = [0, 1, 2, 3].map(() => context.getSequence());
    fill = async () => {
      await Promise.all(
        sequences.map(async (s, i) => {
          const tokens = model.tokenize(fillText(model, i));
          let n = 0;
          for await (const token of s.evaluate(tokens, { temperature: 0 })) {
            void token;
            if (++n >= 4) break;
          }
        }),
      );
    };
  }
  await fill(SEQUENCES);
  read(`${SEQUENCES} sequences × ${FILL} tokens`);
  return {
    readings,
    byMapping: byMapping(),
    buffers,
    v8Heap: process.memoryUsage().heapTotal / 2 ** 20,
    batchSize,
    flashAttention,
    loadSeconds,
  };
}

/** A text of FILL - 4 tokens, different for each sequence. */
function fillText(
  model: { tokenize(text: string): unknown[]; detokenize(tokens: never[]): string },
  i: number,
): string {
  const words =
    `Sequence ${i}: the maintenance log for pump station ${i + 4} shows bearing temperature, inlet pressure, ` +
    'outlet valve position, motor current and vibration readings taken every minute during the night shift. ';
  let text = words;
  while (model.tokenize(text).length < FILL) text += words;
  const tokens = model.tokenize(text).slice(0, FILL - 4);
  return model.detokenize(tokens as never[]);
}

const mb = (x: number | undefined): string => (x === undefined ? '–' : x.toFixed(0));

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.has('--child')) {
    const { model, variant, fill } = JSON.parse(args.get('--child')!) as {
      model: string;
      variant: Variant;
      fill: number;
    };
    FILL = fill;
    const report = await child(model, variant);
    process.stdout.write(`\n@@${JSON.stringify(report)}\n`);
    process.exit(0);
  }
  const only = args.get('--only')?.split(',');
  FILL = Number(args.get('--fill') ?? FILL);
  const variants = VARIANTS.filter((v) => !only || only.includes(v.key));
  console.log(
    `## bench/memory.ts — ${new Date().toISOString()}\n\n${machine()}; ${SEQUENCES} sequences × ${CONTEXT} ` +
      `context, each filled with ${FILL} tokens; one fresh process per row; MB = MiB\n`,
  );
  for (const m of await shapedModels((args.get('--models') ?? 'smol,qwen').split(','))) {
    const weights = statSync(m.path).size / 2 ** 20;
    const rows: string[][] = [];
    const breakdown: string[][] = [];
    let kv = 0;
    for (const v of variants) {
      const env: NodeJS.ProcessEnv = { ...process.env };
      for (const k of Object.keys(env)) if (k.startsWith('MALLOC_')) delete env[k];
      Object.assign(env, v.env ?? {});
      let report: ChildReport;
      try {
        const { stdout } = await run(
          process.execPath,
          [__filename, '--child', JSON.stringify({ model: m.path, variant: v, fill: FILL })],
          { env, maxBuffer: 1 << 26 },
        );
        report = JSON.parse(stdout.split('\n@@').pop()!) as ChildReport;
      } catch (err) {
        console.error(`${m.key} ${v.key}: ${(err as Error).message.slice(0, 400)}`);
        continue;
      }
      const at = (stage: string): Reading | undefined =>
        report.readings.find((r) => r.stage.startsWith(stage));
      const last = report.readings[report.readings.length - 1];
      const buf = report.buffers;
      const sum = (kind: string): number =>
        Object.entries(buf)
          .filter(([k]) => k.startsWith(kind))
          .reduce((n, [, x]) => n + x, 0);
      if (v.key === 'runtime' || kv === 0) kv = sum('KV');
      rows.push([
        v.key,
        v.what,
        String(report.batchSize),
        report.flashAttention ? 'on' : 'off',
        mb(at('node started')?.rss),
        mb(at('llama.cpp loaded')?.rss),
        mb(at('model loaded')?.rss),
        mb(at('context created')?.rss),
        mb(last.rss),
        mb(last.hwm),
        mb(sum('model')),
        mb(sum('KV')),
        mb(sum('compute')),
        mb(sum('output')),
      ]);
      if (breakdown.length === 0) {
        for (const [k, x] of Object.entries(report.byMapping).sort((a, b) => b[1] - a[1]))
          breakdown.push([k, mb(x)]);
        breakdown.push(['total RSS at the end', mb(last.rss)]);
        breakdown.push(['(V8 heap, inside anonymous)', mb(report.v8Heap)]);
        for (const [k, x] of Object.entries(buf)) breakdown.push([`(llama.cpp ${k})`, x.toFixed(1)]);
      }
      console.error(`${m.key} ${v.key}: peak ${last.hwm.toFixed(0)} MB`);
    }
    const target = 1.2 * weights + kv + 100;
    console.log(
      `### ${m.label}\n\nweights ${weights.toFixed(0)} MB, KV cache ${kv.toFixed(0)} MB (f16): target 1.2 × weights + KV + 100 = ${target.toFixed(0)} MB\n\n` +
        table(
          [
            'row',
            'configuration',
            'batch',
            'flash attn',
            'RSS node',
            'RSS + llama.cpp',
            'RSS + model',
            'RSS + context',
            'RSS filled',
            'peak RSS',
            'model buffers',
            'KV buffers',
            'compute buffers',
            'output buffer',
          ],
          rows,
        ) +
        `\n\nWhere the first row's memory is once filled (resident MB by mapping; llama.cpp's buffers in parentheses are its own log, MiB):\n\n` +
        table(['mapping', 'MB'], breakdown) +
        '\n',
    );
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
