/**
 * What llm-parse and llm-plan cost per message: time to first token when the sequence already holds
 * the instruction (warm: same system prompt, new user text) versus when it must read it (cold), and
 * decode speed under the JSON-schema grammar versus plain chat on the same prompt. Built with the
 * nodes' own prompt builders and schemas. Not a test: prints markdown tables (median [min–max]).
 *
 *   npm run build && node dist/bench/llm.js [--quick] [--rounds N] [--threads N] [--max-tokens N]
 *     [--smol FILE] [--models FILE,FILE,...]
 */
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  DEFAULT_CATALOGUE,
  PLAN_INSTRUCTION,
  compileCatalogue,
  describeCatalogue,
  planInput,
  planSchema,
} from '../lib/llm/plan';
import { MISSION_EXAMPLES, MISSION_INSTRUCTION, MISSION_SCHEMA, systemPrompt } from '../lib/llm/parse';
import { buildMessages, prefixKey } from '../lib/llm/prompt';
import {
  RuntimeRegistry,
  compileSchema,
  defaultThreads,
  isLlmError,
  type ChatMessage,
  type CompiledSchema,
  type ModelRuntime,
} from '../lib/runtime';
import { benchModels, cell, machine, parseArgs, rotated, table, type BenchModel } from './runtime';

const COMMANDS = [
  'Inspect the boiler room, read the pressure on every gauge and send an alert if any is above 6 bar. Finish within 20 minutes.',
  'Check the conveyor belts on line 2 for vibration and temperature, report as a table, keep speed under 0.5 m/s.',
  'Look for leaks around the cooling towers and measure the water temperature, battery budget 15 minutes.',
  'Survey the valve network in hall C, report anomalies as JSON, avoid zones above 70 °C.',
  'Read the flow meters at pump station 4 and report, max travel 1 m per minute.',
];

interface Task {
  name: string;
  system: string;
  examples: typeof MISSION_EXAMPLES;
  schema: CompiledSchema;
  inputs: string[];
}

function tasks(): Task[] {
  const catalogue = compileCatalogue(DEFAULT_CATALOGUE);
  return [
    {
      name: 'llm-parse',
      system: systemPrompt(MISSION_INSTRUCTION, MISSION_SCHEMA),
      examples: MISSION_EXAMPLES,
      schema: compileSchema(MISSION_SCHEMA),
      inputs: COMMANDS,
    },
    {
      name: 'llm-plan',
      // As nodes/llm-plan.ts assembles it.
      system: [
        PLAN_INSTRUCTION,
        `Actions:\n${describeCatalogue(catalogue)}`,
        `The answer is one JSON object: {"steps": [{"action", "params", "reason"}, ...]}.`,
      ].join('\n\n'),
      examples: [],
      schema: compileSchema(planSchema(catalogue, 8)),
      inputs: COMMANDS.map((c) => planInput({ mission: { command: c } }, [])),
    },
  ];
}

interface Timed {
  tokensIn: number;
  tokensOut: number;
  ttftMs: number;
  decodeTps: number;
  prefix?: string;
  outcome: 'ok' | 'truncated' | 'invalid' | 'error';
}

/**
 * Times one request from outside: first streamed text, end, and output tokens from the runtime's
 * counters (a grammar run that ends in a truncated or invalid object still decoded its tokens).
 */
async function timed(
  runtime: ModelRuntime,
  call: (onText: () => void) => Promise<{ tokensIn: number; tokensOut: number; prefix?: string }>,
): Promise<Timed> {
  const before = runtime.getMetrics();
  let first = 0;
  const t0 = performance.now();
  let outcome: Timed['outcome'] = 'ok';
  let prefix: string | undefined;
  try {
    prefix = (await call(() => (first ||= performance.now()))).prefix;
  } catch (err) {
    outcome = isLlmError(err) && (err.code === 'truncated' || err.code === 'invalid') ? err.code : 'error';
    if (outcome === 'error') throw err;
  }
  const end = performance.now();
  const after = runtime.getMetrics();
  const tokensOut = after.tokensOut - before.tokensOut;
  const firstAt = first || end;
  return {
    tokensIn: after.tokensIn - before.tokensIn,
    tokensOut,
    ttftMs: firstAt - t0,
    decodeTps: tokensOut > 1 ? ((tokensOut - 1) * 1000) / (end - firstAt) : NaN,
    prefix,
    outcome,
  };
}

