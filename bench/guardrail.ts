/**
 * Guardrail decisions per second and latency percentiles, for single actions and 20-step plans,
 * without the audit log and with it (real files: the hash chain, group commit with one fdatasync
 * per batch, the limits journal synced in the same batch, the head file). Audited latency runs from
 * a decision's arrival to its line being durable, which is when the node may send its message.
 *
 * With `--baseline DIR` (DIR: another build's dist/, e.g. main's), every row runs for both builds
 * in the same process, interleaved, and the table shows them side by side with their ratio. The
 * disk's own fdatasync (one short line appended and synced, in the same folder) is timed before
 * and after the audited rows, so the audited latencies can be read against it, and ways to make a
 * batch durable (write + fdatasync, writev, O_DSYNC, the log's batch with its journal and head) are
 * timed after them. Every row also gives decisions per second of the process's own CPU time (all
 * its threads; with the log, what a core of its own could keep up with): on a machine shared with
 * other jobs, wall-clock rates say more about the neighbours than about the code. Not a test.
 *
 *   npm run build && node dist/bench/guardrail.js [decisions] [--baseline ../main/dist] [--rounds N]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import * as audit from '../lib/guardrail/audit';
import * as evaluate from '../lib/guardrail/evaluate';
import * as paths from '../lib/guardrail/paths';
import * as policy from '../lib/guardrail/policy';
import * as state from '../lib/guardrail/state';
import type { LiveReader } from '../lib/guardrail/evaluate';
import type { Policy } from '../lib/guardrail/policy';

const KEY = 'bench-key';
const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args.splice(i, 2)[1] : undefined;
};
const BASELINE = flag('--baseline');
const ROUNDS = Number(flag('--rounds') ?? 3);
const COUNT = Number(args[0] ?? 20000);
/** Decisions in a row: COUNT single actions, or COUNT / 20 plans (COUNT actions). */
const countFor = (payload: unknown): number =>
  typeof payload === 'object' && payload !== null && 'steps' in payload ? Math.ceil(COUNT / 20) : COUNT;

/** One build of the guardrail: this one, or the baseline's dist/ loaded from its folder. */
interface Impl {
  name: string;
  Guardrail: typeof evaluate.Guardrail;
  compilePolicy: typeof policy.compilePolicy;
  readPath: typeof paths.readPath;
  AuditLog: typeof audit.AuditLog;
  decisionRecord: typeof audit.decisionRecord;
  LimitState: typeof state.LimitState;
}

function load(name: string, dir: string): Impl {
  // Another build, found by its folder at run time: plain require is the way to load it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const req = (m: string) => require(path.resolve(dir, 'lib/guardrail', m)) as Record<string, unknown>;
  return {
    name,
    ...req('evaluate'),
    ...req('policy'),
    ...req('paths'),
    ...req('audit'),
    ...req('state'),
  } as Impl;
}

const THIS: Impl = { name: 'this', ...evaluate, ...policy, ...paths, ...audit, ...state };
const IMPLS: Impl[] = BASELINE ? [load('baseline', BASELINE), THIS] : [THIS];

const POLICY: Policy = {
  actions: {
    set_torque: {
      params: { torque: { type: 'number', min: 0, max: 10, unit: 'Nm', required: true } },
      devices: ['arm-1', 'arm-2'],
      rateOfChange: [{ param: 'torque', maxPerSecond: 1000 }],
      rateLimits: [{ per: 'device', capacity: 1e6, refillPerSecond: 1e6 }],
    },
    wipe_memory: { params: {}, classes: ['destructive'] },
    move_to: {
      params: {
        zone: { type: 'string', enum: ['A', 'B', 'C'], required: true },
        distance: { type: 'number', min: 0, unit: 'm', required: true },
      },
      costs: { travel: { param: 'distance' } },
    },
  },
  interlocks: [
    {
      id: 'zone-too-hot',
      when: { action: 'move_to' },
      require: { source: 'msg', path: 'sensors.{params.zone}.temperature', op: '<=', value: 80 },
    },
  ],
  approval: { classes: ['destructive'] },
  plan: { maxSteps: 20, budgets: { travel: { max: 1e9, unit: 'm' } } },
};

const msg = { sensors: { A: { temperature: 40 }, B: { temperature: 50 }, C: { temperature: 60 } } };

