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

export function auditRecord(opts: {
  key: Buffer;
  node: string;
  mode: 'protect' | 'restore';
  input: unknown;
  counts: Record<string, number>;
  blocked?: string;
  now?: Date;
}): AuditRecord {
  let inputHash: string;
  try {
    inputHash = keyedHash(opts.key, stableStringify(opts.input));
  } catch {
    inputHash = 'unhashable';
  }
  const total = Object.values(opts.counts).reduce((a, b) => a + b, 0);
  const record: AuditRecord = {
    time: (opts.now ?? new Date()).toISOString(),
    node: opts.node,
    mode: opts.mode,
    inputHash,
    counts: opts.counts,
    total,
  };
  if (opts.blocked !== undefined) record.blocked = opts.blocked;
  return record;
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
