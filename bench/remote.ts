/**
 * The remote backend beside the in-process runtime on the same model file: a real llama-server
 * (built by bench/llama-server.ts) on loopback behind our ServerRuntime, and our ModelRuntime in this
 * process. Same prompts, greedy, the same thread count and one sequence each; the two never run at
 * once. Not a test: prints markdown tables (median [min–max] over interleaved rounds; ratios taken
 * within a round).
 *
 *   npm run build && node dist/bench/remote.js [--quick] [--rounds N] [--threads N] [--max-tokens N]
 *     [--smol FILE] [--models FILE,FILE,...]
 *
 * llama-server is llama.cpp built here from the source node-llama-cpp ships (-march=native, gcc);
 * node-llama-cpp runs its prebuilt CPU binary of the same llama.cpp release.
 */
import { performance } from 'node:perf_hooks';
import { RuntimeRegistry, ServerRuntime, resolveContextSettings, type LlmRuntime } from '../lib/runtime';
import { LlamaServer } from '../test/support/llama-server';
import { ensureLlamaServer } from './llama-server';
import { PROMPTS, benchModels, cell, machine, parseArgs, rotated, table } from './runtime';

interface Sample {
  tokens: number;
  decodeTps: number;
  e2eTps: number;
  ttftMs: number;
}

async function one(runtime: LlmRuntime, prompt: string, maxTokens: number): Promise<Sample> {
  const t0 = performance.now();
  // A stream on both sides: the server's SSE is what a node reading progress gets.
  const r = await runtime.complete(prompt, { maxTokens, temperature: 0, onText: () => undefined });
  const totalMs = performance.now() - t0;
  return {
    tokens: r.tokensOut,
    ttftMs: r.ttftMs,
    decodeTps: r.tokensOut > 1 ? ((r.tokensOut - 1) * 1000) / (r.totalMs - r.ttftMs) : NaN,
    e2eTps: (r.tokensOut * 1000) / totalMs,
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const quick = args.has('--quick');
  const rounds = Number(args.get('--rounds') ?? (quick ? 2 : 5));
  const threads = Number(args.get('--threads') ?? 1);
  const maxTokens = Number(args.get('--max-tokens') ?? 64);
  const binary = await ensureLlamaServer({ log: (l) => console.error(l) });
  const models = await benchModels(args);
  console.log(`# Remote backend (llama-server) vs in-process, ${new Date().toISOString().slice(0, 10)}`);
  console.log();
  console.log(`${machine()}; ${rounds} rounds, threads ${threads}, ${maxTokens} tokens, 1 sequence each`);
  console.log();
  const rows: string[][] = [];
  for (const model of models) {
    console.error(`${model.label} ...`);
    const server = await LlamaServer.start(binary, model.path, ['-t', String(threads), '-np', '1']);
    const settings = resolveContextSettings({ threads, sequences: 1, contextSize: 2048 });
    const remote = new ServerRuntime({ url: server.url }, settings);
    const registry = new RuntimeRegistry({ modelsDir: '.', gpu: false });
    const local = await registry.acquire({
      source: model.path,
      settings: { threads, sequences: 1, contextSize: 2048 },
    }).ready;
    const variants: [string, LlmRuntime][] = [
      ['server', remote],
      ['in-process', local],
    ];
    const samples = new Map<string, Sample[]>(variants.map(([k]) => [k, []]));
    const ratios: number[] = [];
    try {
      for (const [, r] of variants) await one(r, PROMPTS[0], 8); // warm-up
      for (let round = 0; round < rounds; round++) {
        const prompt = PROMPTS[round % PROMPTS.length];
        const got = new Map<string, Sample>();
        for (const [name, r] of rotated(variants, round)) got.set(name, await one(r, prompt, maxTokens));
        for (const [name, s] of got) samples.get(name)!.push(s);
        ratios.push(got.get('server')!.decodeTps / got.get('in-process')!.decodeTps);
      }
    } finally {
      await remote.dispose();
      await registry.close();
      await server.stop();
    }
    const s = samples.get('server')!;
    const l = samples.get('in-process')!;
    rows.push([
      model.label,
      cell(s.map((x) => x.decodeTps)),
      cell(l.map((x) => x.decodeTps)),
      cell(ratios, 2),
      cell(s.map((x) => x.ttftMs)),
      cell(l.map((x) => x.ttftMs)),
      cell(s.map((x) => x.e2eTps)),
      cell(l.map((x) => x.e2eTps)),
      cell(
        s.map((x) => x.tokens),
        0,
      ),
    ]);
  }
  console.log(
    table(
      [
        'model',
        'server decode t/s',
        'in-process decode t/s',
        'server ÷ in-process',
        'server TTFT ms',
        'in-process TTFT ms',
        'server end-to-end t/s',
        'in-process end-to-end t/s',
        'tokens',
      ],
      rows,
    ),
  );
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
