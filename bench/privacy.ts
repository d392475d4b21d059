/**
 * privacy-guard speed: MB/s of mixed gateway text per core (one thread), per person-name detector;
 * the longest event-loop block while a message just under the 4,000,000-character limit goes through
 * protectAsync / restoreAsync and through the node in a running flow; and the cost of one small
 * message through the node.
 * Blocks are measured with the specs' 10 ms setInterval gap monitor (monitorEventLoopDelay missed
 * multi-second blocks): the longest gap between two ticks less the 10 ms period, the part of it the
 * loop was busy, and the most CPU time the loop thread ran between two ticks (Linux schedstat).
 * Run: npm run build && node dist/bench/privacy.js [--mb=2] [--messages=500] [--compare=DIR [--rounds=10]]
 *      [--speed-only]
 * --compare: protect() of the same text side by side with another build (DIR: its compiled root, the
 * folder that holds lib/privacy/, e.g. another worktree's dist/), alternated in one process.
 */
import { once } from 'node:events';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Node, NodeMessage } from 'node-red';
import { PrivacyGuard, Pseudonymizer, type GuardConfig } from '../lib/privacy';
import { generate } from './privacy-data';
import { gapMonitor, type GapReport } from '../test/support/gap-monitor';

const arg = (name: string, fallback: number): number =>
  Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);

const PERSON_DETECTORS = ['names', 'rules', 'off'] as const;

// Gateway traffic is mostly machine text with some people and contact data: one labelled text
// (dense with entities) to every four lines of telemetry and log text.
const FILLER = [
  'Line 3 pump P-104 running at 1480 rpm, discharge pressure 4.2 bar, temperature 61.5 C.',
  'Batch B-2024-117 finished: 12,480 bottles, 37 rejects, OEE 84.2%, shift A.',
  'Valve V-12 opened at 14:32:05 after interlock check passed; flow 12.5 m3/h.',
  'Compressor C2 vibration 4.1 mm/s RMS within limits; next service in 230 hours.',
];
const labelled = generate().map((s) => s.text ?? JSON.stringify(s.value));

/** The bench text: `chars` characters of mixed gateway text (also privacy-compare's). */
export function mixedText(chars: number): string {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < chars; i++) {
    const line = i % 5 === 4 ? labelled[((i / 5) | 0) % labelled.length] : FILLER[i % 5];
    parts.push(line);
    size += line.length + 1;
  }
  return parts.join('\n').slice(0, chars);
}

/**
 * Longest event-loop block while `work` runs, from the 10 ms gap monitor of the specs: the raw gap,
 * the gap counted as far as the loop was busy in it, and the most CPU time the loop thread ran
 * between two ticks (its scheduler counters; what the OS gave other jobs meanwhile does not count).
 */
async function longestBlock<T>(work: () => Promise<T>): Promise<{ ms: number; gap: GapReport; result: T }> {
  await new Promise((r) => setTimeout(r, 30));
  const monitor = gapMonitor({ quiet: true });
  const started = performance.now();
  const result = await work();
  const ms = performance.now() - started;
  await new Promise((r) => setTimeout(r, 25)); // a block at the very end shows at the next tick
  return { ms, gap: monitor.report(), result };
}

/**
 * MB/s per core: bytes over the CPU time the process spent (user + system), so that other load on
 * the machine does not count; the wall time is shown beside it. Best of five runs (other jobs on a
 * shared machine slow single runs), after one full-size run to warm up.
 */
function throughput(
  text: string,
  person: GuardConfig['person'],
): { mbps: number; cpuMs: number; ms: number; found: number } {
  const guard = new PrivacyGuard({ person, limits: { maxChars: text.length + 1 } });
  guard.protect(text, new Pseudonymizer()); // warm up: regexes compiled, name lists, heap grown
  let best = { mbps: 0, cpuMs: 0, ms: 0, found: 0 };
  for (let i = 0; i < 5; i++) {
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    const r = guard.protect(text, new Pseudonymizer());
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const used = process.cpuUsage(cpu);
    const cpuMs = (used.user + used.system) / 1000;
    const mbps = Buffer.byteLength(text) / 1e6 / (cpuMs / 1000);
    if (mbps > best.mbps) best = { mbps, cpuMs, ms, found: r.total };
  }
  return best;
}

/** protect() calls per build and mode before the side-by-side rounds. */
const WARM_UP = 6;

/**
 * Side by side: protect() of the same text with this build and with another one (`dir`: the root of
 * another checkout's build, holding lib/privacy/), alternated in this process, the order swapped
 * every round; MB/s per CPU-second of each (best, median) and the ratio of each round's pair.
 */
