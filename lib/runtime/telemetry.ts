import { readFile } from 'node:fs/promises';
import { redactUrl } from '../util/redact';
import type { RuntimeMetrics } from './metrics';
import type { ModelInfo } from './runtime';

/**
 * What a runtime tells a fleet's monitoring, at an interval: numbers and names only. It is built
 * field by field from the metrics, never by copying an object, so that nothing a request carried
 * (a prompt, an answer, an error message that quotes either) can reach it.
 */
export interface TelemetryRecord {
  /** ISO time of the sample. */
  ts: string;
  /** The llm-runtime config node: its id and name. */
  runtime: { id: string; name: string };
  backend: 'child' | 'in-process' | 'server';
  /** The lease's state: loading, ready, error, ... */
  state: string;
  model: { source: string; name?: string; version?: string; sha256?: string };
  queue: { queued: number; active: number; sequences: number; limit?: number };
  requests: number;
  errors: number;
  rejected: number;
  tokensIn: number;
  tokensOut: number;
  tokensPerSecond: number;
  ttftMs: { p50: number; p95: number };
  latencyMs: { p50: number; p95: number };
  /** Resident memory in bytes: Node-RED's process, and the runtime child's where there is one. */
  memory: { nodeRedRss: number; runtimeRss?: number };
  uptimeS: number;
}

export interface TelemetrySample {
  runtime: { id: string; name: string };
  backend: TelemetryRecord['backend'];
  state: string;
  source: string;
  modelInfo?: ModelInfo;
  sha256?: string;
  metrics?: RuntimeMetrics;
  queueLimit?: number;
  runtimeRss?: number;
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v.slice(0, 200) : undefined);

export function telemetryRecord(sample: TelemetrySample, now = new Date()): TelemetryRecord {
  const m = sample.metrics;
  return {
    ts: now.toISOString(),
    runtime: { id: String(sample.runtime.id), name: String(sample.runtime.name ?? '') },
    backend: sample.backend,
    state: String(sample.state),
    model: {
      source: redactUrl(sample.source),
      name: str(sample.modelInfo?.name),
      version: str(sample.modelInfo?.version),
      sha256: str(sample.sha256),
    },
    queue: {
      queued: num(m?.queued),
      active: num(m?.active),
      sequences: num(m?.sequences),
      ...(sample.queueLimit !== undefined ? { limit: num(sample.queueLimit) } : {}),
    },
    requests: num(m?.requests),
    errors: num(m?.errors),
    rejected: num(m?.rejected),
    tokensIn: num(m?.tokensIn),
    tokensOut: num(m?.tokensOut),
    tokensPerSecond: num(m?.tokensPerSecond),
    ttftMs: { p50: num(m?.ttftMsP50), p95: num(m?.ttftMsP95) },
    latencyMs: { p50: num(m?.latencyMsP50), p95: num(m?.latencyMsP95) },
    memory: {
      nodeRedRss: process.memoryUsage.rss(),
      ...(sample.runtimeRss !== undefined ? { runtimeRss: sample.runtimeRss } : {}),
    },
    uptimeS: Math.round(process.uptime()),
  };
}

/** VmRSS of another process in bytes (Linux), or undefined where /proc does not say. */
export async function processRss(pid: number | undefined): Promise<number | undefined> {
  if (!pid) return undefined;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : undefined;
}

export interface TelemetryOptions {
  intervalMs: number;
  sample: () => Promise<TelemetrySample> | TelemetrySample;
  /** Sends one record; a broker that is away makes it throw, and that interval's record is dropped. */
  publish: (payload: string) => Promise<void>;
  onError?: (err: Error) => void;
}

/**
 * Publishes a record every interval. Records are not queued while the broker is away: the next
 * one holds the totals, and a gateway offline for a day must not flood its broker on return.
 */
export class TelemetryPublisher {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(private readonly options: TelemetryOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), Math.max(1000, this.options.intervalMs));
    this.timer.unref();
  }

  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const record = telemetryRecord(await this.options.sample());
      await this.options.publish(JSON.stringify(record));
    } catch (err) {
      this.options.onError?.(err as Error);
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
