import { LimitState } from './state';

/** A token bucket: `capacity` at once, refilled at `refillPerSecond`. */
export interface BucketLimit {
  capacity: number;
  refillPerSecond: number;
}

/** A sliding window: at most `max` in any `windowSeconds`. */
export interface WindowLimit {
  max: number;
  windowSeconds: number;
}

interface BucketValue {
  kind: 'bucket';
  tokens: number;
  at: number;
  capacity: number;
  refillPerSecond: number;
}

interface WindowValue {
  kind: 'window';
  /** Epoch ms of each approval still inside the window, oldest first. */
  times: number[];
  windowMs: number;
}

interface MissionValue {
  kind: 'mission';
  spent: Record<string, number>;
  at: number;
  forgetAfterMs: number;
}

export interface Setpoint {
  value: number;
  at: number;
}

/**
 * Everything the limits remember, in one LimitState (in memory or journalled on disk), bounded to
 * `maxKeys` entries. When full, entries that no longer limit anything are dropped first (a full
 * bucket, a window with nothing left in it, a mission idle past its time); if none can go, the
 * caller is told there is no room and refuses, rather than forget something still limiting.
 */
export class Limits {
  // Keys are the state's own, prefixed: `b:` a bucket, `w:` a window, `s:` a set-point (built once
  // by the caller, then used as they are); positions and missions take their device and mission id.
  constructor(
    readonly state: LimitState = LimitState.memory(),
    private readonly maxKeys = 10000,
  ) {}

  // ---- token buckets ----
  available(key: string, limit: BucketLimit, now: number): number {
    const b = this.state.get<BucketValue>(key);
    if (!b) return limit.capacity;
    const elapsed = Math.max(0, now - b.at) / 1000;
    return Math.min(limit.capacity, b.tokens + elapsed * limit.refillPerSecond);
  }

  /** Seconds until `n` tokens are available. */
  waitSeconds(key: string, limit: BucketLimit, n: number, now: number): number {
    const missing = n - this.available(key, limit, now);
    return missing <= 0 ? 0 : missing / limit.refillPerSecond;
  }

  take(key: string, limit: BucketLimit, n: number, now: number): void {
    this.state.set(key, {
      kind: 'bucket',
      tokens: this.available(key, limit, now) - n,
      at: now,
      capacity: limit.capacity,
      refillPerSecond: limit.refillPerSecond,
    } satisfies BucketValue);
  }

  // ---- sliding windows ----
  /** How many approvals fall inside the window ending now. */
  counted(key: string, limit: WindowLimit, now: number): number {
    const w = this.state.get<WindowValue>(key);
    if (!w) return 0;
    const from = now - limit.windowSeconds * 1000;
    let n = 0;
    for (const t of w.times) if (t > from) n++;
    return n;
  }

  /** Seconds until `n` more fit in the window. */
  windowWaitSeconds(key: string, limit: WindowLimit, n: number, now: number): number {
    const w = this.state.get<WindowValue>(key);
    const windowMs = limit.windowSeconds * 1000;
    const inside = (w?.times ?? []).filter((t) => t > now - windowMs);
    const over = inside.length + n - limit.max;
    if (over <= 0) return 0;
    if (over > inside.length) return Infinity;
    return (inside[over - 1] + windowMs - now) / 1000;
  }

  record(key: string, limit: WindowLimit, n: number, now: number): void {
    const windowMs = limit.windowSeconds * 1000;
    const w = this.state.get<WindowValue>(key);
    const times = (w?.times ?? []).filter((t) => t > now - windowMs);
    for (let i = 0; i < n; i++) times.push(now);
    this.state.set(key, {
      kind: 'window',
      times: times.slice(-limit.max),
      windowMs,
    } satisfies WindowValue);
  }

  // ---- set-points (rate of change) and positions ----
  setpoint(key: string): Setpoint | undefined {
    return this.state.get<Setpoint>(key);
  }

  setSetpoint(key: string, point: Setpoint): void {
    this.state.set(key, point);
  }

  position(device: string): string | undefined {
    return this.state.get<{ zone: string }>(`p:${device}`)?.zone;
  }

  setPosition(device: string, zone: string, now: number): void {
    this.state.set(`p:${device}`, { zone, at: now });
  }

  // ---- mission budgets ----
  spent(mission: string, budget: string): number {
    return this.state.get<MissionValue>(`m:${mission}`)?.spent[budget] ?? 0;
  }

  spend(mission: string, amounts: Map<string, number>, now: number, forgetAfterMs: number): void {
    const before = this.state.get<MissionValue>(`m:${mission}`);
    const spent = { ...(before?.spent ?? {}) };
    for (const [budget, amount] of amounts) spent[budget] = (spent[budget] ?? 0) + amount;
    this.state.set(`m:${mission}`, { kind: 'mission', spent, at: now, forgetAfterMs } satisfies MissionValue);
  }

  // ---- bound ----
  /** Whether `n` more keys fit even if all are new. */
  fits(n: number): boolean {
    return this.state.size + n <= this.maxKeys;
  }

  /** Whether `keys` (prefixed: `b:`, `w:`, `s:`, `p:`, `m:`) fit, dropping what no longer limits. */
  hasRoom(keys: readonly string[], now: number): boolean {
    const fits = () => this.state.size + keys.filter((k) => !this.state.has(k)).length <= this.maxKeys;
    if (fits()) return true;
    for (const k of [...this.state.keys()]) {
      const v = this.state.get<BucketValue | WindowValue | MissionValue>(k);
      if (!v || typeof v !== 'object' || !('kind' in v)) continue;
      const idle =
        v.kind === 'bucket'
          ? this.available(k, v, now) >= v.capacity
          : v.kind === 'window'
            ? v.times.every((t) => t <= now - v.windowMs)
            : now - v.at > v.forgetAfterMs;
      if (idle) this.state.delete(k);
    }
    return fits();
  }

  get size(): number {
    return this.state.size;
  }
}