async function benchModel(model: BenchModel, rounds: number, threads: number, maxTokens: number) {
  const registry = new RuntimeRegistry({ modelsDir: path.dirname(model.path), gpu: false });
  // One sequence: the other task's request evicts the prefix, so every "cold" is really cold.
  const runtime = await registry.acquire({ source: model.path, settings: { threads, sequences: 1 } }).ready;
  const all = tasks();
  const ttft = new Map<string, Timed[]>();
  const speed = new Map<string, Timed[]>();
  const push = (m: Map<string, Timed[]>, k: string, v: Timed): void => {
    m.set(k, [...(m.get(k) ?? []), v]);
  };
  const messagesOf = (task: Task, i: number): ChatMessage[] =>
    buildMessages(task.system, task.examples, task.inputs[i % task.inputs.length]);
  let lastKey: string | undefined;
  try {
    // Warm-up: page the weights in and build the grammars once.
    for (const task of all)
      await timed(runtime, (onText) =>
        runtime.generateJson(messagesOf(task, 0), task.schema, { maxTokens: 8, onText }),
      );

    for (let r = 0; r < rounds; r++) {
      for (const task of rotated(all, r)) {
        // Cold then warm: same instruction and examples, a different command.
        const a = messagesOf(task, r);
        const b = messagesOf(task, r + 1);
        const affinity = prefixKey(a);
        if (lastKey === affinity) {
          // The sequence still holds this instruction from the speed runs: the other task evicts it.
          const other = all.find((t) => t !== task)!;
          await runtime.chat(messagesOf(other, r), {
            maxTokens: 1,
            affinity: prefixKey(messagesOf(other, r)),
          });
        }
        lastKey = affinity;
        for (const [kind, messages] of [
          ['cold', a],
          ['warm', b],
        ] as const) {
          const t = await timed(runtime, (onText) =>
            runtime.chat(messages, { maxTokens: 4, affinity, onText }),
          );
          if (t.prefix !== kind)
            console.error(`${task.name}: expected a ${kind} prefix, the runtime said ${t.prefix}`);
          push(ttft, `${task.name} ${kind}`, t);
        }
      }
      // Decode speed with and without the grammar, on a warm prefix (same messages, same sequence).
      const variants = all.flatMap((task) => {
        const messages = messagesOf(task, r);
        const affinity = prefixKey(messages);
        return [
          {
            key: `${task.name} plain`,
            affinity,
            run: () => timed(runtime, (onText) => runtime.chat(messages, { maxTokens, affinity, onText })),
          },
          {
            key: `${task.name} grammar`,
            affinity,
            run: () =>
              timed(runtime, (onText) =>
                runtime.generateJson(messages, task.schema, { maxTokens, affinity, onText }),
              ),
          },
        ];
      });
      for (const v of rotated(variants, r)) {
        push(speed, v.key, await v.run());
        lastKey = v.affinity;
      }
    }
  } finally {
    await registry.close();
  }
  return { ttft, speed, names: all.map((t) => t.name) };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const quick = args.has('--quick');
  const rounds = Number(args.get('--rounds') ?? (quick ? 2 : 5));
  const threads = Number(args.get('--threads') ?? defaultThreads());
  const maxTokens = Number(args.get('--max-tokens') ?? 64);
  const models = await benchModels(args);
  const started = Date.now();

  const ttftRows: string[][] = [];
  const speedRows: string[][] = [];
  for (const model of models) {
    console.error(`${model.label} ...`);
    const r = await benchModel(model, rounds, threads, maxTokens);
    for (const name of r.names) {
      const cold = r.ttft.get(`${name} cold`) ?? [];
      const warm = r.ttft.get(`${name} warm`) ?? [];
      ttftRows.push([
        model.label,
        name,
        cell(
          cold.map((t) => t.tokensIn),
          0,
        ),
        cell(cold.map((t) => t.ttftMs)),
        cell(warm.map((t) => t.ttftMs)),
        cell(
          cold.map((c, i) => c.ttftMs / (warm[i]?.ttftMs ?? NaN)),
          1,
        ),
      ]);
      const plain = r.speed.get(`${name} plain`) ?? [];
      const grammar = r.speed.get(`${name} grammar`) ?? [];
      const outcomes = ['ok', 'truncated', 'invalid']
        .map((o) => `${grammar.filter((g) => g.outcome === o).length} ${o}`)
        .join(', ');
      speedRows.push([
        model.label,
        name,
        cell(plain.map((t) => t.decodeTps)),
        cell(grammar.map((t) => t.decodeTps)),
        cell(
          grammar.map((g, i) => g.decodeTps / (plain[i]?.decodeTps ?? NaN)),
          2,
        ),
        cell(
          grammar.map((g) => g.tokensOut),
          0,
        ),
        outcomes,
      ]);
    }
  }

  console.log(`# llm-parse / llm-plan benchmark, ${new Date().toISOString().slice(0, 10)}`);
  console.log();
  console.log(
    `${machine()}; CPU backend; threads ${threads}; a 1-sequence runtime; ${rounds} rounds after one warm-up; cells: median [min–max].`,
  );
  console.log();
  console.log('## Time to first token: instruction already in the sequence (warm) vs read again (cold)');
  console.log();
  console.log(
    "`runtime.chat(messages, {affinity: prefixKey(messages)})` with the node's own system prompt (instruction + schema, + the few-shot example for llm-parse), " +
      'first a command the sequence has not seen after the other task evicted this one (cold), then another command with the same instruction (warm). ' +
      'TTFT from the call to the first streamed text; ratios per round.',
  );
  console.log();
  console.log(
    table(['model', 'task', 'prompt tokens', 'cold TTFT ms', 'warm TTFT ms', 'cold ÷ warm'], ttftRows),
  );
  console.log();
  console.log('## Decode tokens/s with the JSON-schema grammar vs without');
  console.log();
  console.log(
    `\`runtime.generateJson(messages, schema, {maxTokens: ${maxTokens}})\` vs \`runtime.chat(messages, {maxTokens: ${maxTokens}})\` on the same messages and a warm prefix, interleaved. ` +
      'Decode t/s = (tokens − 1) / (time after the first streamed text). Random-weight models write gibberish: the grammar runs often end at max tokens (truncated).',
  );
  console.log();
  console.log(
    table(
      [
        'model',
        'task (schema)',
        'plain t/s',
        'grammar t/s',
        'grammar ÷ plain',
        'grammar tokens',
        'grammar outcomes',
      ],
      speedRows,
    ),
  );
  console.log();
  console.log(`(total bench time ${((Date.now() - started) / 60000).toFixed(1)} min)`);
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
