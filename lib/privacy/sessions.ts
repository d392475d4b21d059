import { randomBytes } from 'node:crypto';
import { isPseudonymMap, type PseudonymMap } from './operators';

/** Where session records live: Node-RED's flow context, or a Map in tests. */
export interface SessionStorage {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
}

export interface SessionLimits {
  /** Sessions kept; the least recently used go first. */
  maxSessions: number;
  /** A session unused for this long is removed, and its placeholders restore nothing. */
  ttlMs: number;
  /** Pseudonyms kept per session; the oldest go first (their placeholders then restore nothing). */
  maxTokens: number;
  /** Requests remembered per session (what each gave the model); the oldest go first. */
  maxRequests: number;
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = {
  maxSessions: 1000,
  ttlMs: 60 * 60 * 1000,
  maxTokens: 10_000,
  maxRequests: 100,
};

/** One session's pseudonyms and, per request, the tokens that request gave the model. */
export interface SessionRecord extends PseudonymMap {
  touched: number;
  requests: Record<string, { at: number; tokens: string[] }>;
}

/** What travels on the message instead of the originals: which request of which session it is. */
export interface RequestBinding {
  version: 1;
  session: string;
  request: string;
}

export function isRequestBinding(v: unknown): v is RequestBinding {
  const b = v as RequestBinding;
  return (
    typeof v === 'object' &&
    v !== null &&
    b.version === 1 &&
    typeof b.session === 'string' &&
    typeof b.request === 'string'
  );
}

const INDEX = 'privacy-guard:sessions';

/**
 * Pseudonym maps shared by the messages of a session (store "flow"), bound by count and age. Restore
 * puts back only what one request gave the model: a placeholder a user typed, or one from another
 * request or session, restores nothing.
 */
export class SessionMaps {
  constructor(
    private readonly storage: SessionStorage,
    private readonly limits: SessionLimits = DEFAULT_SESSION_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** The session's map to pseudonymise with (empty when new or expired). */
  load(key: string): PseudonymMap | undefined {
    const r = this.storage.get(key) as SessionRecord | undefined;
    if (!isPseudonymMap(r)) return undefined;
    if (typeof r.touched === 'number' && this.now() - r.touched > this.limits.ttlMs) return undefined;
    return r;
  }

  /** Saves the session's map after a request and returns the binding for the message. */
  save(key: string, map: PseudonymMap, used: ReadonlySet<string>): RequestBinding {
    const now = this.now();
    const old = this.load(key) as SessionRecord | undefined;
    const requests: SessionRecord['requests'] = {};
    for (const [id, r] of Object.entries(old?.requests ?? {})) {
      if (now - r.at <= this.limits.ttlMs) requests[id] = r;
    }
    const request = randomBytes(16).toString('hex');
    requests[request] = { at: now, tokens: [...used] };
    const ids = Object.keys(requests);
    for (const id of ids.slice(0, Math.max(0, ids.length - this.limits.maxRequests))) delete requests[id];
    // Tokens are kept in the order they were issued: drop the oldest beyond the limit.
    const tokens: Record<string, string> = {};
    const entries = Object.entries(map.tokens);
    for (const [t, v] of entries.slice(Math.max(0, entries.length - this.limits.maxTokens))) tokens[t] = v;
    const record: SessionRecord = { version: 1, tokens, touched: now, requests };
    this.storage.set(key, record);
    this.touch(key, now);
    return { version: 1, session: key, request };
  }

  /** The originals a request may have back: its own tokens only, while its session lives. */
  forRequest(key: string, binding: unknown): { map: PseudonymMap; only: Set<string> } | undefined {
    if (!isRequestBinding(binding) || binding.session !== key) return undefined;
    const r = this.load(key) as SessionRecord | undefined;
    const req = r?.requests?.[binding.request];
    if (!r || !req || this.now() - req.at > this.limits.ttlMs) return undefined;
    return { map: r, only: new Set(req.tokens) };
  }

  /** Records use of a session and removes sessions past the age or count limit. */
  private touch(key: string, now: number): void {
    const raw = this.storage.get(INDEX);
    const index: Record<string, number> =
      raw && typeof raw === 'object' ? { ...(raw as Record<string, number>) } : {};
    delete index[key];
    index[key] = now;
    const keys = Object.keys(index);
    for (const k of keys) {
      if (now - index[k] > this.limits.ttlMs) {
        this.storage.set(k, undefined);
        delete index[k];
      }
    }
    const left = Object.keys(index);
    for (const k of left.slice(0, Math.max(0, left.length - this.limits.maxSessions))) {
      this.storage.set(k, undefined);
      delete index[k];
    }
    this.storage.set(INDEX, index);
  }
}