const SCENARIOS: Array<[string, unknown]> = [
  ['single action, rejected', { action: 'set_torque', params: { torque: 50 }, device: 'arm-1' }],
  ['single action, needs approval', { action: 'wipe_memory', params: {} }],
  ['single action, approved and signed', { action: 'set_torque', params: { torque: 5 }, device: 'arm-1' }],
  [
    '20-step plan, approved',
    {
      steps: Array.from({ length: 20 }, (_, i) =>
        i % 2
          ? { id: `s${i}`, action: 'set_torque', params: { torque: 5 }, device: 'arm-2', reason: 'hold' }
          : {
              id: `s${i}`,
              action: 'move_to',
              params: { zone: 'ABC'[i % 3], distance: 1.5 },
              reason: 'inspect',
            },
      ),
    },
  ],
];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function liveFor(impl: Impl): LiveReader {
  return (_source, segments) => impl.readPath(msg, segments);
}

function guardFor(impl: Impl, limitState?: state.LimitState): evaluate.Guardrail {
  const compiled = impl.compilePolicy(POLICY);
  if (!compiled.ok) throw new Error(compiled.errors.join('\n'));
  return new impl.Guardrail(compiled.policy, { key: KEY, state: limitState });
}

interface Run {
  rate: number;
  /** Decisions per second of this process's own CPU time (user + system): what a busy machine's other jobs leave out. */
  cpuRate?: number;
  actionsRate: number;
  p50: number;
  p99: number;
}

function summarize(count: number, seconds: number, actions: number, lat: number[]): Run {
  lat.sort((a, b) => a - b);
  return {
    rate: count / seconds,
    actionsRate: actions / seconds,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
  };
}

function runOff(impl: Impl, payload: unknown): Run {
  const count = countFor(payload);
  const guard = guardFor(impl);
  const live = liveFor(impl);
  // Warm up the JIT with as many decisions as a row (at least 2,000): after 2,000 single actions the
  // first round was still the compiler's (a probe: 88k signed per CPU-second, then 168k-190k).
  for (let i = 0; i < Math.max(2000, count); i++) guard.decide(payload, live);
  const latencies: number[] = new Array(count);
  let actions = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const d = guard.decide(payload, live);
    latencies[i] = performance.now() - t0;
    actions += d.signed.length;
  }
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    ...summarize(count, seconds, actions, latencies),
    cpuRate: count / ((cpu.user + cpu.system) / 1e6),
  };
}

/**
 * Messages arrive as they would in Node-RED, at a steady `rate` per second: each turn of the event
 * loop decides those that are due, and each is done when its audit line is durable (when the node
 * sends it). Latency runs from a decision's arrival to that moment, so waiting for the disk, and
 * for a busy event loop, counts.
 */
async function runAudited(
  impl: Impl,
  name: string,
  payload: unknown,
  dir: string,
  rate: number,
): Promise<Run> {
  const base = path.join(dir, `${impl.name}-${name.replace(/\W+/g, '-')}-${rate}`);
  const limitState = impl.LimitState.open(`${base}.state.jsonl`);
  const guard = guardFor(impl, limitState);
  const live = liveFor(impl);
  const log = impl.AuditLog.open(`${base}.jsonl`, { signingKey: KEY });
  log.attach(limitState);
  for (let i = 0; i < 500; i++) guard.decide(payload, live);
  const count = countFor(payload);
  const latencies: number[] = [];
  let actions = 0;
  let submitted = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    const turn = () => {
      const due = Math.min(count, Math.floor(((performance.now() - start) / 1000) * rate));
      for (; submitted < due; submitted++) {
        const arrived = start + (submitted / rate) * 1000;
        const d = guard.decide(payload, live);
        actions += d.signed.length;
        log.append(impl.decisionRecord('request', d, { node: 'bench' })).durable.then(() => {
          latencies.push(performance.now() - arrived);
          if (latencies.length === count) resolve();
        }, reject);
      }
      if (submitted < count) setImmediate(turn);
    };
    turn();
  });
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await log.close();
  await limitState.close();
  return {
    ...summarize(count, seconds, actions, latencies),
    cpuRate: count / ((cpu.user + cpu.system) / 1e6),
  };
}

const fsAsync = {
  write: promisify(fs.write) as (fd: number, data: string) => Promise<unknown>,
  fdatasync: promisify(fs.fdatasync),
};

interface Probe {
  name: string;
  p50: number;
  p99: number;
}

/**
 * Ways to make a batch of audit lines durable, each timed `n` times in `dir` with `lines` lines of
 * 600 bytes: what the log does (one write of the joined lines, then fdatasync; the limits journal
 * written and synced beside it, the head file replaced meanwhile), and the alternatives: the lines
 * as a writev of buffers, a file opened O_DSYNC (each write returns once durable), and the two
 * files synced one after the other instead of together.
 */
