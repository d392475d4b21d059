import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChatMessage } from '../runtime';
import { Sealer, TEMP_MARK, syncFile, writeAtomic, writeAtomicSync } from './files';
import { SessionError, canTransition, checkTransition, type MissionState } from './state';
import { estimateTokens, messageTokens, turnsOf, type CountTokens } from './window';

/** What a mission carries besides its state; all of it the flow's own data. */
export interface MissionUpdate {
  spec?: unknown;
  plan?: unknown;
  step?: number;
  feedback?: unknown;
  data?: Record<string, unknown>;
}

export interface Mission extends MissionUpdate {
  state: MissionState;
  /** When the mission entered this state (ms since the epoch). */
  since: number;
}

/** A KV-cache snapshot of the conversation, valid only for the model file with this sha256. */
export interface SnapshotRef {
  /** File name inside the store's `kv` folder. */
  file: string;
  modelSha256: string;
  tokens?: number;
  bytes: number;
}

export interface SessionRecord {
  key: string;
  /** Stable file-safe id of the key; also a good `affinity` for the runtime's scheduler. */
  id: string;
  created: number;
  updated: number;
  /** Last read or write: what least-recently-used eviction and idle expiry go by. */
  used: number;
  /** Position in the order of use, which a millisecond clock cannot always tell apart. */
  order: number;
  conversation: ChatMessage[];
  mission: Mission;
  snapshot?: SnapshotRef;
}

/** What the admin endpoint and the node's `list` show: no conversation text, no mission data. */
export interface SessionSummary {
  key: string;
  state: MissionState;
  since: number;
  turns: number;
  tokens: number;
  bytes: number;
  snapshotBytes: number;
  created: number;
  updated: number;
  used: number;
}

export interface SessionStoreOptions {
  /** Folder of this store; created if missing. */
  dir: string;
  /** Most sessions kept; the least recently used beyond it is evicted. Default 1000. */
  maxSessions?: number;
  /** Most tokens of conversation kept per session; the oldest turns go first. Default 4096. */
  maxTokens?: number;
  /** A session unused this long is removed; 0 keeps sessions until evicted. Default 7 days. */
  idleMs?: number;
  /** Bytes of KV snapshots on disk; the least recently used go first; 0 disables them. Default 256 MiB. */
  snapshotBytes?: number;
  /** Passphrase for AES-256-GCM at rest; a store written with one opens only with the same one. */
  encryptionKey?: string;
  /** Tokens of a text, for the conversation bound; default `estimateTokens`. */
  countTokens?: CountTokens;
  /** How often idle sessions are looked for; default a tenth of `idleMs`, at most a minute. */
  sweepMs?: number;
}

interface StoreMeta {
  v: 1;
  created: number;
  encryption: null | { salt: string; check: string };
  /**
   * sha256 of the fields above: tells a damaged store.json from a wrong key (both would fail the
   * key check). Stores written before it get it at their next open with the right key.
   */
  sum?: string;
}

function metaSum(meta: Pick<StoreMeta, 'v' | 'created' | 'encryption'>): string {
  return createHash('sha256')
    .update(JSON.stringify({ v: meta.v, created: meta.created, encryption: meta.encryption }))
    .digest('hex');
}

const META = 'store.json';
const CHECK_NAME = 'store-check';
const CHECK_TEXT = 'edge-llm session store';
const WRITE_CONCURRENCY = 16;

/**
 * Sessions of one kv-session-store: a conversation, a mission's state and data, and a KV snapshot
 * per key, bounded in count, tokens, idle time and snapshot bytes, and kept on disk one file per
 * session. Every change is applied in memory at once and written behind, coalesced per session,
 * atomically (temporary file, fsync, rename); `flush()` waits for the writes.
 *
 * Events: `change` (after any change of sessions or states), `problem` (a message for the log).
 */
