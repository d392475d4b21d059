import type { RateLimitRule } from './policy';

interface BucketState {
  tokens: number;
  at: number;
  limit: RateLimitRule;
}

/**
 * Token buckets keyed by action / device. A bucket that has refilled to capacity holds no
 * information, so it is the one dropped when the table is full; if none is full the caller is told
 * there is no room, and refuses rather than forget a bucket that is still limiting something.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, BucketState>();

  constructor(private readonly maxKeys = 10000) {}

  available(key: string, limit: RateLimitRule, now: number): number {
    const b = this.buckets.get(key);
    if (!b) return limit.capacity;
    const elapsed = Math.max(0, now - b.at) / 1000;
    return Math.min(limit.capacity, b.tokens + elapsed * limit.refillPerSecond);
  }

  /** Seconds until `n` tokens are available. */
  waitSeconds(key: string, limit: RateLimitRule, n: number, now: number): number {
    const missing = n - this.available(key, limit, now);
    return missing <= 0 ? 0 : missing / limit.refillPerSecond;
  }

  hasRoom(keys: readonly string[], now: number): boolean {
    const fits = () => this.buckets.size + keys.filter((k) => !this.buckets.has(k)).length <= this.maxKeys;
    if (fits()) return true;
    for (const [k, b] of this.buckets) {
      if (this.available(k, b.limit, now) >= b.limit.capacity) this.buckets.delete(k);
    }
    return fits();
  }

  take(key: string, limit: RateLimitRule, n: number, now: number): void {
    this.buckets.set(key, { tokens: this.available(key, limit, now) - n, at: now, limit });
  }

  get size(): number {
    return this.buckets.size;
  }
}

export interface Setpoint {
  value: number;
  at: number;
}

/** Last approved value of each rate-of-change-limited parameter, per action and device. */
export class SetpointTracker {
  private readonly points = new Map<string, Setpoint>();

  constructor(private readonly maxKeys = 10000) {}

  get(key: string): Setpoint | undefined {
    return this.points.get(key);
  }

  /** Forgetting a set-point would let the next value jump freely, so a full table refuses new keys. */
  hasRoom(keys: readonly string[]): boolean {
    return this.points.size + keys.filter((k) => !this.points.has(k)).length <= this.maxKeys;
  }

  set(key: string, point: Setpoint): void {
    this.points.set(key, point);
  }
}

export function setpointKey(action: string, device: string | undefined, param: string): string {
  return JSON.stringify([action, device ?? null, param]);
}
