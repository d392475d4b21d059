/**
 * A bounded, ordered outbox kept on disk.
 *
 * Commands wait here until the device has acked them or they have failed, so a broker outage or a
 * restart of Node-RED loses none. The journal is append-only JSON lines (`add` and `del` records),
 * each append fsync'd before the caller is told it is stored. Compaction writes the live entries to
 * a temporary file, fsyncs it and renames it over the journal, so a crash at any moment leaves
 * either the old journal or the new one, never a mix.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { removeTemps, writeAtomic } from '../util/files';

export interface OutboxEntry<T> {
  /** Position in the outbox: strictly increasing, never reused while the journal lives. */
  seq: number;
  item: T;
}

export interface OutboxOptions {
  /** Folder for the journal; created if missing. */
  dir: string;
  /** Most entries held at once; `append` refuses beyond it. */
  capacity: number;
  /** Journal file name inside `dir`. */
  name?: string;
  /** Compact once the journal holds this many dead records (default: 4 × capacity, at least 256). */
  compactAfter?: number;
}

export class OutboxFullError extends Error {
  readonly code = 'outbox_full';
  constructor(capacity: number) {
    super(`outbox is full (${capacity} commands waiting)`);
    this.name = 'OutboxFullError';
  }
}

type JournalRecord<T> = { op: 'add'; seq: number; item: T } | { op: 'del'; seq: number };

export class Outbox<T> {
  readonly file: string;
  readonly capacity: number;
  private readonly live = new Map<number, T>();
  private nextSeq = 1;
  private deadRecords = 0;
  private readonly compactAfter: number;
  private handle: fs.FileHandle | undefined;
  /** Every write goes through this chain, so journal records land in call order. */
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(file: string, capacity: number, compactAfter: number) {
    this.file = file;
    this.capacity = capacity;
    this.compactAfter = compactAfter;
  }

  /** Opens (or creates) the outbox and replays its journal. */
  static async open<T>(options: OutboxOptions): Promise<Outbox<T>> {
    if (!Number.isInteger(options.capacity) || options.capacity < 1) {
      throw new RangeError(`outbox capacity must be a positive integer, got ${options.capacity}`);
    }
    await fs.mkdir(options.dir, { recursive: true });
    const file = path.join(options.dir, options.name ?? 'outbox.jsonl');
    const compactAfter = options.compactAfter ?? Math.max(256, options.capacity * 4);
    const outbox = new Outbox<T>(file, options.capacity, compactAfter);
    await outbox.replay();
    await removeTemps(file);
    // Replaying may have found a torn last line or dead records: start from a clean journal.
    await outbox.rewrite();
    return outbox;
  }

  get depth(): number {
    return this.live.size;
  }

  get full(): boolean {
    return this.live.size >= this.capacity;
  }

  /** Live entries, oldest first. */
  entries(): OutboxEntry<T>[] {
    return [...this.live].map(([seq, item]) => ({ seq, item }));
  }

  peek(): OutboxEntry<T> | undefined {
    for (const [seq, item] of this.live) return { seq, item };
    return undefined;
  }

  has(seq: number): boolean {
    return this.live.has(seq);
  }

  /** Stores an item durably; resolves with its sequence number once it is on disk. */
  append(item: T): Promise<number> {
    if (this.closed) return Promise.reject(new Error('outbox is closed'));
    if (this.full) return Promise.reject(new OutboxFullError(this.capacity));
    const seq = this.nextSeq++;
    // Counted at once so that concurrent appends cannot overshoot the capacity.
    this.live.set(seq, item);
    return this.serialize(async () => {
      try {
        await this.write({ op: 'add', seq, item });
      } catch (err) {
        this.live.delete(seq);
        throw err;
      }
      return seq;
    });
  }

  /** Removes an entry (acked or failed) durably. Removing an unknown entry does nothing. */
  remove(seq: number): Promise<void> {
    if (!this.live.delete(seq)) return Promise.resolve();
    return this.serialize(async () => {
      if (this.closed) return;
      await this.write({ op: 'del', seq });
      // An add and its del are both dead once the entry is gone.
      this.deadRecords += 2;
      if (this.deadRecords >= this.compactAfter) await this.rewrite();
    });
  }

  /** Rewrites the journal with only the live entries. */
  compact(): Promise<void> {
    return this.serialize(() => this.rewrite());
  }

  /** Waits for pending writes, then releases the file. The journal stays for the next `open`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail.catch(() => undefined);
    await this.handle?.close();
    this.handle = undefined;
  }

  private serialize<R>(work: () => Promise<R>): Promise<R> {
    const run = this.tail.then(work, work);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async write(record: JournalRecord<T>): Promise<void> {
    if (!this.handle) throw new Error('outbox is closed');
    await this.handle.write(JSON.stringify(record) + '\n');
    await this.handle.datasync();
  }

  private async replay(): Promise<void> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      if (line === '') continue;
      let record: JournalRecord<T>;
      try {
        record = JSON.parse(line) as JournalRecord<T>;
      } catch (err) {
        // Only the last line can be torn (a crash during an append): that append was never
        // confirmed to its caller, so dropping it loses nothing that was promised.
        if (i >= lines.length - 2) break;
        throw new Error(
          `outbox journal ${this.file} is corrupt at line ${i + 1}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
      if (record.op === 'add') this.live.set(record.seq, record.item);
      else if (record.op === 'del') this.live.delete(record.seq);
      if (record.seq >= this.nextSeq) this.nextSeq = record.seq + 1;
    }
  }

  private async rewrite(): Promise<void> {
    const body = this.entries()
      .map(({ seq, item }) => JSON.stringify({ op: 'add', seq, item }) + '\n')
      .join('');
    // The old journal stays open for appends until the new one is in place: a failed write or
    // rename leaves a working outbox, not one that says it is closed.
    await writeAtomic(this.file, body);
    const previous = this.handle;
    this.handle = await fs.open(this.file, 'a');
    await previous?.close();
    this.deadRecords = 0;
  }
}
