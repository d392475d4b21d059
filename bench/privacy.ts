/**
 * privacy-guard throughput: MB/s of mixed text through PrivacyGuard.protect(), per person-name
 * detector, and the cost of one message through the node in a running flow.
 * Run: npm run build && node dist/bench/privacy.js [--mb=1] [--messages=500]
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Node, NodeMessage } from 'node-red';
import { PrivacyGuard, Pseudonymizer, type GuardConfig } from '../lib/privacy';
import type { LabelledSet } from '../lib/privacy/evaluate';

const arg = (name: string, fallback: number): number =>
  Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);

const set = JSON.parse(
  readFileSync(join(__dirname, '..', '..', 'test', 'fixtures', 'privacy-labelled.json'), 'utf8'),
) as LabelledSet & { options: GuardConfig };

// Gateway traffic is mostly machine text with some people and contact data: one labelled sample
// (dense with entities) to every four lines of telemetry and log text.
const FILLER = [
  'Line 3 pump P-104 running at 1480 rpm, discharge pressure 4.2 bar, temperature 61.5 C.',
  'Batch B-2024-117 finished: 12,480 bottles, 37 rejects, OEE 84.2%, shift A.',
  'Valve V-12 opened at 14:32:05 after interlock check passed; flow 12.5 m3/h.',
  'Compressor C2 vibration 4.1 mm/s RMS within limits; next service in 230 hours.',
];

function mixedText(bytes: number): string {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = i % 5 === 4 ? set.samples[((i / 5) % set.samples.length) | 0].text : FILLER[i % 5];
    parts.push(line);
    size += Buffer.byteLength(line) + 1;
  }
  return parts.join('\n');
}

function throughput(
  text: string,
  person: GuardConfig['person'],
): { mbps: number; ms: number; found: number } {
  const guard = new PrivacyGuard({ ...set.options, person, limits: { maxChars: text.length + 1 } });
  guard.protect(text.slice(0, 20_000)); // warm up the regexes and compromise's lexicon
  const started = process.hrtime.bigint();
  const r = guard.protect(text, new Pseudonymizer());
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  return { mbps: Buffer.byteLength(text) / 1e6 / (ms / 1000), ms, found: r.total };
}

interface TestHelper {
  init(runtimePath: string): void;
  startServer(): Promise<void>;
  stopServer(): Promise<void>;
  load(nodes: unknown[], flow: object[]): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): Node;
}

/** Mean time from receive() to the message leaving the node, over `count` messages sent one by one. */
async function perMessage(count: number, config: Record<string, unknown>, payload: unknown): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const helper = require('node-red-node-test-helper') as TestHelper;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const node = require('../nodes/privacy-guard');
  helper.init(require.resolve('node-red'));
  await helper.startServer();
  try {
    await helper.load(
      [node],
      [
        { id: 'tab', type: 'tab' },
        {
          id: 'pg',
          type: 'privacy-guard',
          z: 'tab',
          x: 0,
          y: 0,
          fields: 'payload',
          wires: [['out'], ['out']],
          ...config,
        },
        { id: 'out', type: 'helper', z: 'tab', x: 0, y: 0 },
      ],
    );
    const pg = helper.getNode('pg');
    const out = helper.getNode('out');
    const run = async (n: number): Promise<number> => {
      const started = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        const arrived = once(out, 'input');
        pg.receive({ payload: structuredClone(payload) } as NodeMessage);
        await arrived;
      }
      return Number(process.hrtime.bigint() - started) / 1e6 / n;
    };
    await run(Math.min(50, count));
    return await run(count);
  } finally {
    await helper.unload();
    await helper.stopServer();
  }
}

async function main(): Promise<void> {
  const text = mixedText(arg('mb', 1) * 1e6);
  console.log(
    `\nMixed text, ${(Buffer.byteLength(text) / 1e6).toFixed(2)} MB, one protect() call (pseudonyms)\n`,
  );
  console.log('person detector   MB/s    ms  entities');
  console.log('---------------  -----  ----  --------');
  for (const person of ['compromise', 'rules', 'off'] as const) {
    const r = throughput(text, person);
    console.log(
      `${person.padEnd(15)}  ${r.mbps.toFixed(2).padStart(5)}  ${r.ms.toFixed(0).padStart(4)}  ${String(r.found).padStart(8)}`,
    );
  }

  const messages = arg('messages', 500);
  const chat = {
    text: 'Operator Lisa Meyer (lisa.meyer@example.com, +44 20 7946 0958) reports pump P-104 at 10.0.0.7 vibrating; last fix 48.8584, 2.2945.',
    meta: { site: 'plant-7', line: 3, ts: '2024-06-02T10:15:00Z' },
  };
  const telemetry = { device: 'P-104', rpm: 1480, pressure: 4.2, temperature: 61.5, status: 'running' };
  console.log(`\nCost per message through the node in a flow (${messages} messages, one at a time)\n`);
  console.log('payload                         person detector  ms/msg   msg/s');
  console.log('------------------------------  ---------------  ------  ------');
  for (const [label, payload] of [
    ['chat turn, 5 entities (170 B)', chat],
    ['telemetry, no entities (90 B)', telemetry],
  ] as const) {
    for (const person of ['compromise', 'rules']) {
      const ms = await perMessage(messages, { person, audit: 'off' }, payload);
      console.log(
        `${label.padEnd(30)}  ${person.padEnd(15)}  ${ms.toFixed(3).padStart(6)}  ${(1000 / ms).toFixed(0).padStart(6)}`,
      );
    }
  }
  const audited = await perMessage(messages, { person: 'rules', audit: 'log', auditLevel: 'trace' }, chat);
  console.log(
    `${'chat turn + audit record'.padEnd(30)}  ${'rules'.padEnd(15)}  ${audited.toFixed(3).padStart(6)}  ${(1000 / audited).toFixed(0).padStart(6)}`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
