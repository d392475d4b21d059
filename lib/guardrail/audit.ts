import * as crypto from 'node:crypto';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalJson, canonicalSignedJson, hmacSha256Hex } from '../device/signing';
import type { Decision } from './evaluate';

/** `prev` of the first line. */
export const GENESIS = '0'.repeat(64);
const RESERVED = ['seq', 'ts', 'prev', 'mac'];
const AUDIT_KEY_LABEL = 'node-red-contrib-edge-llm/guardrail/audit/v1';

/**
 * The audit log is JSON lines. Each line is the canonical JSON of one decision plus `seq` (0, 1, 2...),
 * `ts` (ISO time), `prev` (sha256 of the previous line's text, GENESIS for the first) and, when a key
 * is set, `mac` (HMAC-SHA256 over the line without `mac`, with a key derived from the signing key).
 * The chain catches edited, removed, reordered and inserted lines; the `.head` file beside the log
 * (last seq and hash) catches lines removed from, or edited at, the end; the MACs stop someone without
 * the key from rewriting the whole chain and head consistently.
 */
export interface AuditHead {
  seq: number;
  hash: string;
  mac?: string;
}

export type AuditProblemCode =
  | 'unparseable'
  | 'bad_seq'
  | 'bad_prev'
  | 'bad_mac'
  | 'torn_line'
  | 'truncated'
  | 'head_mismatch'
  | 'head_missing'
  | 'bad_head'
  | 'anchor_mismatch'
  | 'anchor_truncated'
  | 'bad_anchor';

export interface AuditProblem {
  /** 1-based line number in the file; absent for problems with the head. */
  line?: number;
  code: AuditProblemCode;
  message: string;
}

export interface AuditVerifyResult {
  ok: boolean;
  entries: number;
  lastSeq: number;
  problems: AuditProblem[];
}

/** crypto.hash (Node 20.12 and later): one call, no Hash object; createHash where it is missing. */
const oneShot = (crypto as unknown as { hash?: (algorithm: string, data: string, encoding: 'hex') => string })
  .hash;

export function sha256(text: string): string {
  return oneShot ? oneShot('sha256', text, 'hex') : createHash('sha256').update(text).digest('hex');
}

/** Domain-separated key for audit MACs, so an audit MAC can never pass as an action signature. */
export function deriveAuditKey(signingKey: string | Buffer): Buffer {
  return createHmac('sha256', signingKey).update(AUDIT_KEY_LABEL).digest();
}

function hmac(key: Buffer, text: string): string {
  return hmacSha256Hex(key, text);
}

const keyText = new Map<string, string>();
function quotedKey(k: string): string {
  let q = keyText.get(k);
  if (q === undefined) {
    q = JSON.stringify(k);
    if (keyText.size < 256) keyText.set(k, q);
  }
  return q;
}

/** A value already written as canonical JSON, put into an audit line as it is. */
export class RawJson {
  constructor(readonly text: string) {}
  toJSON(): unknown {
    return JSON.parse(this.text);
  }
}