export class SessionStore extends EventEmitter {
  readonly dir: string;
  readonly maxSessions: number;
  readonly maxTokens: number;
  readonly idleMs: number;
  readonly snapshotBytes: number;
  readonly encrypted: boolean;
  /** Files that could not be read when the store opened; they are left where they are. */
  readonly problems: string[] = [];
  /** Sessions (by id) whose file could not be read: never overwritten, refused until cleared. */
  private readonly unreadable = new Map<string, string>();
  private readonly sessionsDir: string;
  private readonly kvDir: string;
  private readonly countTokens: CountTokens;
  private readonly sealer: Sealer | undefined;
  /** In least-recently-used order: the first entry is evicted first. */
  private readonly records = new Map<string, SessionRecord>();
  private readonly tokens = new Map<string, number>();
  private readonly dirty = new Set<string>();
  /** Read since last written: their `used` time is written at close, not on every read. */
  private readonly touched = new Set<string>();
  private readonly failures: Error[] = [];
  private draining: Promise<void> | undefined;
  private lastOrder = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(options: SessionStoreOptions, sealer: Sealer | undefined) {
    super();
    const whole = (v: number | undefined, fallback: number, min: number): number =>
      v === undefined ? fallback : Number.isFinite(v) && v >= min ? Math.floor(v) : badOption(v, min);
    this.dir = options.dir;
    this.maxSessions = whole(options.maxSessions, 1000, 1);
    this.maxTokens = whole(options.maxTokens, 4096, 16);
    this.idleMs = whole(options.idleMs, 7 * 24 * 3600_000, 0);
    this.snapshotBytes = whole(options.snapshotBytes, 256 * 2 ** 20, 0);
    this.countTokens = options.countTokens ?? estimateTokens;
    this.sealer = sealer;
    this.encrypted = sealer !== undefined;
    this.sessionsDir = path.join(this.dir, 'sessions');
    this.kvDir = path.join(this.dir, 'kv');
    if (this.idleMs > 0) {
      const every = options.sweepMs ?? Math.min(60_000, Math.max(1000, Math.floor(this.idleMs / 10)));
      this.sweeper = setInterval(() => this.sweep(), every);
      this.sweeper.unref();
    }
  }

  /**
   * Opens (or creates) the store in `options.dir` and reads its sessions. Throws a SessionError
   * `wrong_key` / `no_key` when the encryption key does not match the store, and reads nothing then.
   */
  static open(options: SessionStoreOptions): SessionStore {
    fs.mkdirSync(path.join(options.dir, 'sessions'), { recursive: true });
    fs.mkdirSync(path.join(options.dir, 'kv'), { recursive: true });
    const sealer = openMeta(options.dir, options.encryptionKey);
    const store = new SessionStore(options, sealer);
    store.load();
    return store;
  }

  get size(): number {
    return this.records.size;
  }

  has(key: string): boolean {
    return this.live(checkKey(key)) !== undefined;
  }

  /**
   * The session of `key`, as a copy: a new Idle session with no conversation when there is none.
   * Reading counts as use for eviction and expiry.
   */
  get(key: string): SessionRecord {
    this.readable(checkKey(key));
    const record = this.live(key);
    if (!record) return this.fresh(key);
    this.touch(record);
    return structuredClone(record);
  }

  keys(): string[] {
    return [...this.records.values()].map((r) => r.key);
  }

  /** Adds a user text and its answer, bounds the conversation, and records the turn's KV snapshot. */
  async appendTurn(
    key: string,
    userText: string,
    assistantText: string,
    snapshot: { snapshotFile?: string; modelSha256?: string; tokens?: number } = {},
  ): Promise<SessionRecord> {
    const record = this.ensure(checkKey(key));
    record.conversation.push(
      { role: 'user', content: userText },
      { role: 'assistant', content: assistantText },
    );
    this.bound(record);
    const file = snapshot.snapshotFile;
    if (file && snapshot.modelSha256 && this.snapshotsEnabled) {
      if (path.dirname(path.resolve(file)) !== path.resolve(this.kvDir)) {
        throw new SessionError(
          'bad_snapshot',
          `The snapshot ${file} is not in this store's folder ${this.kvDir}.`,
        );
      }
      try {
        await syncFile(file);
        const bytes = (await fs.promises.stat(file)).size;
        this.dropSnapshot(record, path.basename(file));
        record.snapshot = {
          file: path.basename(file),
          modelSha256: snapshot.modelSha256,
          bytes,
          ...(snapshot.tokens !== undefined ? { tokens: snapshot.tokens } : {}),
        };
        this.boundSnapshots();
      } catch (err) {
        // A snapshot that cannot be kept only costs a re-read of the history next time.
        this.problem(`The KV snapshot ${file} was not kept: ${(err as Error).message}`);
      }
    }
    this.changed(record);
    await this.flush();
    return structuredClone(record);
  }

