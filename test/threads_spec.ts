import * as assert from 'node:assert/strict';
import { BatchGatherer, GATHER_TURNS, fitBatch } from '../lib/runtime/batching';
import { ThreadGovernor } from '../lib/runtime/threads';

/**
 * A governor on a hand-moved clock, and the counts its knob was set to. It tries the other count after
 * 160 ms of decoding (ten 16 ms steps) unless told.
 */
function governed(start = 2, options: { probeMinMs?: number } = {}) {
  let clock = 0;
  const set: number[] = [];
  const governor = new ThreadGovernor({
    low: 1,
    high: 2,
    start,
    knob: (n) => set.push(n),
    now: () => clock,
    probeMinMs: options.probeMinMs ?? 160,
    probeMaxMs: 60_000,
    probeSteps: 6,
  });
  /** n generation steps of `ms` each, one token per step unless told. */
  const steps = (n: number, ms: number, tokens = 1) => {
    for (let i = 0; i < n; i++) {
      governor.step(tokens, true);
      clock += ms;
    }
  };
  /** Time with no request: the runtime tells the governor that nothing generates. */
  const wait = (ms: number) => {
    governor.idle();
    clock += ms;
  };
  return { governor, set, steps, wait };
}

describe('thread governor', function () {
  it('starts at the count timed at load and sets it', function () {
    const { governor, set } = governed(2);
    assert.equal(governor.level, 2);
    assert.deepEqual(set, [2]);
  });

  it('drops to one thread when two collapse (three steps several times their best)', function () {
    const { governor, set, steps } = governed(2, { probeMinMs: 60_000 });
    steps(8, 8);
    assert.equal(governor.level, 2);
    steps(4, 200);
    assert.equal(governor.level, 1);
    assert.equal(governor.lastReason, 'collapse');
    assert.deepEqual(set, [2, 1]);
  });

  it('counts steps of seconds while sequences generate (a deep collapse is still a step)', function () {
    const { governor, steps } = governed(2, { probeMinMs: 60_000 });
    steps(8, 8);
    steps(4, 3000);
    assert.equal(governor.level, 1);
  });

  it('drops when two threads step at twice what one thread did, short of three times their best', function () {
    const { governor, steps } = governed(1);
    steps(10, 16);
    steps(7, 12); // the try wins: two threads
    assert.equal(governor.level, 2);
    steps(4, 35); // another job starts: over twice one thread's 16 ms, under three times the best 12 ms
    assert.equal(governor.level, 1);
    assert.equal(governor.lastReason, 'collapse');
  });

  it('does not drop on one slow step (a page fault, a GC)', function () {
    const { governor, steps } = governed(2, { probeMinMs: 60_000 });
    steps(8, 8);
    steps(1, 300);
    steps(8, 8);
    steps(1, 300);
    steps(8, 8);
    assert.equal(governor.level, 2);
  });

  it('tries two threads again after a while and keeps them when they step faster', function () {
    const { governor, set, steps } = governed(1);
    steps(10, 16);
    steps(1, 8); // the try begins here
    assert.equal(governor.level, 2);
    steps(8, 8);
    assert.equal(governor.level, 2);
    assert.equal(governor.lastReason, 'faster');
    assert.deepEqual(set, [1, 2]);
  });

  it('goes back when the try is slower, and waits twice as long before the next', function () {
    const { governor, set, steps, wait } = governed(1);
    steps(10, 16);
    steps(8, 40); // the try begins: two threads on a busy machine
    assert.equal(governor.level, 1);
    assert.equal(governor.lastReason, 'kept');
    // 160 ms decoded at one thread since (four steps of 40); an hour idle counts for nothing.
    wait(3_600_000);
    steps(8, 16);
    assert.equal(governor.level, 1, 'no new try before 320 ms of decoding');
    steps(2, 16);
    assert.equal(governor.level, 2, 'a new try after 320 ms of decoding');
    assert.deepEqual(set, [1, 2, 1, 2]);
  });

  it('ends a try at its first step that takes 1.5 times the steps it is compared with', function () {
    const { governor, set, steps } = governed(1);
    steps(10, 16);
    steps(1, 16); // the try begins
    assert.equal(governor.level, 2);
    steps(2, 900); // two threads on a busy box (a step is measured when the next one starts)
    assert.equal(governor.level, 1, 'one slow step ends the try');
    assert.deepEqual(set, [1, 2, 1]);
  });

  it('ends a try of one thread on a quiet box after one step (it steps at 1.75x two threads)', function () {
    const { governor, set, steps } = governed(2);
    steps(20, 8);
    steps(1, 14); // the try of one thread begins
    assert.equal(governor.level, 1);
    steps(2, 14); // a step is measured when the next one starts
    assert.equal(governor.level, 2, 'one step of 14 ms against 8 ms ends the try');
    assert.equal(governor.lastReason, 'kept');
    assert.deepEqual(set, [2, 1, 2]);
  });

  it('also tries fewer threads, and moves when they are faster', function () {
    const { governor, steps } = governed(2);
    steps(14, 12);
    steps(8, 9); // the try begins: one thread steps faster now
    assert.equal(governor.level, 1);
    assert.equal(governor.lastReason, 'faster');
  });

  it('judges a count by its usual step, not by a stall or two just before a try', function () {
    const { governor, set, steps } = governed(2);
    steps(14, 8);
    steps(2, 30); // the virtual machine stalls for two steps (not three: no collapse)
    // The try of one thread begins: 14 ms steps, faster than an average that took the stalls in
    // (about 17.6 ms), slower than two threads' usual 8 ms.
    steps(8, 14);
    assert.equal(governor.level, 2);
    assert.equal(governor.lastReason, 'kept');
    assert.deepEqual(set, [2, 1, 2]);
  });

  it('compares steps of the same size only, and skips idle gaps and prompts', function () {
    const { governor, steps } = governed(1);
    steps(10, 16, 1);
    // The try sees only 4-token steps: nothing at one thread to compare with, so it goes back.
    steps(8, 4, 4);
    assert.equal(governor.level, 1);
    // A prompt step and an idle gap do not count as slow steps.
    const g = governed(2);
    g.steps(8, 8);
    g.governor.step(100, false);
    g.wait(1500);
    g.steps(2, 8);
    g.wait(3000);
    g.steps(8, 8);
    assert.equal(g.governor.level, 2);
  });
});

