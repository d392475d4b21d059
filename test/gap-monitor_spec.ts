import * as assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { assertLoopFree, gapMonitor } from './support/gap-monitor';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const schedstat = `/proc/self/task/${process.pid}/schedstat`;

/** ms the main thread has been on a CPU (the process's user + system time where schedstat is missing). */
function threadCpuMs(): number {
  if (existsSync(schedstat)) return Number(readFileSync(schedstat, 'utf8').split(' ')[0]) / 1e6;
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Holds the event loop until the main thread has run `ms` of CPU, however long the OS makes that take. */
function spin(ms: number): void {
  const start = threadCpuMs();
  const wallStart = performance.now();
  let x = 0;
  while (threadCpuMs() - start < ms && performance.now() - wallStart < 20_000) x += Math.sqrt(x + 1);
  if (x < 0) throw new Error('unreachable');
}

describe('gap monitor (test support)', function () {
  this.timeout(60_000);

  it('reads the main thread’s scheduler counters here', function () {
    if (!existsSync(schedstat)) this.skip(); // elsewhere it falls back to wall clock, tested below
    const monitor = gapMonitor();
    const r = monitor.report();
    assert.equal(r.source, 'schedstat');
    assert.equal(typeof r.cpuMs, 'number');
  });

  it('fails the 50 ms assertion on a 100 ms busy loop', async () => {
    const monitor = gapMonitor();
    await sleep(40);
    spin(100);
    await sleep(40); // the block shows at the next tick
    const r = monitor.report();
    assert.ok(r.heldMs >= 80, `a 100 ms block measured as ${r.heldMs} ms held`);
    if (r.source === 'schedstat') assert.ok((r.cpuMs ?? 0) >= 80, `CPU in one gap ${r.cpuMs} ms`);
    assert.throws(() => assertLoopFree(r, 50), /the event loop was held for \d+ ms/);
    assert.throws(() => assertLoopFree(r, 50, 'held'), /the event loop was held for \d+ ms/);
  });

  it('fails the held measure on a 100 ms synchronous wait (not on a CPU)', async () => {
    const monitor = gapMonitor();
    await sleep(40);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    await sleep(40);
    const r = monitor.report();
    assert.ok(r.heldMs >= 80, `a 100 ms wait measured as ${r.heldMs} ms held`);
    assert.throws(() => assertLoopFree(r, 50, 'held'));
    // The CPU measure is for code that only computes: a wait is no CPU time.
    if (r.source === 'schedstat') assert.doesNotThrow(() => assertLoopFree(r, 50, 'cpu'));
  });

  it('passes steps of 10 ms of CPU with the loop let run between', async () => {
    const monitor = gapMonitor();
    for (let i = 0; i < 20; i++) {
      spin(10);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await sleep(30);
    const r = monitor.report();
    assertLoopFree(r, 50);
  });

  it('falls back to wall clock and utilization without schedstat, and fails the block there too', async () => {
    const monitor = gapMonitor({ schedstat: false });
    await sleep(40);
    spin(100);
    await sleep(40);
    const r = monitor.report();
    assert.equal(r.source, 'wall-clock');
    assert.equal(r.cpuMs, undefined);
    assert.throws(() => assertLoopFree(r, 50));
    assert.throws(() => assertLoopFree(r, 50, 'held'));
  });
});
