import * as assert from 'node:assert/strict';
import * as sinon from 'sinon';
import { LlmError, Scheduler, type TaskContext } from '../lib/runtime';

/** A task that runs until the test finishes it, recording its start. */
function gate(log: string[], name: string) {
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const task = async (ctx: TaskContext): Promise<string> => {
    log.push(name);
    await Promise.race([
      done,
      new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))),
    ]);
    return name;
  };
  return { task, finish: () => finish() };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('scheduler', function () {
  const sandbox = sinon.createSandbox();
  afterEach(() => sandbox.restore());

  it('runs up to its slots at once and queues the rest in order', async function () {
    const s = new Scheduler({ slots: 2, queueLimit: 10 });
    const log: string[] = [];
    const gates = ['a', 'b', 'c', 'd'].map((n) => gate(log, n));
    const results = gates.map((g) => s.run(g.task));
    await flush();
    assert.deepEqual(log, ['a', 'b']);
    assert.equal(s.active, 2);
    assert.equal(s.queued, 2);
    gates[0].finish();
    await results[0];
    await flush();
    assert.deepEqual(log, ['a', 'b', 'c']);
    gates.slice(1).forEach((g) => g.finish());
    assert.deepEqual(await Promise.all(results), ['a', 'b', 'c', 'd']);
    assert.equal(s.active, 0);
  });

  it('rejects at once with queue_full when the queue is full', async function () {
    const s = new Scheduler({ slots: 1, queueLimit: 1 });
    const log: string[] = [];
    const a = gate(log, 'a');
    const b = gate(log, 'b');
    const pa = s.run(a.task);
    const pb = s.run(b.task);
    await assert.rejects(s.run(gate(log, 'c').task), (e: LlmError) => e.code === 'queue_full');
    a.finish();
    b.finish();
    await Promise.all([pa, pb]);
  });

  it('fails a queued request whose deadline passes before it can start', async function () {
    const clock = sandbox.useFakeTimers({ now: 1_000 });
    const s = new Scheduler({ slots: 1, queueLimit: 5 });
    const log: string[] = [];
    const a = gate(log, 'a');
    const pa = s.run(a.task);
    const pb = s.run(gate(log, 'b').task, { deadline: Date.now() + 500 });
    const rejected = assert.rejects(
      pb,
      (e: LlmError) => e.code === 'timeout' && /before its deadline/.test(e.message),
    );
    await clock.tickAsync(501);
    await rejected;
    assert.equal(s.queued, 0);
    a.finish();
    await pa;
    assert.deepEqual(log, ['a']);
  });

  it('aborts a running request that passes its deadline, and frees its slot', async function () {
    const clock = sandbox.useFakeTimers({ now: 1_000 });
    const s = new Scheduler({ slots: 1, queueLimit: 5 });
    const log: string[] = [];
    const pa = s.run(gate(log, 'a').task, { deadline: Date.now() + 200 });
    const rejected = assert.rejects(
      pa,
      (e: LlmError) => e.code === 'timeout' && /ran past its deadline/.test(e.message),
    );
    await clock.tickAsync(201);
    await rejected;
    assert.equal(s.active, 0);
  });

  it('cancels a queued request by AbortSignal without running it', async function () {
    const s = new Scheduler({ slots: 1, queueLimit: 5 });
    const log: string[] = [];
    const a = gate(log, 'a');
    const pa = s.run(a.task);
    const controller = new AbortController();
    const pb = s.run(gate(log, 'b').task, { signal: controller.signal });
    controller.abort();
    await assert.rejects(pb, (e: LlmError) => e.code === 'cancelled');
    a.finish();
    await pa;
    assert.deepEqual(log, ['a']);
  });

  it('serves higher priority first, and round-robins between owners inside a class', async function () {
    const s = new Scheduler({ slots: 1, queueLimit: 20 });
    const log: string[] = [];
    const first = gate(log, 'busy');
    const running = s.run(first.task);
    const queued: Array<{ finish: () => void; p: Promise<string> }> = [];
    const add = (name: string, owner: string, priority: 'high' | 'normal' | 'low') => {
      const g = gate(log, name);
      queued.push({ finish: g.finish, p: s.run(g.task, { owner, priority }) });
    };
    // flow A floods the queue before flow B asks once.
    add('A1', 'A', 'normal');
    add('A2', 'A', 'normal');
    add('A3', 'A', 'normal');
    add('B1', 'B', 'normal');
    add('L1', 'C', 'low');
    add('H1', 'C', 'high');
    // Each queued task finishes as soon as it starts, so the log is the dispatch order.
    for (const q of queued) q.finish();
    first.finish();
    await running;
    await Promise.all(queued.map((q) => q.p));
    assert.deepEqual(log, ['busy', 'H1', 'A1', 'B1', 'A2', 'A3', 'L1']);
  });

  it('lets a long-waiting low-priority request climb past newer normal ones', async function () {
    const clock = sandbox.useFakeTimers({ now: 0 });
    const s = new Scheduler({ slots: 1, queueLimit: 20, agingMs: 1_000 });
    const log: string[] = [];
    const first = gate(log, 'busy');
    const running = s.run(first.task);
    const low = gate(log, 'low');
    const pl = s.run(low.task, { priority: 'low', owner: 'x' });
    await clock.tickAsync(2_500);
    const normal = gate(log, 'normal');
    const pn = s.run(normal.task, { priority: 'normal', owner: 'y' });
    first.finish();
    await running;
    await clock.tickAsync(0);
    assert.equal(log[1], 'low');
    low.finish();
    normal.finish();
    await Promise.all([pl, pn]);
  });

  it('gives a request the slot that last ran its affinity key', async function () {
    const s = new Scheduler({ slots: 3, queueLimit: 5 });
    const slotOf = (affinity?: string) => s.run(async ({ slot }) => slot, { affinity });
    assert.equal(await slotOf('plan'), 0);
    assert.equal(await slotOf('parse'), 1, 'a new key takes a slot that holds no other prefix');
    assert.equal(await slotOf('parse'), 1, 'not the first free slot, which holds another prefix');
    assert.equal(await slotOf('plan'), 0);
  });

  it('rejects everything waiting when closed', async function () {
    const s = new Scheduler({ slots: 1, queueLimit: 5 });
    const log: string[] = [];
    const a = gate(log, 'a');
    const pa = s.run(a.task);
    const pb = s.run(gate(log, 'b').task);
    s.close('bye');
    await assert.rejects(pb, (e: LlmError) => e.code === 'closed');
    await assert.rejects(s.run(gate(log, 'c').task), (e: LlmError) => e.code === 'closed');
    a.finish();
    await pa;
  });

  it('lets a probe wait behind production without taking a place in the queue', async function () {
    const s = new Scheduler({ slots: 1, queueLimit: 1 });
    const log: string[] = [];
    const a = gate(log, 'a');
    const pa = s.run(a.task);
    const probe = gate(log, 'probe');
    const pp = s.run(probe.task, { probe: true, priority: 'low' });
    const b = gate(log, 'b');
    const pb = s.run(b.task);
    assert.equal(s.queued, 1, 'the probe is not counted');
    await assert.rejects(s.run(gate(log, 'c').task), (e: LlmError) => e.code === 'queue_full');
    a.finish();
    await pa;
    await flush();
    assert.deepEqual(log, ['a', 'b'], 'production before the probe');
    b.finish();
    await pb;
    await flush();
    assert.deepEqual(log, ['a', 'b', 'probe']);
    probe.finish();
    await pp;
  });

  it('says why a request would be refused before it is prepared', function () {
    const s = new Scheduler({ slots: 1, queueLimit: 0 });
    assert.equal(s.admission(), undefined);
    void s.run(() => new Promise(() => undefined));
    assert.equal(s.admission()?.code, 'queue_full');
    assert.equal(s.admission({ probe: true }), undefined);
  });
});