function compare(text: string, dir: string, rounds: number): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const other = require(resolve(dir, 'lib', 'privacy')) as typeof import('../lib/privacy');
  const bytes = Buffer.byteLength(text);
  console.log(`\nSide by side with ${dir}, ${rounds} rounds, MB/s per CPU-second\n`);
  console.log(
    'person detector  before best  median  after best  median  after/before per round: median [min-max]',
  );
  console.log(
    '---------------  -----------  ------  ----------  ------  ---------------------------------------',
  );
  for (const person of PERSON_DETECTORS) {
    const guards = {
      before: new other.PrivacyGuard({ person, limits: { maxChars: text.length + 1 } }),
      after: new PrivacyGuard({ person, limits: { maxChars: text.length + 1 } }),
    };
    const one = (which: 'before' | 'after'): number => {
      const cpu = process.cpuUsage();
      if (which === 'before') guards.before.protect(text, new other.Pseudonymizer());
      else guards.after.protect(text, new Pseudonymizer());
      const used = process.cpuUsage(cpu);
      return bytes / 1e6 / ((used.user + used.system) / 1e6);
    };
    // Both builds warmed up alike (compiled code, caches, the heap grown): with one call for the other
    // build against this build's six in throughput(), a build compared with a copy of itself read up to
    // 1.18x in its own favour.
    for (let i = 0; i < WARM_UP; i++) for (const which of ['before', 'after'] as const) one(which);
    const got = { before: [] as number[], after: [] as number[], ratio: [] as number[] };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
      const pair: Record<string, number> = {};
      for (const which of order) pair[which] = one(which);
      got.before.push(pair.before);
      got.after.push(pair.after);
      got.ratio.push(pair.after / pair.before);
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
    const f = (x: number, w: number): string => x.toFixed(2).padStart(w);
    console.log(
      `${person.padEnd(15)}  ${f(Math.max(...got.before), 11)}  ${f(median(got.before), 6)}  ${f(Math.max(...got.after), 10)}  ${f(median(got.after), 6)}  ${median(got.ratio).toFixed(2)} [${Math.min(...got.ratio).toFixed(2)}-${Math.max(...got.ratio).toFixed(2)}]`,
    );
  }
  console.log(`(${load()})`);
}

interface TestHelper {
  init(runtimePath: string): void;
  startServer(): Promise<void>;
  stopServer(): Promise<void>;
  load(nodes: unknown[], flow: object[]): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): Node;
}

async function withFlow<T>(
  config: Record<string, unknown>,
  use: (pg: Node, out: Node) => Promise<T>,
): Promise<T> {
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
    return await use(helper.getNode('pg'), helper.getNode('out'));
  } finally {
    await helper.unload();
    await helper.stopServer();
  }
}

/** Mean time from receive() to the message leaving the node, over `count` messages sent one by one. */
function perMessage(count: number, config: Record<string, unknown>, payload: unknown): Promise<number> {
  return withFlow(config, async (pg, out) => {
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
  });
}

/** The machine's load (1, 5, 15 minutes): CPU time per MB grows on a shared machine too. */
const load = (): string =>
  `load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')} on ${cpus().length} cores`;

async function main(): Promise<void> {
  console.log(
    `${new Date().toISOString()}, Node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}, ${load()}`,
  );
  const text = mixedText(arg('mb', 2) * 1e6);
  console.log(
    `\nMixed text, ${(Buffer.byteLength(text) / 1e6).toFixed(2)} MB, one protect() call on one core\n`,
  );
  console.log('person detector  MB/s per core  CPU ms  wall ms  entities');
  console.log('---------------  -------------  ------  -------  --------');
  for (const person of PERSON_DETECTORS) {
    const r = throughput(text, person);
    console.log(
      `${person.padEnd(15)}  ${r.mbps.toFixed(2).padStart(13)}  ${r.cpuMs.toFixed(0).padStart(6)}  ${r.ms.toFixed(0).padStart(7)}  ${String(r.found).padStart(8)}`,
    );
  }

  console.log(`(${load()})`);
  const before = process.argv.find((a) => a.startsWith('--compare='))?.split('=')[1];
  if (before) compare(text, before, arg('rounds', 10));
  if (process.argv.includes('--speed-only')) return;
  const big = mixedText(3_999_000);
  console.log(
    `\nOne message of ${(big.length / 1e6).toFixed(2)} M characters: longest event-loop block (10 ms gap monitor)\n`,
  );
  console.log(
    'path                               person detector  total ms  longest gap ms  of it busy ms  most CPU between ticks ms',
  );
  console.log(
    '---------------------------------  ---------------  --------  --------------  -------------  -------------------------',
  );
  const row = (path: string, person: string, r: { ms: number; gap: GapReport }) =>
    console.log(
      `${path.padEnd(33)}  ${person.padEnd(15)}  ${r.ms.toFixed(0).padStart(8)}  ${String(r.gap.gapMs).padStart(14)}  ${String(r.gap.busyMs).padStart(13)}  ${(r.gap.cpuMs === undefined ? '(no schedstat)' : String(r.gap.cpuMs)).padStart(25)}`,
    );
  for (const person of ['names', 'rules'] as const) {
    const guard = new PrivacyGuard({ person });
    await guard.prepare(); // as the node does at deploy
    const pseudonyms = new Pseudonymizer();
    const p = await longestBlock(() => guard.protectAsync(big, pseudonyms));
    row('PrivacyGuard.protectAsync', person, p);
    const r = await longestBlock(() => guard.restoreAsync(p.result.value, pseudonyms.map));
    row('PrivacyGuard.restoreAsync', person, r);
    // Sent as soon as the flow is deployed (the warm-up runs in front of it), then once more.
    const [first, next] = await withFlow({ person, audit: 'log', auditLevel: 'trace' }, async (pg, out) => {
      const one = () =>
        longestBlock(async () => {
          const arrived = once(out, 'input');
          pg.receive({ payload: big } as NodeMessage);
          await arrived;
        });
      return [await one(), await one()];
    });
    row('node, audit on, 1st after deploy', person, first);
    row('node, audit on, next message', person, next);
  }

  console.log(`(${load()})`);
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
    for (const person of ['names', 'rules']) {
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
  console.log(`(${load()})`);
}

if (require.main === module)
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