  /** Moves the mission to `to`, merging `update`; throws a SessionError for a transition not allowed. */
  transition(key: string, to: MissionState, update: MissionUpdate = {}): SessionRecord {
    const existing = this.live(checkKey(key));
    const from = existing?.mission.state ?? 'Idle';
    const state = checkTransition(from, to, key);
    const record = existing ?? this.ensure(key);
    const now = Date.now();
    const kept = state === 'Idle' ? {} : { ...record.mission };
    record.mission = { ...kept, ...cleanUpdate(update), state, since: now };
    this.changed(record);
    return structuredClone(record);
  }

  /**
   * Moves the mission along the states of `path` that are allowed from where it is (for example
   * Idle → ReceiveCmd → Parse), then merges `update`: for nodes that advance a mission as a side
   * effect, where a mission in another state must keep it rather than fail the message.
   */
  advance(key: string, path: readonly MissionState[], update: MissionUpdate = {}): SessionRecord {
    let state = this.live(checkKey(key))?.mission.state ?? 'Idle';
    for (const next of path) {
      if (canTransition(state, next)) {
        this.transition(key, next);
        state = next;
      }
    }
    return this.update(key, update);
  }

  /** Merges `update` into the mission without changing its state. */
  update(key: string, update: MissionUpdate): SessionRecord {
    const record = this.ensure(checkKey(key));
    record.mission = { ...record.mission, ...cleanUpdate(update) };
    this.changed(record);
    return structuredClone(record);
  }

  /**
   * Forgets a session, its conversation and its snapshot. The file of a session that could not be
   * read is kept beside, renamed `<id>.json.unreadable-<time>`, for whoever looks into it.
   */
  delete(key: string): boolean {
    const id = idOf(checkKey(key));
    if (this.unreadable.has(id)) {
      const file = path.join(this.sessionsDir, `${id}.json`);
      fs.renameSync(file, `${file}.unreadable-${Date.now()}`);
      this.unreadable.delete(id);
      this.emit('change');
      return true;
    }
    const record = this.records.get(id);
    if (!record) return false;
    this.remove(record);
    this.emit('change');
    return true;
  }

  /**
   * The KV snapshot files for the next generation of this session on the model with `modelSha256`:
   * `load` only when the stored snapshot was made by exactly that model file. Undefined when
   * snapshots are off (no byte budget, an encrypted store, or a model of unknown identity).
   */
  snapshotFor(
    record: Pick<SessionRecord, 'id' | 'snapshot'>,
    modelSha256: string,
  ): { load?: string; save: string } | undefined {
    if (!this.snapshotsEnabled || !/^[0-9a-f]{64}$/.test(modelSha256)) return undefined;
    const save = path.join(
      this.kvDir,
      `${record.id}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}.kv`,
    );
    const stored = this.records.get(record.id)?.snapshot;
    if (stored && stored.modelSha256 === modelSha256 && fs.existsSync(path.join(this.kvDir, stored.file))) {
      return { load: path.join(this.kvDir, stored.file), save };
    }
    return { save };
  }

  /** Removes a snapshot file that `snapshotFor` named but whose generation failed. */
  async discardSnapshot(file: string): Promise<void> {
    if (path.dirname(path.resolve(file)) !== path.resolve(this.kvDir)) return;
    const name = path.basename(file);
    if ([...this.records.values()].some((r) => r.snapshot?.file === name)) return;
    await fs.promises.rm(file, { force: true });
  }

  get snapshotsEnabled(): boolean {
    return this.snapshotBytes > 0 && !this.encrypted;
  }

  summary(record: SessionRecord): SessionSummary {
    return {
      key: record.key,
      state: record.mission.state,
      since: record.mission.since,
      turns: turnsOf(record.conversation).length,
      tokens: this.tokens.get(record.id) ?? 0,
      bytes: Buffer.byteLength(JSON.stringify(record.conversation)),
      snapshotBytes: record.snapshot?.bytes ?? 0,
      created: record.created,
      updated: record.updated,
      used: record.used,
    };
  }