describe('batch gathering', function () {
  const item = (tokens: number, evaluationPriority = 5) => ({
    tokens: new Array<number>(tokens).fill(0),
    evaluationPriority,
  });

  it('shares the batch: every sequence gets a share, what one leaves goes to others', function () {
    const a = item(1);
    const b = item(300);
    const c = item(1);
    const fit = fitBatch([a, b, c], 128);
    assert.deepEqual(
      fit.map((f) => f.processAmount),
      [1, 126, 1],
    );
    const high = item(200, 9);
    const low = item(200, 1);
    const shared = fitBatch([low, high], 100);
    assert.equal(shared[0].item, high, 'higher priority first');
    assert.equal(
      shared.reduce((n, f) => n + f.processAmount, 0),
      100,
    );
  });

  it('orders a decode by sequence id where it saw each decode queued, else keeps queue order', function () {
    const g = new BatchGatherer();
    const queued: Array<{ tokens: number[]; evaluationPriority: number }> = [];
    const context = {
      _decodeTokens(options: { sequenceId: number; tokens: number[] }) {
        queued.push({ tokens: options.tokens, evaluationPriority: 5 });
      },
    };
    g.track(context);
    for (const sequenceId of [3, 0, 2, 1]) context._decodeTokens({ sequenceId, tokens: [7] });
    const late = item(1); // queued some other way: no sequence known
    const batch = g.strategy({ items: [late, ...queued], size: 128 });
    assert.deepEqual(
      batch.map((b) => queued.indexOf(b.item as never)),
      [1, 3, 2, 0, -1],
    );
    // A node-llama-cpp without the method: nothing is wrapped, queue order stays.
    const plain = new BatchGatherer();
    plain.track({});
    const a = item(1);
    const b = item(1);
    assert.deepEqual(
      plain.strategy({ items: [a, b], size: 128 }).map((x) => x.item),
      [a, b],
    );
  });

  it('waits for every generating sequence, a bounded number of turns', function () {
    const g = new BatchGatherer();
    const seen: Array<[number, boolean]> = [];
    g.onBatch = (tokens, generation) => seen.push([tokens, generation]);
    g.generating = 4;
    const three = [item(1), item(1), item(1)];
    assert.deepEqual(g.strategy({ items: three, size: 128 }), [], 'waits for the fourth');
    const four = [...three, item(1)];
    assert.equal(g.strategy({ items: four, size: 128 }).length, 4);
    assert.deepEqual(seen, [[4, true]]);
    for (let i = 0; i < GATHER_TURNS; i++) assert.deepEqual(g.strategy({ items: three, size: 128 }), []);
    assert.equal(g.strategy({ items: three, size: 128 }).length, 3, 'goes on without a late sequence');
    assert.equal(g.decodes, 2);
    g.generating = 1;
    assert.equal(g.strategy({ items: [item(40)], size: 128 }).length, 1);
    assert.deepEqual(seen[seen.length - 1], [40, false]);
  });
});
