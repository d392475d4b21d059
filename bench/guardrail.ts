/**
 * Guardrail decisions per second and latency percentiles, for single actions and 20-step plans, with
 * and without the audit log (real file appends with the hash chain and head file). Not a test:
 * prints a table.
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

const KEY = 'bench-key';
const COUNT = Number(process.argv[2] ?? 5000);

const POLICY: Policy = {
  actions: {
    set_torque: {
      params: { torque: { type: 'number', min: 0, max: 10, unit: 'Nm', required: true } },
      devices: ['arm-1', 'arm-2'],
      rateOfChange: [{ param: 'torque', maxPerSecond: 1000 }],
      rateLimits: [{ per: 'device', capacity: 1e6, refillPerSecond: 1e6 }],
    },
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
  plan: { maxSteps: 20, budgets: { travel: { max: 1e9, unit: 'm' } } },
};

const msg = { sensors: { A: { temperature: 40 }, B: { temperature: 50 }, C: { temperature: 60 } } };
const live: LiveReader = (_source, segments) => readPath(msg, segments);

const single = { action: 'set_torque', params: { torque: 5 }, device: 'arm-1' };
const plan = {
  steps: Array.from({ length: 20 }, (_, i) =>
    i % 2
      ? { id: `s${i}`, action: 'set_torque', params: { torque: 5 }, device: 'arm-2', reason: 'hold' }
      : { id: `s${i}`, action: 'move_to', params: { zone: 'ABC'[i % 3], distance: 1.5 }, reason: 'inspect' },
  ),
};
const rejected = { action: 'set_torque', params: { torque: 50 }, device: 'arm-1' };

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function run(name: string, payload: unknown, audited: boolean, dir: string) {
  const compiled = compilePolicy(POLICY);
  if (!compiled.ok) throw new Error(compiled.errors.join('\n'));
  const guard = new Guardrail(compiled.policy, { key: KEY });
  const audit = audited
    ? AuditLog.open(path.join(dir, `${name.replace(/\W+/g, '-')}.jsonl`), { signingKey: KEY })
    : undefined;
  const latencies: number[] = [];
  let actions = 0;
  // Warm up the JIT before measuring.
  for (let i = 0; i < 200; i++) guard.decide(payload, live);
  const start = performance.now();
  for (let i = 0; i < COUNT; i++) {
    const t0 = performance.now();
    const d = guard.decide(payload, live);
    audit?.append(decisionRecord('request', d, { node: 'bench' }));
    latencies.push(performance.now() - t0);
    actions += d.signed.length;
  }
  const seconds = (performance.now() - start) / 1000;
  audit?.close();
  latencies.sort((a, b) => a - b);
  return {
    scenario: name,
    audit: audited ? 'file' : 'off',
    'decisions/s': Math.round(COUNT / seconds),
    'signed actions/s': Math.round(actions / seconds),
    'p50 ms': percentile(latencies, 50).toFixed(3),
    'p99 ms': percentile(latencies, 99).toFixed(3),
  };
}

function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardrail-bench-'));
  try {
    const rows = [];
    for (const audited of [false, true]) {
      rows.push(run('single action, approved', single, audited, dir));
      rows.push(run('single action, rejected', rejected, audited, dir));
      rows.push(run('20-step plan, approved', plan, audited, dir));
    }
    console.log(
      `guardrail: ${COUNT} decisions per row, node ${process.version}, ${os.cpus()[0]?.model ?? ''}`,
    );
    console.table(rows);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main();