  list(): SessionSummary[] {
    this.sweep();
    return [...this.records.values()].map((r) => this.summary(r));
  }

  /** Sessions per mission state, for a status line. */
  countByState(): Partial<Record<MissionState, number>> {
    const counts: Partial<Record<MissionState, number>> = {};
    for (const r of this.records.values()) counts[r.mission.state] = (counts[r.mission.state] ?? 0) + 1;
    return counts;
  }

  get totalSnapshotBytes(): number {
    let n = 0;
    for (const r of this.records.values()) n += r.snapshot?.bytes ?? 0;
    return n;
  }

  /** Removes sessions idle for longer than `idleMs`. */
  sweep(now = Date.now()): number {
    if (this.idleMs <= 0) return 0;
    let removed = 0;
    for (const record of [...this.records.values()]) {
      if (now - record.used > this.idleMs) {
        this.remove(record);
        removed++;
      }
    }
    if (removed > 0) this.emit('change');
    return removed;
  }

  /** Resolves once every change so far is on disk; rejects with the first write that failed. */
  async flush(): Promise<void> {
    while (this.draining || this.dirty.size > 0) await this.drain();
    const failure = this.failures.shift();
    this.failures.length = 0;
    if (failure) throw failure;
  }

  /** Writes what is pending and stops the idle sweep; the store refuses changes after. */
  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const id of this.touched) if (this.records.has(id)) this.dirty.add(id);
    this.touched.clear();
    await this.flush();
    this.closed = true;
    this.removeAllListeners();
  }

  private fresh(key: string): SessionRecord {
    const now = Date.now();
    return {
      key,
      id: idOf(key),
      created: now,
      updated: now,
      used: now,
      order: 0,
      conversation: [],
      mission: { state: 'Idle', since: now },
    };
  }

  private live(key: string): SessionRecord | undefined {
    const record = this.records.get(idOf(key));
    if (record && this.idleMs > 0 && Date.now() - record.used > this.idleMs) {
      this.remove(record);
      this.emit('change');
      return undefined;
    }
    return record;
  }

  /** Throws for a session whose file could not be read: its next turn must not overwrite it. */
  private readable(key: string): void {
    const reason = this.unreadable.get(idOf(key));
    if (reason === undefined) return;
    throw new SessionError(
      'unreadable',
      `The file of session "${key}" could not be read (${reason}); it is left as it is, and the session takes no changes until the file is restored or the session is cleared.`,
    );
  }

  private ensure(key: string): SessionRecord {
    if (this.closed) throw new SessionError('closed', 'The session store is closed.');
    this.readable(key);
    let record = this.live(key);
    if (!record) {
      record = this.fresh(key);
      this.records.set(record.id, record);
      this.tokens.set(record.id, 0);
      this.evict();
    }
    return record;
  }

  private touch(record: SessionRecord): void {
    record.used = Date.now();
    record.order = ++this.lastOrder;
    this.touched.add(record.id);
    this.records.delete(record.id);
    this.records.set(record.id, record);
    // A record that was evicted while its turn was generated comes back as the newest.
    this.evict();
  }

  private changed(record: SessionRecord): void {
    if (this.closed) throw new SessionError('closed', 'The session store is closed.');
    record.updated = Date.now();
    this.touch(record);
    this.dirty.add(record.id);
    void this.drain();
    this.emit('change');
  }

  private evict(): void {
    while (this.records.size > this.maxSessions) {
      const oldest = this.records.values().next().value as SessionRecord;
      this.remove(oldest);
    }
  }

  private remove(record: SessionRecord): void {
    this.records.delete(record.id);
    this.tokens.delete(record.id);
    this.dropSnapshot(record);
    this.dirty.add(record.id);
    void this.drain();
  }

  /** Drops the oldest turns until the conversation fits in `maxTokens`. */
  private bound(record: SessionRecord): void {
    const cost = (m: ChatMessage) => messageTokens(m, this.countTokens);
    let total = record.conversation.reduce((n, m) => n + cost(m), 0);
    while (total > this.maxTokens && record.conversation.length > 0) {
      // Drop the oldest whole turn: a user message and the answers that follow it.
      let end = 1;
      while (end < record.conversation.length && record.conversation[end].role !== 'user') end++;
      for (const m of record.conversation.splice(0, end)) total -= cost(m);
    }
    this.tokens.set(record.id, total);
  }

  private boundSnapshots(): void {
    let total = this.totalSnapshotBytes;
    for (const record of this.records.values()) {
      if (total <= this.snapshotBytes) break;
      if (!record.snapshot) continue;
      total -= record.snapshot.bytes;
      this.dropSnapshot(record);
      this.dirty.add(record.id);
    }
  }

  private dropSnapshot(record: SessionRecord, keep?: string): void {
    const file = record.snapshot?.file;
    delete record.snapshot;
    if (file && file !== keep)
      fs.promises.rm(path.join(this.kvDir, file), { force: true }).catch(() => undefined);
  }

  private drain(): Promise<void> {
    this.draining ??= (async () => {
      // Let the caller's synchronous changes land first, so they share one write.
      await Promise.resolve();
      while (this.dirty.size > 0) {
        const ids = [...this.dirty];
        this.dirty.clear();
        for (let i = 0; i < ids.length; i += WRITE_CONCURRENCY) {
          await Promise.all(ids.slice(i, i + WRITE_CONCURRENCY).map((id) => this.persist(id)));
        }
      }
    })().finally(() => (this.draining = undefined));
    return this.draining;
  }

  private async persist(id: string): Promise<void> {
    const file = path.join(this.sessionsDir, `${id}.json`);
    try {
      const record = this.records.get(id);
      if (!record) {
        await fs.promises.rm(file, { force: true });
        return;
      }
      const text = JSON.stringify({ v: 1, ...record });
      await writeAtomic(file, this.sealer ? this.sealer.seal(text, id) : text);
    } catch (err) {
      this.failures.push(err as Error);
      this.problem(`Session file ${file} was not written: ${(err as Error).message}`);
    }
  }

  private load(): void {
    const loaded: SessionRecord[] = [];
    for (const name of fs.readdirSync(this.sessionsDir)) {
      const file = path.join(this.sessionsDir, name);
      if (name.includes(TEMP_MARK)) {
        // What a crash left half-written: the record it was replacing is still in place.
        fs.rmSync(file, { force: true });
        continue;
      }
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -'.json'.length);
      try {
        const raw = fs.readFileSync(file, 'utf8');
        const record = parseRecord(this.sealer ? this.openSealed(raw, id) : raw);
        if (record.id !== id || idOf(record.key) !== id) throw new Error('its key does not match its name');
        loaded.push(record);
      } catch (err) {
        this.unreadable.set(id, (err as Error).message);
        this.problems.push(`${file}: ${(err as Error).message}`);
      }
    }
    loaded.sort((a, b) => a.used - b.used || (a.order ?? 0) - (b.order ?? 0));
    for (const record of loaded) {
      record.order = ++this.lastOrder;
      this.records.set(record.id, record);
      this.bound(record);
    }
    this.sweep();
    this.evict();
    if (!this.snapshotsEnabled) for (const r of this.records.values()) this.dropSnapshot(r);
    this.boundSnapshots();
    // Snapshots no session points at: generations that failed, or sessions removed before a crash.
    const referenced = new Set(
      [...this.records.values()].flatMap((r) => (r.snapshot ? [r.snapshot.file] : [])),
    );
    for (const name of fs.readdirSync(this.kvDir)) {
      if (!referenced.has(name)) fs.rmSync(path.join(this.kvDir, name), { force: true });
    }
    for (const r of this.records.values()) {
      if (r.snapshot && !fs.existsSync(path.join(this.kvDir, r.snapshot.file))) delete r.snapshot;
    }
  }

  /**
   * The store's key was checked against store.json when it opened: a session file that does not
   * open with it was changed or damaged after it was written (or copied from another store).
   */
  private openSealed(raw: string, id: string): string {
    try {
      return this.sealer!.open(raw, id);
    } catch (err) {
      if (err instanceof SessionError && err.code === 'wrong_key') {
        throw new SessionError(
          'tampered',
          'it fails its integrity check: it was changed or damaged after it was written, or sealed by another store (the store key is right)',
          { cause: err },
        );
      }
      throw err;
    }
  }

  private problem(message: string): void {
    this.emit('problem', message);
  }
}