async function durablePaths(dir: string, lines: number, n = 200): Promise<Probe[]> {
  const line = `${'y'.repeat(599)}\n`;
  const text = line.repeat(lines);
  const buffers = Array.from({ length: lines }, () => Buffer.from(line));
  const state = `${'s'.repeat(99)}\n`;
  const probes: Array<[string, (fd: number, fd2: number, dsync: number) => Promise<void>]> = [
    [
      'write + fdatasync',
      async (fd) => {
        await fsAsync.write(fd, text);
        await fsAsync.fdatasync(fd);
      },
    ],
    [
      'writev + fdatasync',
      async (fd) => {
        await new Promise<void>((ok, fail) => fs.writev(fd, buffers, (err) => (err ? fail(err) : ok())));
        await fsAsync.fdatasync(fd);
      },
    ],
    ['O_DSYNC write', async (_fd, _fd2, dsync) => void (await fsAsync.write(dsync, text))],
    [
      'a batch: log + journal synced together, head replaced',
      async (fd, fd2) => {
        const head = `${dir}/probe.head`;
        await Promise.all([
          fsAsync
            .write(fd, text)
            .then(() =>
              Promise.all([
                fsAsync.fdatasync(fd),
                fs.promises
                  .writeFile(`${head}.tmp`, 'h\n')
                  .then(() => fs.promises.rename(`${head}.tmp`, head)),
              ]),
            ),
          fsAsync.write(fd2, state).then(() => fsAsync.fdatasync(fd2)),
        ]);
      },
    ],
    [
      'log, then journal, each write + fdatasync',
      async (fd, fd2) => {
        await fsAsync.write(fd, text);
        await fsAsync.fdatasync(fd);
        await fsAsync.write(fd2, state);
        await fsAsync.fdatasync(fd2);
      },
    ],
  ];
  const out: Probe[] = [];
  for (const [name, run] of probes) {
    const fd = fs.openSync(path.join(dir, 'probe-log'), 'a');
    const fd2 = fs.openSync(path.join(dir, 'probe-journal'), 'a');
    const dsync = fs.openSync(
      path.join(dir, 'probe-dsync'),
      fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_DSYNC,
    );
    const lat: number[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await run(fd, fd2, dsync);
        lat.push(performance.now() - t0);
      }
    } finally {
      for (const f of [fd, fd2, dsync]) fs.closeSync(f);
      for (const f of ['probe-log', 'probe-journal', 'probe-dsync', 'probe.head'])
        fs.rmSync(path.join(dir, f), { force: true });
    }
    lat.sort((a, b) => a - b);
    out.push({ name, p50: percentile(lat, 50), p99: percentile(lat, 99) });
  }
  return out;
}

/**
 * Where an audited decision's wait goes, for this build at `rate` per second: its wait for the event
 * loop (on a loaded machine, for its share of the CPU), for the batch in flight when it was appended,
 * then its own batch (from the write of its lines to their being
 * durable), and in that batch the audit log's fdatasync, the limits journal's, and what came after
 * both (the head file replaced, the promises). The log's and the journal's fs.write and
 * fs.fdatasync are timed by wrapping them for this row only.
 */
