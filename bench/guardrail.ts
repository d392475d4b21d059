/**
 * Guardrail decisions per second and latency percentiles, for single actions and 20-step plans,
 * without the audit log and with it (real files: the hash chain, group commit with one fdatasync
 * per batch, the limits journal synced in the same batch, the head file). Audited latency runs from
 * the decision to its line being durable, which is when the node may send its message. Prints a
 * table beside the figures measured on main before policy v2 (same machine, same command). Not a
 * test.
 *
 *   npm run build && node dist/bench/guardrail.js [decisions]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { AuditLog, decisionRecord } from '../lib/guardrail/audit';
import { Guardrail, type LiveReader } from '../lib/guardrail/evaluate';
import { readPath } from '../lib/guardrail/paths';
import { type Policy, compilePolicy } from '../lib/guardrail/policy';
import { LimitState } from '../lib/guardrail/state';

const KEY = 'bench-key';
const COUNT = Number(process.argv[2] ?? 20000);

/**
 * Main at 613c400 (policy v1, an audit line written and its head renamed per decision), this
 * machine (2 vCPU Intel Xeon, shared), node 20, 20,000 decisions per row: the better of two runs.
 */
const BEFORE: Record<string, { rate: string; p99: string }> = {
  'single action, rejected/off': { rate: '290k-452k', p99: '0.005' },
  'single action, approved and signed/off': { rate: '34k-45k', p99: '0.047' },
  '20-step plan, approved/off': { rate: '1.8k-1.9k', p99: '2.6' },
  'single action, rejected/file': { rate: '5.5k-5.6k', p99: '0.36' },
  'single action, approved and signed/file': { rate: '3.4k-3.7k', p99: '0.57' },
  '20-step plan, approved/file': { rate: '820-870', p99: '3.1' },
};

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
const live: LiveReader = (_source, segments) => readPath(msg, segments);

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

function guardFor(state?: LimitState): Guardrail {
  const compiled = compilePolicy(POLICY);
  if (!compiled.ok) throw new Error(compiled.errors.join('\n'));
  return new Guardrail(compiled.policy, { key: KEY, state });
}

function row(name: string, audit: string, count: number, seconds: number, actions: number, lat: number[]) {
  lat.sort((a, b) => a - b);
  const before = BEFORE[`${name}/${audit.split(',')[0]}`];
  return {
    scenario: name,
    audit,
    'decisions/s': Math.round(count / seconds),
    'signed actions/s': Math.round(actions / seconds),
    'p50 ms': percentile(lat, 50).toFixed(3),
    'p99 ms': percentile(lat, 99).toFixed(3),
    'before: decisions/s': before?.rate ?? '-',
    'before: p99 ms': before?.p99 ?? '-',
  };
}

function runOff(name: string, payload: unknown) {
  const guard = guardFor();
  for (let i = 0; i < 2000; i++) guard.decide(payload, live); // warm up the JIT
  const latencies: number[] = new Array(COUNT);
  let actions = 0;
  const start = performance.now();
  for (let i = 0; i < COUNT; i++) {
    const t0 = performance.now();
    const d = guard.decide(payload, live);
    latencies[i] = performance.now() - t0;
    actions += d.signed.length;
  }
  return {
    ...row(name, 'off', COUNT, (performance.now() - start) / 1000, actions, latencies),
    offered: 'max',
  };
}

/**
 * Messages arrive as they would in Node-RED, at a steady `rate` per second: each turn of the event
 * loop decides those that are due, and each is done when its audit line is durable (when the node
 * sends it). Latency runs from a decision's arrival to that moment, so waiting for the disk, and
 * for a busy event loop, counts.
 */
async function runAudited(name: string, payload: unknown, dir: string, rate: number) {
  const base = path.join(dir, name.replace(/\W+/g, '-'));
  const state = LimitState.open(`${base}.state.jsonl`);
  const guard = guardFor(state);
  const audit = AuditLog.open(`${base}.jsonl`, { signingKey: KEY });
  audit.attach(state);
  for (let i = 0; i < 500; i++) guard.decide(payload, live);
  const latencies: number[] = [];
  let actions = 0;
  let submitted = 0;
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    const turn = () => {
      const due = Math.min(COUNT, Math.floor(((performance.now() - start) / 1000) * rate));
      for (; submitted < due; submitted++) {
        const arrived = start + (submitted / rate) * 1000;
        const d = guard.decide(payload, live);
        actions += d.signed.length;
        audit.append(decisionRecord('request', d, { node: 'bench' })).durable.then(() => {
          latencies.push(performance.now() - arrived);
          if (latencies.length === COUNT) resolve();
        }, reject);
      }
      if (submitted < COUNT) setImmediate(turn);
    };
    turn();
  });
  const seconds = (performance.now() - start) / 1000;
  await audit.close();
  await state.close();
  return { ...row(name, `file, offered ${rate}/s`, COUNT, seconds, actions, latencies), audit: 'file' };
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardrail-bench-'));
  try {
    const rows = [];
    for (const [name, payload] of SCENARIOS) rows.push(runOff(name, payload));
    for (const [name, payload] of SCENARIOS) {
      // Single actions at 20,000 offered per second (the approved ones at 10,000 too, to show the
      // latency below saturation); a 20-step plan at 1,000 plans (20,000 actions) per second.
      const rates = name.startsWith('20-step') ? [1000] : name.includes('signed') ? [10000, 20000] : [20000];
      for (const rate of rates)
        rows.push({ ...(await runAudited(name, payload, dir, rate)), offered: `${rate}/s` });
    }
    console.log(
      `guardrail: ${COUNT} decisions per row, node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? ''}`,
    );
    console.table(rows);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