function badOption(value: number, min: number): never {
  throw new RangeError(`A session store limit must be a number of at least ${min}, not ${value}.`);
}

export function idOf(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 32);
}

function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 1024) {
    throw new SessionError('bad_key', 'A session key must be a text of 1 to 1024 characters.');
  }
  return key;
}

function cleanUpdate(update: MissionUpdate): MissionUpdate {
  const out: MissionUpdate = {};
  if (update.spec !== undefined) out.spec = update.spec;
  if (update.plan !== undefined) out.plan = update.plan;
  if (update.step !== undefined) out.step = update.step;
  if (update.feedback !== undefined) out.feedback = update.feedback;
  if (update.data !== undefined) out.data = update.data;
  try {
    // What is kept must survive a restart: it is written as JSON, so it must be JSON now.
    JSON.stringify(out);
  } catch (err) {
    throw new SessionError(
      'bad_data',
      `The mission data cannot be stored: ${(err as Error).message.split('\n')[0]} (it must be plain JSON, without cycles).`,
      { cause: err },
    );
  }
  return structuredClone(out);
}

function parseRecord(text: string): SessionRecord {
  const value = JSON.parse(text) as SessionRecord & { v?: number };
  if (
    value.v !== 1 ||
    typeof value.key !== 'string' ||
    !Array.isArray(value.conversation) ||
    typeof value.mission?.state !== 'string'
  ) {
    throw new SessionError('corrupt', 'not a session record');
  }
  delete value.v;
  return value;
}