function sameHex(a: unknown, b: string): boolean {
  return typeof a === 'string' && a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

export function headPathFor(file: string): string {
  return `${file}.head`;
}

function headText(seq: number, hash: string, key: Buffer | undefined): string {
  return canonicalJson(key ? { seq, hash, mac: hmac(key, canonicalJson({ seq, hash })) } : { seq, hash });
}

/** Reads the last line of a file from its end, without reading all of it. */
function readLastLine(fd: number, size: number): { line: string; torn: boolean } {
  const chunk = 64 * 1024;
  let buf = Buffer.alloc(0);
  let pos = size;
  while (pos > 0) {
    const n = Math.min(chunk, pos);
    pos -= n;
    const part = Buffer.alloc(n);
    fs.readSync(fd, part, 0, n, pos);
    buf = Buffer.concat([part, buf]);
    const body = buf[buf.length - 1] === 0x0a ? buf.subarray(0, buf.length - 1) : buf;
    const nl = body.lastIndexOf(0x0a);
    if (nl >= 0 || pos === 0) {
      return { line: body.subarray(nl + 1).toString('utf8'), torn: buf[buf.length - 1] !== 0x0a };
    }
  }
  return { line: '', torn: false };
}

/** A record of the chain's head kept somewhere else, so a rewritten chain or a cut-off end shows. */
export interface AuditAnchor {
  seq: number;
  hash: string;
  ts: string;
  mac?: string;
}

export interface AuditOptions {
  signingKey?: string | Buffer;
  /**
   * Anchoring: at most every `intervalMs` (and at close), the head is appended to `file` (a
   * second file, best on another disk) and handed to `publish` (e.g. a retained MQTT message).
   */
  anchor?: { file?: string; intervalMs?: number; publish?: (anchor: AuditAnchor) => void };
}

/** Something written and fsynced in the same batch as the audit lines (the guardrail's limits). */
export interface AuditCompanion {
  sync(): Promise<void>;
  /** The same, synchronously (at close). */
  syncNow?(): void;
}

/** The records of one batch: one promise that all of them share, settled when the batch is durable. */
class Batch {
  readonly durable: Promise<void>;
  resolve!: () => void;
  reject!: (err: Error) => void;
  constructor() {
    this.durable = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.durable.catch(() => undefined); // a caller that does not wait is not an unhandled rejection
  }
}

/** Fields of a record in key order (insertion: a record has a dozen fields). */
function sortFields(fields: Array<[string, string]>): void {
  for (let i = 1; i < fields.length; i++) {
    const f = fields[i];
    let j = i - 1;
    while (j >= 0 && fields[j][0] > f[0]) {
      fields[j + 1] = fields[j];
      j--;
    }
    fields[j + 1] = f;
  }
}

function joinFields(fields: Array<[string, string]>, from: number, to: number): string {
  let out = '';
  for (let i = from; i < to; i++) out += (i > from ? ',' : '') + quotedKey(fields[i][0]) + ':' + fields[i][1];
  return out;
}

/** `"2026-11-30T18:00:00.000Z"` for `now`, kept for the last millisecond asked. */
let isoAt = NaN;
let isoText = '';
function isoTime(now: number): string {
  if (now !== isoAt) {
    isoText = `"${new Date(now).toISOString()}"`;
    isoAt = now;
  }
  return isoText;
}

export class AuditLog {
  private seq: number;
  private hash: string;
  private fd: number | undefined;
  private broken: Error | undefined;
  private pending: string[] = [];
  /** The batch the pending lines belong to: made by the first of them, taken when they are written. */
  private batch: Batch | undefined;
  private flushing = false;
  private scheduled = false;
  private closing: Promise<void> | undefined;
  private closeWaiter: (() => void) | undefined;
  private readonly companions: AuditCompanion[] = [];
  private lastAnchor = 0;
  private anchoredSeq = -1;

  private constructor(
    readonly file: string,
    private readonly key: Buffer | undefined,
    fd: number,
    seq: number,
    hash: string,
    private readonly anchor: AuditOptions['anchor'],
  ) {
    this.fd = fd;
    this.seq = seq;
    this.hash = hash;
  }

  /**
   * Opens (or creates) a log and resumes its chain. Refuses a log whose last line is torn or does not
   * match its head file: continuing would hide tampering or a crash that someone should look at.
   */
  static open(file: string, opts: AuditOptions = {}): AuditLog {
    const key = opts.signingKey ? deriveAuditKey(opts.signingKey) : undefined;
    fs.mkdirSync(path.dirname(file), { recursive: true });
    if (opts.anchor?.file) fs.mkdirSync(path.dirname(opts.anchor.file), { recursive: true });
    const fd = fs.openSync(file, 'a+');
    try {
      const size = fs.fstatSync(fd).size;
      const headFile = headPathFor(file);
      const head = fs.existsSync(headFile) ? fs.readFileSync(headFile, 'utf8') : undefined;
      const advice = `check it with the audit verify command, then move ${file} and its .head file aside to start a new log`;
      if (size === 0) {
        if (head !== undefined)
          throw new Error(`audit log ${file} is empty but its head file records entries; ${advice}`);
        return new AuditLog(file, key, fd, -1, GENESIS, opts.anchor);
      }
      const { line, torn } = readLastLine(fd, size);
      if (torn) throw new Error(`audit log ${file} ends in an incomplete line; ${advice}`);
      let seq: unknown;
      try {
        seq = (JSON.parse(line) as { seq?: unknown }).seq;
      } catch {
        seq = undefined;
      }
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq)) {
        throw new Error(`audit log ${file} ends in an unreadable line; ${advice}`);
      }
      const hash = sha256(line);
      if (head === undefined) throw new Error(`audit log ${file} has no head file; ${advice}`);
      if (!headMatches(head, seq, hash, key)) {
        throw new Error(`audit log ${file} does not match its head file (last entry ${seq}); ${advice}`);
      }
      return new AuditLog(file, key, fd, seq, hash, opts.anchor);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Also write and fsync `companion` in each batch, before the batch's decisions are durable. */
  attach(companion: AuditCompanion): void {
    this.companions.push(companion);
  }

  /**
   * Adds one record to the chain now (its seq and hash are fixed in call order) and returns with
   * `durable`, which resolves once its line, and those before it, are on disk (group commit: one
   * write and one fsync for all the records appended meanwhile). The caller must not act on the
   * decision before then; `durable` rejects if the log cannot be written.
   */
  append(
    record: Record<string, unknown>,
    now: number = Date.now(),
  ): { seq: number; hash: string; durable: Promise<void> } {
    if (this.broken) throw this.broken;
    if (this.fd === undefined || this.closing) throw new Error(`audit log ${this.file} is closed`);
    for (const k of RESERVED)
      if (Object.hasOwn(record, k)) throw new Error(`audit record may not set "${k}"`);
    const seq = this.seq + 1;
    // Each top-level value is written once; the line with its MAC is the same canonical JSON as
    // canonicalJson({...body, mac}) would give, without writing the body twice.
    const fields: Array<[string, string]> = [];
    for (const k of Object.keys(record)) {
      const v = record[k];
      if (v !== undefined) fields.push([k, v instanceof RawJson ? v.text : canonicalJson(v)]);
    }
    fields.push(['seq', String(seq)], ['ts', isoTime(now)], ['prev', `"${this.hash}"`]);
    sortFields(fields);
    let line: string;
    if (this.key) {
      // The fields before and after where `mac` goes, each written once for both lines.
      let at = 0;
      while (at < fields.length && fields[at][0] < 'mac') at++;
      const before = joinFields(fields, 0, at);
      const after = joinFields(fields, at, fields.length);
      const sep = at > 0 && at < fields.length ? ',' : '';
      const mac = hmac(this.key, `{${before}${sep}${after}}`);
      line = `{${before}${at > 0 ? ',' : ''}"mac":"${mac}"${at < fields.length ? ',' : ''}${after}}`;
    } else line = `{${joinFields(fields, 0, fields.length)}}`;
    const hash = sha256(line);
    this.seq = seq;
    this.hash = hash;
    this.pending.push(line + '\n');
    const batch = (this.batch ??= new Batch());
    this.schedule();
    return { seq, hash, durable: batch.durable };
  }

  /** Resolves once everything appended so far is on disk. */
  flush(): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.pending.length === 0 && !this.flushing) return Promise.resolve();
    const batch = (this.batch ??= new Batch());
    this.schedule();
    return batch.durable;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /**
   * Writes what is pending and closes the file. Synchronous when no batch is being written (the
   * file is complete when it returns); otherwise the returned promise resolves when it is.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    if (this.fd === undefined) return Promise.resolve();
    if (!this.flushing) {
      this.finishSync();
      this.closing = Promise.resolve();
      return this.closing;
    }
    this.closing = new Promise<void>((resolve) => (this.closeWaiter = resolve));
    return this.closing;
  }

  private schedule(): void {
    if (this.scheduled || this.flushing || this.closing) return;
    this.scheduled = true;
    // Appends made in this turn of the event loop, and while a batch is being written, go together.
    setImmediate(() => {
      this.scheduled = false;
      this.flushBatch();
    });
  }

  private flushBatch(): void {
    if (this.flushing || this.fd === undefined) return;
    if (this.pending.length === 0 && !this.batch) return;
    this.flushing = true;
    const text = this.pending.join('');
    const batch = this.batch;
    const seq = this.seq;
    const hash = this.hash;
    this.pending = [];
    this.batch = undefined;
    const fd = this.fd;
    const companions = Promise.all(this.companions.map((c) => c.sync()));
    // The lines are written, then synced while the head is replaced: the head is not synced (a
    // process that dies leaves both in the page cache, whichever finished), so waiting for the
    // sync before writing it would only add its time to every batch's latency.
    const written = new Promise<void>((resolve, reject) => {
      if (!text) return resolve();
      fs.write(fd, text, (err) => {
        if (err) return reject(err);
        const synced = new Promise<void>((ok, fail) =>
          fs.fdatasync(fd, (err2) => (err2 ? fail(err2) : ok())),
        );
        Promise.all([synced, this.writeHeadAsync(seq, hash)]).then(() => resolve(), reject);
      });
    });
    Promise.all([written, companions])
      .then(
        () => {
          try {
            this.maybeAnchor(seq, hash, false);
          } catch (err) {
            this.broken ??= new Error(
              `audit anchor of ${this.file} could not be written: ${(err as Error).message}`,
            );
            batch?.reject(this.broken);
            return;
          }
          batch?.resolve();
        },
        (err: Error) => {
          this.broken ??= new Error(`audit log ${this.file} could not be written: ${err.message}`);
          batch?.reject(this.broken);
          this.batch?.reject(this.broken);
          this.batch = undefined;
        },
      )
      .finally(() => {
        this.flushing = false;
        if (this.closing) {
          this.finishSync();
          this.closeWaiter?.();
        } else if (this.pending.length > 0 || this.batch) this.flushBatch();
      });
  }

  /** Writes the rest synchronously and closes (at close). */
  private finishSync(): void {
    const fd = this.fd;
    if (fd === undefined) return;
    const batch = this.batch;
    this.batch = undefined;
    try {
      if (this.broken) throw this.broken;
      if (this.pending.length > 0) {
        fs.writeSync(fd, this.pending.join(''));
        fs.fdatasyncSync(fd);
        this.pending = [];
        this.writeHead(this.seq, this.hash);
      }
      for (const c of this.companions) c.syncNow?.();
      this.maybeAnchor(this.seq, this.hash, true);
      batch?.resolve();
    } catch (err) {
      this.broken ??= err as Error;
      batch?.reject(this.broken);
    } finally {
      fs.closeSync(fd);
      this.fd = undefined;
    }
  }

  /** As writeHead, off the event loop: a batch's messages wait for it, the next decisions do not. */
  private writeHeadAsync(seq: number, hash: string): Promise<void> {
    const headFile = headPathFor(this.file);
    return fs.promises
      .writeFile(`${headFile}.tmp`, headText(seq, hash, this.key) + '\n')
      .then(() => fs.promises.rename(`${headFile}.tmp`, headFile))
      .catch((err: Error) => {
        this.broken = new Error(`audit head of ${this.file} could not be written: ${err.message}`);
        throw this.broken;
      });
  }

  private writeHead(seq: number, hash: string): void {
    try {
      const headFile = headPathFor(this.file);
      fs.writeFileSync(`${headFile}.tmp`, headText(seq, hash, this.key) + '\n');
      fs.renameSync(`${headFile}.tmp`, headFile);
    } catch (err) {
      this.broken = new Error(`audit head of ${this.file} could not be written: ${(err as Error).message}`);
      throw this.broken;
    }
  }

  private maybeAnchor(seq: number, hash: string, force: boolean): void {
    const a = this.anchor;
    if (!a || seq < 0 || seq === this.anchoredSeq) return;
    const now = Date.now();
    if (!force && now - this.lastAnchor < (a.intervalMs ?? 10_000)) return;
    this.lastAnchor = now;
    this.anchoredSeq = seq;
    const body = { seq, hash, ts: new Date(now).toISOString() };
    const anchor: AuditAnchor = this.key ? { ...body, mac: hmac(this.key, canonicalJson(body)) } : body;
    if (a.file) {
      const fd = fs.openSync(a.file, 'a');
      try {
        fs.writeSync(fd, canonicalJson(anchor) + '\n');
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    a.publish?.(anchor);
  }
}

function headMatches(text: string, seq: number, hash: string, key: Buffer | undefined): boolean {
  try {
    const h = JSON.parse(text) as AuditHead;
    if (h.seq !== seq || h.hash !== hash) return false;
    return key ? sameHex(h.mac, hmac(key, canonicalJson({ seq, hash }))) : true;
  } catch {
    return false;
  }
}

/**
 * Verifies an audit log's text: every line parses, seq counts up from 0, each `prev` is the hash of
 * the line before, each `mac` is right (when a key is given), and the end matches the head (when
 * given). Reports every problem found, each naming its line.
 */
export function verifyAuditLog(
  text: string,
  opts: { head?: string; requireHead?: boolean; signingKey?: string | Buffer; anchors?: string } = {},
): AuditVerifyResult {
  const key = opts.signingKey ? deriveAuditKey(opts.signingKey) : undefined;
  const problems: AuditProblem[] = [];
  const lines = text.split('\n');
  const torn = lines[lines.length - 1] !== '';
  if (!torn) lines.pop();
  let expectedSeq = 0;
  let prevHash = GENESIS;
  let lastSeq = -1;
  let maxSeq = -1;
  lines.forEach((line, i) => {
    const n = i + 1;
    if (torn && i === lines.length - 1) {
      problems.push({
        line: n,
        code: 'torn_line',
        message: `line ${n} is incomplete (the file was cut short)`,
      });
    }
    let entry: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
        entry = parsed as Record<string, unknown>;
    } catch {
      entry = undefined;
    }
    if (!entry) {
      if (!(torn && i === lines.length - 1)) {
        problems.push({ line: n, code: 'unparseable', message: `line ${n} is not a JSON object` });
      }
      expectedSeq++;
      prevHash = sha256(line);
      return;
    }
    const seq = entry.seq;
    if (seq !== expectedSeq) {
      problems.push({
        line: n,
        code: 'bad_seq',
        message: `line ${n} has seq ${JSON.stringify(seq)}, expected ${expectedSeq}: a line was removed, inserted or moved`,
      });
    }
    if (entry.prev !== prevHash) {
      problems.push({
        line: n,
        code: 'bad_prev',
        message:
          i === 0
            ? `line 1 does not start the chain: lines before it were removed, or it was edited`
            : `line ${n} does not follow line ${n - 1}: line ${n - 1} was edited, or lines were removed, inserted or moved`,
      });
    }
    if (key) {
      const { mac, ...rest } = entry;
      let ok: boolean;
      try {
        ok = sameHex(mac, hmac(key, canonicalJson(rest)));
      } catch {
        ok = false;
      }
      if (!ok)
        problems.push({
          line: n,
          code: 'bad_mac',
          message: `line ${n} has a wrong MAC: it was edited or forged`,
        });
    }
    expectedSeq = (typeof seq === 'number' && Number.isSafeInteger(seq) ? seq : expectedSeq) + 1;
    lastSeq = typeof seq === 'number' ? seq : lastSeq;
    if (typeof seq === 'number') maxSeq = Math.max(maxSeq, seq);
    prevHash = sha256(line);
  });

  if (opts.head === undefined) {
    if (opts.requireHead) {
      problems.push({
        code: 'head_missing',
        message: 'the head file is missing, so lines removed from the end would go unseen',
      });
    }
  } else {
    let head: AuditHead | undefined;
    try {
      head = JSON.parse(opts.head) as AuditHead;
    } catch {
      head = undefined;
    }
    if (!head || typeof head.seq !== 'number' || typeof head.hash !== 'string') {
      problems.push({ code: 'bad_head', message: 'the head file is not readable' });
    } else {
      if (key && !sameHex(head.mac, hmac(key, canonicalJson({ seq: head.seq, hash: head.hash })))) {
        problems.push({
          code: 'bad_head',
          message: 'the head file has a wrong MAC: it was edited or forged',
        });
      }
      const hashes = lines.map(sha256);
      const at = hashes.lastIndexOf(head.hash);
      if (at >= 0 && at < lines.length - 1) {
        problems.push({
          code: 'head_mismatch',
          message: `the head records line ${at + 1}, but ${lines.length - at - 1} line(s) follow it: they were appended later`,
        });
      } else if (at < 0 && head.seq > maxSeq) {
        problems.push({
          code: 'truncated',
          message: `the log ends at entry ${lastSeq} but the head records entry ${head.seq}: lines were removed from the end`,
        });
      } else if (at < 0 || head.seq !== lastSeq) {
        problems.push({
          code: 'head_mismatch',
          message: `the last line (entry ${lastSeq}) is not the one the head records (entry ${head.seq}): it was edited`,
        });
      }
    }
  }
  if (opts.anchors !== undefined) checkAnchors(opts.anchors, lines, key, problems);
  return { ok: problems.length === 0, entries: lines.length, lastSeq, problems };
}

/**
 * Checks the log against anchors kept elsewhere (JSON lines of {seq, hash, ts, mac?}): each
 * anchored line must still be there with the same hash. This catches what the head cannot without
 * the key: a chain rewritten with its hashes and head recomputed, or lines cut from the end.
 */
function checkAnchors(
  text: string,
  lines: string[],
  key: Buffer | undefined,
  problems: AuditProblem[],
): void {
  const anchors = text.split('\n').filter((l) => l.trim());
  if (anchors.length === 0) {
    problems.push({ code: 'bad_anchor', message: 'the anchor file holds no anchor' });
    return;
  }
  for (const [i, l] of anchors.entries()) {
    let a: AuditAnchor | undefined;
    try {
      a = JSON.parse(l) as AuditAnchor;
    } catch {
      a = undefined;
    }
    if (!a || !Number.isSafeInteger(a.seq) || a.seq < 0 || typeof a.hash !== 'string') {
      problems.push({ code: 'bad_anchor', message: `anchor ${i + 1} is not readable` });
      continue;
    }
    if (key) {
      const { mac, ...body } = a;
      if (!sameHex(mac, hmac(key, canonicalJson(body)))) {
        problems.push({
          code: 'bad_anchor',
          message: `anchor ${i + 1} has a wrong MAC: it was edited or forged`,
        });
        continue;
      }
    }
    if (a.seq >= lines.length) {
      problems.push({
        code: 'anchor_truncated',
        message: `anchor ${i + 1} (${a.ts}) records entry ${a.seq}, but the log has ${lines.length} entries: lines were removed from the end`,
      });
    } else if (sha256(lines[a.seq]) !== a.hash) {
      problems.push({
        line: a.seq + 1,
        code: 'anchor_mismatch',
        message: `line ${a.seq + 1} is not the line anchored at ${a.ts}: the log was rewritten up to there`,
      });
    }
  }
}

/** Verifies a log file and, unless `head` is false, the `.head` file beside it (which must exist). */
export function verifyAuditFile(
  file: string,
  opts: { head?: string | false; signingKey?: string | Buffer; anchor?: string; anchorText?: string } = {},
): AuditVerifyResult {
  const text = fs.readFileSync(file, 'utf8');
  const headFile = opts.head === false ? undefined : (opts.head ?? headPathFor(file));
  const head =
    headFile !== undefined && fs.existsSync(headFile) ? fs.readFileSync(headFile, 'utf8') : undefined;
  const fromFile = opts.anchor !== undefined ? fs.readFileSync(opts.anchor, 'utf8') : undefined;
  const anchors =
    fromFile === undefined && opts.anchorText === undefined
      ? undefined
      : [fromFile, opts.anchorText].filter((t) => t !== undefined).join('\n');
  return verifyAuditLog(text, {
    head,
    requireHead: headFile !== undefined,
    signingKey: opts.signingKey,
    anchors,
  });
}

/** Longest text kept whole in an audit line; longer ones keep a prefix, their length and a hash. */
export const AUDIT_MAX_TEXT = 256;
/** Largest `actions` kept whole in an audit line; a larger list keeps its count, a hash and the first. */
export const AUDIT_MAX_ACTIONS_JSON = 64 * 1024;

/** A text as the audit log keeps it: whole up to AUDIT_MAX_TEXT, else a prefix, its length and sha256. */
export function boundText(text: string): string {
  if (text.length <= AUDIT_MAX_TEXT) return text;
  return `${text.slice(0, 64)}… [${text.length} characters, sha256 ${sha256(text)}]`;
}

/** Whether a value holds a text (or key) longer than AUDIT_MAX_TEXT. */
function hasLongText(v: unknown): boolean {
  if (typeof v === 'string') return v.length > AUDIT_MAX_TEXT;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (hasLongText(v[i])) return true;
    return false;
  }
  if (typeof v === 'object' && v !== null) {
    const keys = Object.keys(v);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (k.length > AUDIT_MAX_TEXT || hasLongText((v as Record<string, unknown>)[k])) return true;
    }
  }
  return false;
}

