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

/** JSON text of any value, cycles and buffers included, with keys in a stable order. */
export function stableStringify(value: unknown): string {
  const seen = new Set<object>();
  const walk = (v: unknown): string => {
    if (v === undefined) return 'null';
    if (typeof v === 'bigint') return JSON.stringify(v.toString());
    if (typeof v === 'function' || typeof v === 'symbol') return JSON.stringify(String(v));
    if (typeof v !== 'object' || v === null) return JSON.stringify(v) ?? 'null';
    if (Buffer.isBuffer(v) || v instanceof Uint8Array)
      return JSON.stringify('base64:' + Buffer.from(v).toString('base64'));
    if (v instanceof Date) return JSON.stringify(v.toISOString?.() ?? String(v));
    if (seen.has(v)) return '"[cycle]"';
    seen.add(v);
    let out: string;
    if (Array.isArray(v)) out = '[' + v.map(walk).join(',') + ']';
    else {
      const rec = v as Record<string, unknown>;
      out =
        '{' +
        Object.keys(rec)
          .sort()
          .map((k) => JSON.stringify(k) + ':' + walk(rec[k]))
          .join(',') +
        '}';
    }
    seen.delete(v);
    return out;
  };
  return walk(value);
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

const HASH_PIECE = 262_144;

/** auditRecord() for large input: the hash is fed in pieces with the event loop let run between. */
export async function auditRecordAsync(opts: AuditInput): Promise<AuditRecord> {
  let text: string;
  try {
    text = stableStringify(opts.input);
  } catch {
    return record(opts, 'unhashable');
  }
  const hmac = createHmac('sha256', opts.key);
  for (let at = 0; at < text.length;) {
    let end = Math.min(text.length, at + HASH_PIECE);
    // Never between the two halves of a surrogate pair: the UTF-8 bytes must be those of the whole.
    const c = text.charCodeAt(end - 1);
    if (end < text.length && c >= 0xd800 && c <= 0xdbff) end++;
    hmac.update(text.slice(at, end), 'utf8');
    at = end;
    if (at < text.length) await new Promise<void>((resolve) => setImmediate(resolve));
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