async function batchBreakdown(dir: string, rate: number, count: number): Promise<Record<string, string>[]> {
  // The module object itself, which audit.ts and state.ts read their fs functions from.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const realFs = require('node:fs') as typeof fs;
  const names = new Map<number, string>();
  const events: Array<{ kind: 'write' | 'sync'; file: string; t0: number; t1: number }> = [];
  const { openSync, write, fdatasync } = realFs;
  type Cb = (...r: unknown[]) => void;
  const patched = realFs as unknown as Record<string, unknown>;
  patched.openSync = (p: fs.PathLike, ...rest: unknown[]) => {
    const fd = (openSync as (...a: unknown[]) => number)(p, ...rest);
    names.set(fd, path.basename(String(p)));
    return fd;
  };
  patched.write = (fd: number, ...rest: unknown[]) => {
    const cb = rest.pop() as Cb;
    const t0 = performance.now();
    (write as (...a: unknown[]) => void)(fd, ...rest, (...r: unknown[]) => {
      events.push({ kind: 'write', file: names.get(fd) ?? '', t0, t1: performance.now() });
      cb(...r);
    });
  };
  patched.fdatasync = (fd: number, cb: Cb) => {
    const t0 = performance.now();
    fdatasync(fd, (...r: unknown[]) => {
      events.push({ kind: 'sync', file: names.get(fd) ?? '', t0, t1: performance.now() });
      cb(...r);
    });
  };
  const decisions: Array<{ arrived: number; appended: number; durable?: number }> = [];
  try {
    const limitState = THIS.LimitState.open(path.join(dir, 'breakdown.state.jsonl'));
    const guard = guardFor(THIS, limitState);
    const live = liveFor(THIS);
    const log = THIS.AuditLog.open(path.join(dir, 'breakdown.audit.jsonl'), { signingKey: KEY });
    log.attach(limitState);
    const payload = SCENARIOS[2][1];
    let submitted = 0;
    let done = 0;
    const start = performance.now();
    await new Promise<void>((resolve, reject) => {
      const turn = () => {
        const due = Math.min(count, Math.floor(((performance.now() - start) / 1000) * rate));
        for (; submitted < due; submitted++) {
          const d: (typeof decisions)[number] = {
            arrived: start + (submitted / rate) * 1000,
            appended: performance.now(),
          };
          decisions.push(d);
          log
            .append(THIS.decisionRecord('request', guard.decide(payload, live), { node: 'bench' }))
            .durable.then(() => {
              d.durable = performance.now();
              if (++done === count) resolve();
            }, reject);
        }
        if (submitted < count) setImmediate(turn);
      };
      turn();
    });
    await log.close();
    await limitState.close();
  } finally {
    Object.assign(patched, { openSync, write, fdatasync });
  }
  const of = (kind: 'write' | 'sync', file: string) =>
    events.filter((e) => e.kind === kind && e.file === file).sort((a, b) => a.t0 - b.t0);
  const writes = of('write', 'breakdown.audit.jsonl');
  const syncs = of('sync', 'breakdown.audit.jsonl');
  const journal = of('sync', 'breakdown.state.jsonl');
  const parts: Record<string, number[]> = {
    'arrival -> durable (the latency above)': [],
    '  arrival -> appended (the event loop, its share of the CPU)': [],
    '  appended -> its batch begins (the batch in flight)': [],
    '  its own batch: write -> durable': [],
    "    the batch's audit log fdatasync": [],
    "    the batch's limits journal fdatasync": [],
    '    after both syncs (head file, promises)': [],
  };
  const list = Object.values(parts);
  for (const d of decisions) {
    // Its batch: the first write of the log that began after it was appended.
    const w = writes.find((e) => e.t0 >= d.appended);
    if (!w || d.durable === undefined) continue;
    const sync = syncs.find((e) => e.t0 >= w.t1 - 0.001);
    const jsync = journal.find((e) => e.t0 >= w.t0 - 0.001);
    list[0].push(d.durable - d.arrived);
    list[1].push(d.appended - d.arrived);
    list[2].push(w.t0 - d.appended);
    list[3].push(d.durable - w.t0);
    if (sync) list[4].push(sync.t1 - sync.t0);
    if (jsync) list[5].push(jsync.t1 - jsync.t0);
    if (sync) list[6].push(d.durable - Math.max(sync.t1, jsync?.t1 ?? 0));
  }
  const stat = (xs: number[]) => {
    xs.sort((a, b) => a - b);
    return {
      'p50 ms': ms(percentile(xs, 50)),
      'p90 ms': ms(percentile(xs, 90)),
      'p99 ms': ms(percentile(xs, 99)),
    };
  };
  return [
    ...Object.entries(parts).map(([part, xs]) => ({ part, ...stat(xs) })),
    {
      part: `(${writes.length} batches; every audit fdatasync of the row:)`,
      ...stat(syncs.map((e) => e.t1 - e.t0)),
    },
  ];
}

