/** Rolling request statistics for one runtime: what the admin endpoint and the status show. */
export interface RuntimeMetrics {
  queued: number;
  active: number;
  sequences: number;
  requests: number;
  errors: number;
  rejected: number;
  tokensIn: number;
  tokensOut: number;
  /** Of tokensOut, the JSON tokens the grammar forced and jump-forward fed without sampling. */
  tokensForced?: number;
  /** Output tokens per second of decoding, over the recent window. */
  tokensPerSecond: number;
  ttftMsP50: number;
  ttftMsP95: number;
  latencyMsP50: number;
  latencyMsP95: number;
  /** Decode dispatches; with parallel requests one dispatch carries tokens of several sequences. */
  batches: number;
  /** llama.cpp decodes started: one carries a token of every sequence that is generating. */
  decodes?: number;
  /** Decode threads now, and how often the runtime changed the count with the machine's load. */
  threads?: number;
  threadSwitches?: number;
  lastError?: string;
}

/** What a runtime reports before it has served anything (or while it is not loaded). */
export const EMPTY_METRICS: Readonly<RuntimeMetrics> = Object.freeze({
  queued: 0,
  active: 0,
  sequences: 0,
  requests: 0,
  errors: 0,
  rejected: 0,
  tokensIn: 0,
  tokensOut: 0,
  tokensPerSecond: 0,
  ttftMsP50: 0,
  ttftMsP95: 0,
  latencyMsP50: 0,
  latencyMsP95: 0,
  batches: 0,
});

interface Sample {
  ttftMs: number;
  totalMs: number;
  decodeMs: number;
  tokensOut: number;
}

export class MetricsWindow {
  private readonly samples: Sample[] = [];
  requests = 0;
  errors = 0;
  rejected = 0;
  tokensIn = 0;
  tokensOut = 0;
  tokensForced = 0;
  batches = 0;
  lastError: string | undefined;

  constructor(private readonly size = 200) {}

  record(sample: Sample & { tokensIn: number; tokensForced?: number }): void {
    this.requests++;
    this.tokensIn += sample.tokensIn;
    this.tokensOut += sample.tokensOut;
    this.tokensForced += sample.tokensForced ?? 0;
    this.samples.push(sample);
    if (this.samples.length > this.size) this.samples.shift();
  }

  fail(message: string, rejected: boolean): void {
    if (rejected) this.rejected++;
    else this.errors++;
    this.lastError = message;
  }

  snapshot(live: { queued: number; active: number; sequences: number }): RuntimeMetrics {
    const decodeMs = this.samples.reduce((sum, s) => sum + s.decodeMs, 0);
    const tokens = this.samples.reduce((sum, s) => sum + s.tokensOut, 0);
    return {
      ...live,
      requests: this.requests,
      errors: this.errors,
      rejected: this.rejected,
      tokensIn: this.tokensIn,
      tokensOut: this.tokensOut,
      tokensForced: this.tokensForced,
      tokensPerSecond: decodeMs > 0 ? round((tokens * 1000) / decodeMs) : 0,
      ttftMsP50: percentile(
        this.samples.map((s) => s.ttftMs),
        0.5,
      ),
      ttftMsP95: percentile(
        this.samples.map((s) => s.ttftMs),
        0.95,
      ),
      latencyMsP50: percentile(
        this.samples.map((s) => s.totalMs),
        0.5,
      ),
      latencyMsP95: percentile(
        this.samples.map((s) => s.totalMs),
        0.95,
      ),
      batches: this.batches,
      lastError: this.lastError,
    };
  }
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]);
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
