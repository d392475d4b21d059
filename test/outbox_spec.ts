import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Outbox, OutboxFullError } from '../lib/device/outbox';
import { TEMP_MARK } from '../lib/util/files';

describe('outbox', function () {
  let dir: string;
  const open: Outbox<unknown>[] = [];
  async function openOutbox<T>(capacity = 10, compactAfter?: number): Promise<Outbox<T>> {
    const outbox = await Outbox.open<T>({ dir, capacity, compactAfter });
    open.push(outbox);
    return outbox;
  }

  beforeEach(async function () {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'outbox-'));
  });
  afterEach(async function () {
    await Promise.all(open.splice(0).map((o) => o.close()));
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('keeps entries in the order they were appended', async function () {
    const outbox = await openOutbox<string>();
    const seqs = await Promise.all(['a', 'b', 'c'].map((x) => outbox.append(x)));
    assert.deepEqual(seqs, [1, 2, 3]);
    assert.equal(outbox.depth, 3);
    assert.deepEqual(outbox.peek(), { seq: 1, item: 'a' });
    await outbox.remove(1);
    assert.deepEqual(
      outbox.entries().map((e) => e.item),
      ['b', 'c'],
    );
  });

  it('refuses beyond its capacity, also for appends made at the same moment', async function () {
    const outbox = await openOutbox<number>(3);
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map((n) => outbox.append(n)));
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected'],
    );
    const refusal = (results[3] as PromiseRejectedResult).reason as OutboxFullError;
    assert.ok(refusal instanceof OutboxFullError);
    assert.equal(refusal.code, 'outbox_full');
    await outbox.remove(2);
    assert.equal(await outbox.append(6), 4);
  });

  it('survives a restart with what was live, in order, and sequence numbers that keep rising', async function () {
    const first = await openOutbox<{ n: number }>();
    for (let n = 1; n <= 5; n++) await first.append({ n });
    await first.remove(1);
    await first.remove(3);
    await first.close();

    const second = await openOutbox<{ n: number }>();
    assert.deepEqual(second.entries(), [
      { seq: 2, item: { n: 2 } },
      { seq: 4, item: { n: 4 } },
      { seq: 5, item: { n: 5 } },
    ]);
    assert.equal(await second.append({ n: 6 }), 6);
  });

  it('has each append on disk by the time it resolves, without a close', async function () {
    const first = await openOutbox<string>();
    await first.append('x');
    await first.append('y');
    await first.remove(1);
    // No close(): as after a crash, a second reader sees the journal as it is.
    const second = await openOutbox<string>();
    assert.deepEqual(
      second.entries().map((e) => e.item),
      ['y'],
    );
  });

  it('drops a torn last line (an append cut off by a crash) and keeps the rest', async function () {
    const first = await openOutbox<string>();
    await first.append('kept');
    await first.close();
    await fs.appendFile(first.file, '{"op":"add","seq":2,"item":"cut of');
    const second = await openOutbox<string>();
    assert.deepEqual(
      second.entries().map((e) => e.item),
      ['kept'],
    );
    // The journal was rewritten clean: a further append is not glued to the torn line.
    await second.append('next');
    await second.close();
    const third = await openOutbox<string>();
    assert.deepEqual(
      third.entries().map((e) => e.item),
      ['kept', 'next'],
    );
  });

  it('refuses to open a journal damaged before its last line rather than lose commands silently', async function () {
    await fs.writeFile(
      path.join(dir, 'outbox.jsonl'),
      '{"op":"add","seq":1,"item":"a"}\nnot json\n{"op":"add","seq":2,"item":"b"}\n',
    );
    await assert.rejects(Outbox.open({ dir, capacity: 10 }), /corrupt at line 2/);
  });

  it('compacts the journal to its live entries and leaves no temporary file', async function () {
    const outbox = await openOutbox<string>(4, 20);
    for (let i = 0; i < 40; i++) {
      const seq = await outbox.append(`item ${i}`);
      if (i % 10 !== 9) await outbox.remove(seq);
    }
    await outbox.compact();
    const lines = (await fs.readFile(outbox.file, 'utf8')).trim().split('\n');
    assert.equal(lines.length, 4);
    assert.deepEqual(
      outbox.entries().map((e) => e.item),
      ['item 9', 'item 19', 'item 29', 'item 39'],
    );
    assert.deepEqual(await fs.readdir(dir), ['outbox.jsonl']);
  });

  it('ignores the temporary file of a compaction that a crash interrupted', async function () {
    const first = await openOutbox<string>();
    await first.append('a');
    await first.close();
    // A crash between writing the temporary file and the rename leaves both: the journal wins.
    await fs.writeFile(`${first.file}${TEMP_MARK}4242-1`, '{"op":"add","seq":9,"item":"half-written"');
    const second = await openOutbox<string>();
    assert.deepEqual(
      second.entries().map((e) => e.item),
      ['a'],
    );
    assert.deepEqual(await fs.readdir(dir), ['outbox.jsonl'], 'the leftover is removed');
  });

  it('refuses a capacity that is not a positive integer', async function () {
    await assert.rejects(Outbox.open({ dir, capacity: 0 }), RangeError);
  });
});