/** Reads or creates the store's meta file; returns the sealer when the store is encrypted. */
function openMeta(dir: string, key: string | undefined): Sealer | undefined {
  const file = path.join(dir, META);
  let meta: StoreMeta;
  try {
    meta = JSON.parse(fs.readFileSync(file, 'utf8')) as StoreMeta;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new SessionError(
        'corrupt',
        `The session store file ${file} is damaged and cannot be read (${(err as Error).message}); no session was read. Restore it from a backup: the key is not the problem.`,
        {
          cause: err,
        },
      );
    }
    if (fs.readdirSync(path.join(dir, 'sessions')).some((n) => n.endsWith('.json'))) {
      throw new SessionError(
        'corrupt',
        `${file} is missing but the store holds sessions: they are left unread.`,
      );
    }
    let encryption: StoreMeta['encryption'] = null;
    let sealer: Sealer | undefined;
    if (key) {
      const salt = randomBytes(16);
      sealer = new Sealer(key, salt);
      encryption = { salt: salt.toString('base64'), check: sealer.seal(CHECK_TEXT, CHECK_NAME) };
    }
    const fresh = { v: 1 as const, created: Date.now(), encryption };
    writeAtomicSync(file, JSON.stringify({ ...fresh, sum: metaSum(fresh) } satisfies StoreMeta));
    return sealer;
  }
  if (meta.sum !== undefined && meta.sum !== metaSum(meta)) {
    throw new SessionError(
      'corrupt',
      `The session store file ${file} is damaged (its checksum does not match its content); no session was read. Restore it from a backup: the key is not the problem.`,
    );
  }
  if (!meta.encryption) {
    if (key) {
      throw new SessionError(
        'wrong_key',
        `This session store (${dir}) was written without encryption, so it cannot be opened with a key: remove the key, or use a new store.`,
      );
    }
    return undefined;
  }
  if (!key) {
    throw new SessionError('no_key', `This session store (${dir}) is encrypted: enter its encryption key.`);
  }
  const sealer = new Sealer(key, Buffer.from(meta.encryption.salt, 'base64'));
  try {
    if (sealer.open(meta.encryption.check, CHECK_NAME) !== CHECK_TEXT) throw new Error('check text differs');
  } catch (err) {
    throw new SessionError(
      'wrong_key',
      `The encryption key is not the one this session store (${dir}) was written with; no session was read.`,
      { cause: err },
    );
  }
  if (meta.sum === undefined) {
    // Written before store.json had a checksum: add it now that the key has proved it sound.
    writeAtomicSync(file, JSON.stringify({ ...meta, sum: metaSum(meta) } satisfies StoreMeta));
  }
  return sealer;
}
