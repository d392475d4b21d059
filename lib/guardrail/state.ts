import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeAtomicSync } from '../util/files';

/**
 * The guardrail's memory of what it approved: rate-limit buckets and windows, last set-points,
 * positions and mission budgets, each under a string key. Kept in memory for the decisions, and,
 * when opened on a file, journalled there so that a redeploy or a restart of Node-RED forgets
 * nothing (the 6th valve command within a minute stays refused after a redeploy).
 *
 * The journal is JSON lines `{"k": key, "v": value}` (`v` absent: the key was dropped). `sync()`
 * appends the keys changed since the last sync, one line each with its latest value, and fsyncs;
 * the guardrail node syncs in the same batch as the audit log, before a decision's message leaves.
 * A torn last line (a crash during an append) is ignored: its decision never left. When the
 * journal has grown to twice the live keys it is rewritten: a temporary file, fsync, rename, so a
 * crash leaves the old journal or the new one.
 */
export class LimitState {
  private readonly values = new Map<string, unknown>();
  private readonly dirty = new Set<string>();
  private fd: number | undefined;
  private lines = 0;
  private syncing: Promise<void> | undefined;
  private broken: Error | undefined;

  private constructor(readonly file: string | undefined) {}

  /** A state that lives in memory only. */
  static memory(): LimitState {
    return new LimitState(undefined);
  }

  /** Opens (or creates) the journal at `file` and loads what it holds. */
  static open(file: string): LimitState {
    const state = new LimitState(file);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      if (!lines[i]) continue;
      let rec: { k?: unknown; v?: unknown };
      try {
        rec = JSON.parse(lines[i]) as { k?: unknown; v?: unknown };
      } catch (err) {
        if (i >= lines.length - 2) break; // the torn last line of an append that never completed
        throw new Error(`guardrail state ${file} is damaged at line ${i + 1}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      if (typeof rec.k !== 'string') continue;
      if (rec.v === undefined) state.values.delete(rec.k);
      else state.values.set(rec.k, rec.v);
    }
    state.rewrite();
    return state;
  }

  get size(): number {
    return this.values.size;
  }

  get<T>(key: string): T | undefined {
    return this.values.get(key) as T | undefined;
  }

  has(key: string): boolean {
    return this.values.has(key);
  }

  set(key: string, value: unknown): void {
    this.values.set(key, value);
    this.dirty.add(key);
  }

  delete(key: string): void {
    if (this.values.delete(key)) this.dirty.add(key);
  }

  keys(): IterableIterator<string> {
    return this.values.keys();
  }

  /** Whether there are changes not yet on disk. */
  get pending(): boolean {
    return this.dirty.size > 0;
  }

  /**
   * Writes every change made so far to the journal and fsyncs it. Calls made while one is running
   * share the next one. Rejects if the disk refuses; the state then refuses to sync again.
   */
  sync(): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.fd === undefined) {
      this.dirty.clear();
      return Promise.resolve();
    }
    if (this.syncing) return this.syncing.then(() => this.sync());
    const text = this.takeChanges();
    if (!text) return Promise.resolve();
    const fd = this.fd;
    this.syncing = new Promise<void>((resolve, reject) => {
      fs.write(fd, text, (err) => {
        if (err) return reject(err);
        fs.fdatasync(fd, (err2) => (err2 ? reject(err2) : resolve()));
      });
    })
      .then(() => {
        if (this.lines > 2 * this.values.size + 1000) this.rewrite();
      })
      .catch((err: Error) => {
        this.broken = new Error(`guardrail state ${this.file} could not be written: ${err.message}`);
        throw this.broken;
      })
      .finally(() => {
        this.syncing = undefined;
      });
    return this.syncing;
  }

  /** Writes what is pending now, synchronously (at close). */
  syncNow(): void {
    if (this.fd === undefined || this.broken) return;
    const text = this.takeChanges();
    if (!text) return;
    fs.writeSync(this.fd, text);
    fs.fdatasyncSync(this.fd);
  }

  async close(): Promise<void> {
    await this.syncing?.catch(() => undefined);
    try {
      this.syncNow();
    } finally {
      if (this.fd !== undefined) fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }

  private takeChanges(): string {
    let text = '';
    for (const k of this.dirty) {
      const v = this.values.get(k);
      text += JSON.stringify(v === undefined ? { k } : { k, v }) + '\n';
      this.lines++;
    }
    this.dirty.clear();
    return text;
  }

  private rewrite(): void {
    if (!this.file) return;
    let text = '';
    for (const [k, v] of this.values) text += JSON.stringify({ k, v }) + '\n';
    writeAtomicSync(this.file, text);
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = fs.openSync(this.file, 'a');
    this.lines = this.values.size;
    this.dirty.clear();
  }
}