/** The disk's own latency: one short line appended and fdatasynced, `n` times, in `dir`. */
function fdatasyncLatency(dir: string, n = 400): { p50: number; p99: number; max: number } {
  const file = path.join(dir, 'fdatasync-probe');
  const fd = fs.openSync(file, 'a');
  const lat: number[] = [];
  try {
    const line = `${'x'.repeat(200)}\n`;
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      fs.writeSync(fd, line);
      fs.fdatasyncSync(fd);
      lat.push(performance.now() - t0);
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
  lat.sort((a, b) => a - b);
  return { p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat[lat.length - 1] };
}

const k = (n: number) => (n >= 10000 ? `${Math.round(n / 1000)}k` : String(Math.round(n)));
const ms = (n: number) => n.toFixed(n < 1 ? 3 : 1);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const range = (xs: number[]) => `${k(Math.min(...xs))}-${k(Math.max(...xs))}`;

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardrail-bench-'));
  try {
    console.log(
      `guardrail: ${COUNT} single actions or ${Math.ceil(COUNT / 20)} plans per row, ${ROUNDS} rounds without the log, node ${process.version}, ` +
        `${os.cpus().length} x ${os.cpus()[0]?.model ?? ''}, load average ${os
          .loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')}` +
        (BASELINE ? `, baseline ${BASELINE}` : ''),
    );
    const rows: Array<Record<string, string>> = [];
    for (const [name, payload] of SCENARIOS) {
      // Rounds alternate which build goes first; a row keeps every round's rate and the last p99.
      const runs = new Map<Impl, Run[]>(IMPLS.map((impl) => [impl, []]));
      for (let r = 0; r < ROUNDS; r++) {
        for (const impl of r % 2 ? [...IMPLS].reverse() : IMPLS) runs.get(impl)!.push(runOff(impl, payload));
      }
      const row: Record<string, string> = { scenario: name, audit: 'off' };
      for (const impl of IMPLS) {
        const rs = runs.get(impl)!;
        // A plan's row counts plans, and its signed actions beside them.
        row[`${impl.name} decisions/s`] =
          range(rs.map((x) => x.rate)) +
          (name.includes('plan') ? ` (${range(rs.map((x) => x.actionsRate))} actions)` : '');
      }
      if (IMPLS.length === 2) {
        const [b, t] = IMPLS.map((impl) => runs.get(impl)!);
        row['this ÷ baseline'] = `${median(t.map((x, i) => x.rate / b[i].rate)).toFixed(2)}x`;
      }
      for (const impl of IMPLS) row[`${impl.name} per CPU-s`] = range(runs.get(impl)!.map((x) => x.cpuRate!));
      for (const impl of IMPLS) row[`${impl.name} p50 ms`] = ms(runs.get(impl)!.at(-1)!.p50);
      for (const impl of IMPLS) row[`${impl.name} p99 ms`] = ms(runs.get(impl)!.at(-1)!.p99);
      rows.push(row);
    }
    const before = fdatasyncLatency(dir);
    for (const [name, payload] of SCENARIOS) {
      // Single actions at 20,000 offered per second (the approved ones at 1,000 and 10,000 too, to
      // show the latency below saturation: at 1,000 the disk, not the CPU, sets it); a 20-step plan
      // at 1,000 plans (20,000 actions) per second.
      const rates = name.startsWith('20-step')
        ? [1000]
        : name.includes('signed')
          ? [1000, 10000, 20000]
          : [20000];
      for (const rate of rates) {
        const row: Record<string, string> = { scenario: name, audit: `file, ${rate}/s offered` };
        // Which build goes first alternates from row to row, as the disk's mood changes.
        const rs: Run[] = new Array<Run>(IMPLS.length);
        const order = rows.length % 2 ? [...IMPLS.keys()].reverse() : [...IMPLS.keys()];
        for (const i of order) rs[i] = await runAudited(IMPLS[i], name, payload, dir, rate);
        IMPLS.forEach((impl, i) => (row[`${impl.name} decisions/s`] = k(rs[i].rate)));
        if (IMPLS.length === 2) row['this ÷ baseline'] = `${(rs[1].rate / rs[0].rate).toFixed(2)}x`;
        IMPLS.forEach((impl, i) => (row[`${impl.name} per CPU-s`] = k(rs[i].cpuRate!)));
        IMPLS.forEach((impl, i) => (row[`${impl.name} p50 ms`] = ms(rs[i].p50)));
        IMPLS.forEach((impl, i) => (row[`${impl.name} p99 ms`] = ms(rs[i].p99)));
        rows.push(row);
      }
    }
    const after = fdatasyncLatency(dir);
    const breakdown = await batchBreakdown(dir, 500, 1500);
    const probes = [...(await durablePaths(dir, 1)), ...(await durablePaths(dir, 64))];
    console.log(
      `load average after: ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    );
    console.table(rows);
    console.log(
      `fdatasync of one line on this disk (${dir}), 400 each: before the audited rows p50 ${ms(before.p50)} ms, ` +
        `p99 ${ms(before.p99)} ms, max ${ms(before.max)} ms; after: p50 ${ms(after.p50)} ms, p99 ${ms(after.p99)} ms, max ${ms(after.max)} ms`,
    );
    console.log(
      'Where an audited decision waits: this build, approved and signed, 500/s offered, 1,500 decisions:',
    );
    console.table(breakdown);
    console.log('Ways to make a batch durable, 200 each, after the audited rows (ms):');
    console.table(
      probes.map((p, i) => ({
        lines: i < probes.length / 2 ? 1 : 64,
        way: p.name,
        'p50 ms': ms(p.p50),
        'p99 ms': ms(p.p99),
      })),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
