/**
 * Schema-constrained generation vs plain decode on the same model, side by side and interleaved:
 * llm-parse's mission spec (its own system prompt and schema) answered with the JSON grammar, with
 * and without jump-forward (forced characters fed as one batch), beside a plain chat answer to the
 * same messages. Prints decode tokens/s, characters/s, the share of forced tokens and the ratios to
 * plain decode taken inside each round. Not a test.
 *
 *   npm run build && nice -n -5 node dist/bench/grammar.js [--rounds 5] [--tokens 96] [--threads 1]
 *     [--models smol,qwen]
 *
 * Models: the random-weight SmolLM2-135M Q8_0 and Qwen2.5-0.5B Q4_0 shapes of bench/speed.ts
 * (~/.cache/edge-llm/models, synthesized when missing). Random weights never finish the object, so
 * every JSON answer runs to the token limit: the speed is real, the content is not.
 */
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { MISSION_EXAMPLES, MISSION_INSTRUCTION, MISSION_SCHEMA, systemPrompt } from '../lib/llm/parse';
import { RuntimeRegistry, isLlmError, type ChatMessage, type ModelRuntime } from '../lib/runtime';
import { cell, machine, median, parseArgs, rotated, table } from './runtime';
import { BENCH_CACHE_DIR, shapedModels } from './synth-gguf';

const cacheDir = BENCH_CACHE_DIR;

function messages(): ChatMessage[] {
  const example = MISSION_EXAMPLES[0];
  return [
    { role: 'system', content: systemPrompt(MISSION_INSTRUCTION, MISSION_SCHEMA) },
    { role: 'user', content: example.input },
    { role: 'assistant', content: JSON.stringify(example.output) },
    {
      role: 'user',
      content:
        'Check pump P-101 and the cooling loop, read temperature and vibration, alert if the bearing goes above 85 °C, ' +
        'stay under 2 m/s and finish within 20 minutes.',
    },
  ];
}

interface Sample {
  tps: number;
  cps: number;
  tokens: number;
  forced: number;
}

type Call = (onText: (text: string) => void) => Promise<unknown>;

/**
 * Times one request from outside: from its first streamed text to its end, with the output tokens
 * from the runtime's counters (a JSON answer cut at the token limit still decoded its tokens).
 */
async function timed(runtime: ModelRuntime, call: Call): Promise<Sample> {
  const before = runtime.getMetrics();
  let first = 0;
  let chars = 0;
  try {
    await call((text) => {
      first ||= performance.now();
      chars += text.length;
    });
  } catch (err) {
    if (!isLlmError(err) || err.code !== 'truncated') throw err;
  }
  const end = performance.now();
  const after = runtime.getMetrics();
  const tokens = after.tokensOut - before.tokensOut;
  const seconds = (end - (first || end)) / 1000;
  return {
    tps: (tokens - 1) / seconds,
    cps: chars / seconds,
    tokens,
    forced: (after.tokensForced ?? 0) - (before.tokensForced ?? 0),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const rounds = Number(args.get('--rounds') ?? 5);
  const tokens = Number(args.get('--tokens') ?? 96);
  const threads = Number(args.get('--threads') ?? 1);
  const wanted = (args.get('--models') ?? 'smol,qwen').split(',');
  const registry = new RuntimeRegistry({ modelsDir: path.join(cacheDir, 'models'), gpu: false });
  console.log(
    `## bench/grammar.ts — ${new Date().toISOString()}\n\n${machine()}; threads ${threads}; ${rounds} interleaved ` +
      `rounds of ${tokens} tokens after llm-parse's mission prompt (warm prefix); cells median [min–max]\n`,
  );
  try {
    for (const m of await shapedModels(wanted)) {
      const file = m.path;
      const lease = registry.acquire({
        source: file,
        settings: { threads, sequences: 1, contextSize: 2048 },
      });
      const runtime = (await lease.ready) as ModelRuntime;
      const msgs = messages();
      const variants: Array<{ key: string; run: () => Promise<Sample> }> = [
        {
          key: 'plain',
          run: () =>
            timed(runtime, (onText) => runtime.chat(msgs, { maxTokens: tokens, temperature: 0, onText })),
        },
        {
          key: 'json',
          run: () =>
            timed(runtime, (onText) =>
              runtime.generateJson(msgs, MISSION_SCHEMA, { maxTokens: tokens, jumpForward: false, onText }),
            ),
        },
        {
          key: 'json+jump',
          run: () =>
            timed(runtime, (onText) =>
              runtime.generateJson(msgs, MISSION_SCHEMA, { maxTokens: tokens, jumpForward: true, onText }),
            ),
        },
      ];
      for (const v of variants) await v.run(); // warm-up: the instruction prefix, the grammar
      const got = new Map<string, Sample[]>();
      const ratios = new Map<string, number[]>();
      for (let r = 0; r < rounds; r++) {
        const round = new Map<string, Sample>();
        for (const v of rotated(variants, r)) {
          const s = await v.run();
          round.set(v.key, s);
          got.set(v.key, [...(got.get(v.key) ?? []), s]);
          console.error(
            `${m.key} r${r} ${v.key}: ${s.tps.toFixed(1)} t/s, ${s.tokens} tokens (${s.forced} forced)`,
          );
        }
        const plain = round.get('plain')!;
        for (const key of ['json', 'json+jump']) {
          const s = round.get(key)!;
          ratios.set(`${key} t/s`, [...(ratios.get(`${key} t/s`) ?? []), s.tps / plain.tps]);
          ratios.set(`${key} chars/s`, [...(ratios.get(`${key} chars/s`) ?? []), s.cps / plain.cps]);
        }
        const a = round.get('json')!;
        const b = round.get('json+jump')!;
        ratios.set('jump ÷ no jump t/s', [...(ratios.get('jump ÷ no jump t/s') ?? []), b.tps / a.tps]);
      }
      const of = (key: string, f: (s: Sample) => number): number[] => (got.get(key) ?? []).map(f);
      console.log(
        `### ${m.label}\n\n` +
          table(
            ['variant', 'decode t/s', 'chars/s', 'tokens', 'forced tokens'],
            variants.map((v) => [
              v.key,
              cell(of(v.key, (s) => s.tps)),
              cell(of(v.key, (s) => s.cps)),
              cell(
                of(v.key, (s) => s.tokens),
                0,
              ),
              cell(
                of(v.key, (s) => s.forced),
                0,
              ),
            ]),
          ) +
          '\n\n' +
          table(
            ['ratio (per round)', 'value'],
            [...ratios].map(([k, xs]) => [
              k.startsWith('jump') ? k : `${k} ÷ plain`,
              `${median(xs).toFixed(2)} [${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}]`,
            ]),
          ) +
          '\n',
      );
      lease.release();
    }
  } finally {
    await registry.close();
  }
  process.exit(0);
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