function bound(v: unknown): unknown {
  if (!hasLongText(v)) return v;
  return boundCopy(v);
}

function boundCopy(v: unknown): unknown {
  if (typeof v === 'string') return boundText(v);
  if (Array.isArray(v)) return v.map(boundCopy);
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const key = boundText(k);
      if (key === '__proto__')
        Object.defineProperty(out, key, {
          value: boundCopy(x),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      else out[key] = boundCopy(x);
    }
    return out;
  }
  return v;
}

/**
 * What the audit log records of a decision: enough to reconstruct it, never the signing key or MACs.
 * Every text is bounded (a 10 MB action name is recorded as a prefix, its length and its sha256), so
 * a line stays small whatever the request held.
 */
export function decisionRecord(
  event: 'request' | 'approval' | 'approval_expired',
  d: Decision,
  extra: { node?: string; msgid?: string; approvalId?: string; approver?: string; comment?: string } = {},
): Record<string, unknown> {
  const bounded = bound(d.actions);
  // Signed actions were written as canonical JSON when they were signed: that text, as it is.
  let actions: unknown = new RawJson(
    bounded === d.actions ? `[${d.actions.map(canonicalSignedJson).join(',')}]` : canonicalJson(bounded),
  );
  if ((actions as RawJson).text.length > AUDIT_MAX_ACTIONS_JSON) {
    actions = {
      count: d.actions.length,
      sha256: sha256(canonicalJson(d.actions)),
      first: (bounded as unknown[])[0],
    };
  }
  const record: Record<string, unknown> = {
    event,
    decision: d.outcome,
    kind: d.kind,
    policyHash: d.policyHash,
    actions,
    reasons: bound(d.reasons),
    signatures: d.signed.map((s) => ({ nonce: s.signature.nonce, expires: s.signature.expires })),
  };
  for (const [k, v] of Object.entries(extra)) if (typeof v === 'string') record[k] = boundText(v);
  return record;
}
