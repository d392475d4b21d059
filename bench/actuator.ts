/**
 * Commands per second through actuator-out's logic, acked by a simulated device over a real MQTT
 * broker (aedes) on loopback TCP. Not a test: prints a table.
 *
 *   npm run build && node dist/bench/actuator.js [commands]
 */
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Actuator, BrokerConnection, ReplayStore, type Command } from '../lib/device/actuator';
import { Outbox } from '../lib/device/outbox';
import { signAction } from '../lib/device/signing';
import { TestBroker } from '../test/support/broker';
import { SimulatedDevice } from '../test/support/device';

const KEY = 'bench-key';
const COUNT = Number(process.argv[2] ?? 300);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function run(mode: 'one at a time' | 'all queued at once') {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'actuator-bench-'));
  const broker = await TestBroker.start();
  const device = await SimulatedDevice.connect({ url: broker.url, topic: 'bench/cmd/#' });
  const link = new BrokerConnection({ url: broker.url, protocolVersion: 4 });
  link.register('bench');
  if (!link.ready) await once(link, 'ready');
  const outbox = await Outbox.open<Command>({ dir, capacity: COUNT });
  const replay = await ReplayStore.open({ dir });
  const actuator = new Actuator({
    link,
    outbox,
    replyTopic: 'bench/ack',
    ackTimeoutMs: 5000,
    retries: 2,
    deadlineMs: 120_000,
  });
  await actuator.start();
  const latencies: number[] = [];
  let settled = 0;
  const done = new Promise<void>((resolve) => {
    const count = () => {
      if (++settled === COUNT) resolve();
    };
    actuator.on('acked', (_c, info) => {
      latencies.push(info.latencyMs);
      count();
    });
    actuator.on('failed', (_c, failure) => {
      console.error(failure);
      count();
    });
  });
  const signed = Array.from({ length: COUNT }, (_, i) =>
    signAction({ action: 'set', params: { i }, device: 'd1' }, { key: KEY, policyHash: 'p', ttlMs: 600_000 }),
  );
  const submit = (s: unknown) =>
    actuator.submit(s, { key: KEY, replay, topicTemplate: 'bench/cmd/{{device}}' });

  const started = process.hrtime.bigint();
  if (mode === 'one at a time') {
    for (const s of signed) {
      const acked = once(actuator, 'acked');
      await submit(s);
      await acked;
    }
  } else {
    await Promise.all(signed.map(submit));
  }
  await done;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  await actuator.stop();
  await link.deregister('bench');
  await outbox.close();
  await replay.close();
  await device.close();
  await broker.stop();
  await fs.rm(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    mode,
    commands: COUNT,
    'commands/s': Math.round(COUNT / seconds),
    'send→ack p50 ms': percentile(latencies, 50),
    'send→ack p95 ms': percentile(latencies, 95),
    'executed once': device.executions.length === COUNT,
  };
}

async function fsyncRate(): Promise<number> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'outbox-bench-'));
  const outbox = await Outbox.open<{ i: number }>({ dir, capacity: 1000 });
  const n = 200;
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await outbox.append({ i });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await outbox.close();
  await fs.rm(dir, { recursive: true, force: true });
  return Math.round(n / seconds);
}

async function main() {
  const rows = [await run('one at a time'), await run('all queued at once')];
  console.log(
    `actuator-out over loopback MQTT (aedes, MQTT 3.1.1), ${os.cpus().length} cores, node ${process.version}`,
  );
  console.table(rows);
  console.log(`outbox appends alone (each fsync'd): ${await fsyncRate()}/s`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
