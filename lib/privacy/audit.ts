import { createHmac } from 'node:crypto';
import { appendFile } from 'node:fs/promises';
import { keyedHash } from './operators';

/** One line of the audit trail. Holds no original value, only a keyed hash of the whole input. */
export interface AuditRecord {
  time: string;
  node: string;
  mode: 'protect' | 'restore';
  /** HMAC-SHA256 of the scanned input, so an auditor holding the key can tie a record to a message. */
  inputHash: string;
  counts: Record<string, number>;
  total: number;
  /** Why the message was blocked, when it was; reasons name types and limits, never values. */
  blocked?: string;
}

/** Characters of JSON text made in one piece: a long string is escaped a piece at a time. */
const PIECE = 65_536;

/** JSON of one string, in pieces never cut between the two halves of a surrogate pair. */
function* stringPieces(s: string): Generator<string, void, void> {
  if (s.length <= PIECE) {
    yield JSON.stringify(s);
    return;
  }
  yield '"';
  for (let at = 0; at < s.length;) {
    let end = Math.min(s.length, at + PIECE);
    const c = s.charCodeAt(end - 1);
    if (end < s.length && c >= 0xd800 && c <= 0xdbff) end++;
    yield JSON.stringify(s.slice(at, end)).slice(1, -1);
    at = end;
  }
  yield '"';
}

/**
 * The JSON text of stableStringify() in pieces of at most a few tens of kilobytes each, so that a
 * message of megabytes is serialised (and hashed) between turns of the event loop.
 */
export function* stableStringifyPieces(value: unknown): Generator<string, void, void> {
  const seen = new Set<object>();
  function* walk(v: unknown): Generator<string, void, void> {
    if (v === undefined) return yield 'null';
    if (typeof v === 'bigint') return yield JSON.stringify(v.toString());
    if (typeof v === 'function' || typeof v === 'symbol') return yield JSON.stringify(String(v));
    if (typeof v === 'string') return yield* stringPieces(v);
    if (typeof v !== 'object' || v === null) return yield JSON.stringify(v) ?? 'null';
    if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
      const bytes = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      yield '"base64:';
      // Whole groups of three bytes: the pieces of base64 join into the base64 of the whole.
      const step = (PIECE / 4) * 3;
      for (let at = 0; at < bytes.length; at += step)
        yield JSON.stringify(bytes.subarray(at, at + step).toString('base64')).slice(1, -1);
      return yield '"';
    }
    if (v instanceof Date) return yield JSON.stringify(v.toISOString?.() ?? String(v));
    if (seen.has(v)) return yield '"[cycle]"';
    seen.add(v);
    if (Array.isArray(v)) {
      yield '[';
      for (let i = 0; i < v.length; i++) {
        if (i > 0) yield ',';
        yield* walk(v[i]);
      }
      yield ']';
    } else {
      const rec = v as Record<string, unknown>;
      yield '{';
      let first = true;
      for (const k of Object.keys(rec).sort()) {
        yield (first ? '' : ',') + JSON.stringify(k) + ':';
        first = false;
        yield* walk(rec[k]);
      }
      yield '}';
    }
    seen.delete(v);
  }
  yield* walk(value);
}

/** JSON text of any value, cycles and buffers included, with keys in a stable order. */
export function stableStringify(value: unknown): string {
  let out = '';
  for (const piece of stableStringifyPieces(value)) out += piece;
  return out;
}

export interface AuditInput {
  key: Buffer;
  node: string;
  mode: 'protect' | 'restore';
  input: unknown;
  counts: Record<string, number>;
  blocked?: string;
  now?: Date;
}

export function auditRecord(opts: AuditInput): AuditRecord {
  let inputHash: string;
  try {
    inputHash = keyedHash(opts.key, stableStringify(opts.input));
  } catch {
    inputHash = 'unhashable';
  }
  return record(opts, inputHash);
}

/** How long the hash works before it lets the event loop run. */
const AUDIT_SLICE_MS = 10;

/** auditRecord() for large input: serialised and hashed in pieces, with the event loop let run between. */
export async function auditRecordAsync(opts: AuditInput): Promise<AuditRecord> {
  const hmac = createHmac('sha256', opts.key);
  let sliceStart = performance.now();
  try {
    for (const piece of stableStringifyPieces(opts.input)) {
      hmac.update(piece, 'utf8');
      if (performance.now() - sliceStart >= AUDIT_SLICE_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
    }
  } catch {
    return record(opts, 'unhashable');
  }
  return record(opts, hmac.digest('hex'));
}

function record(opts: AuditInput, inputHash: string): AuditRecord {
  const total = Object.values(opts.counts).reduce((a, b) => a + b, 0);
  const out: AuditRecord = {
    time: (opts.now ?? new Date()).toISOString(),
    node: opts.node,
    mode: opts.mode,
    inputHash,
    counts: opts.counts,
    total,
  };
  if (opts.blocked !== undefined) out.blocked = opts.blocked;
  return out;
}

/**
 * Appends records to a JSON-lines file in order. Write errors go to `onError` and never reach
 * the message flow; close() waits for what is queued.
 */
export class JsonLinesAuditWriter {
  private tail: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly onError: (err: Error) => void,
  ) {}

  write(record: AuditRecord): void {
    const line = JSON.stringify(record) + '\n';
    this.tail = this.tail
      .then(() => appendFile(this.path, line, { encoding: 'utf8', mode: 0o600 }))
      .catch((err) => {
        this.onError(err as Error);
      });
  }

  close(): Promise<void> {
    return this.tail;
  }
}
