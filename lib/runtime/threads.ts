/**
 * The thread count of a running model, kept right while the machine's load changes.
 *
 * On a 2-core gateway two decode threads are up to twice as fast as one while the cores are free,
 * and tens of times slower as soon as anything else runs: ggml's workers spin at every barrier of
 * the graph and wait for a descheduled partner (bench/README.md, issue #13: the same model decoded
 * at 164 t/s with two threads when it was timed at load, at 0.9 t/s with two threads and 61 t/s with
 * one a minute later, while another job ran). A count timed once at load cannot hold, so the
 * governor watches the time of every decode step and moves between a low and a high count:
 *
 * - a step at the high count that takes several times its best, three steps running, drops to the
 *   low count at once (a collapse);
 * - after a while of decoding at one count (idle time does not count) it tries the other for a few
 *   steps and keeps whichever stepped faster for the same number of tokens; a try that loses waits
 *   twice as long before the next (up to a minute of decoding), so a steady machine pays a few
 *   slow steps per minute of decoding at most.
 *
 * Steps are compared only with steps of the same batch size (one token per generating sequence), by
 * the median of the last few: a shared virtual machine stalls for a step or two now and then, and an
 * average that took those in made one thread look faster than two on a quiet box (bench/README.md).
 */

/** Sets the thread count every following decode uses. */
export type ThreadKnob = (threads: number) => void;

export interface GovernorOptions {
  low: number;
  high: number;
  /** The count to start with (the one timed at load). */
  start: number;
  knob: ThreadKnob;
  now?: () => number;
  /**
   * The first wait before trying the other count, and the longest (ms of decoding). The first is
   * short: the count timed at load may be another moment's, and a lost try costs one step.
   */
  probeMinMs?: number;
  probeMaxMs?: number;
  /** Steps a try lasts. */
  probeSteps?: number;
}

interface StepStats {
  /** The last RECENT_STEPS step times (ms), oldest first. */
  recent: number[];
  count: number;
  best: number;
}

/** Steps whose median stands for a count's speed. */
const RECENT_STEPS = 9;

/**
 * A step longer than this is not compared (the process was stopped, the machine suspended). Idle
 * time never counts: the runtime says when no sequence generates (idle()).
 */
const MAX_STEP_MS = 30_000;
/**
 * A try ends at once when one of its steps takes this many times the steps it is compared with. On a
 * quiet 2-core box one thread mostly steps at 1.5–1.9× two threads' time, so a try of one thread there
 * usually costs one slow step, not six (a short request of 64 tokens paid 10 % for a six-step try,
 * bench/README.md).
 */
const PROBE_ABORT_FACTOR = 1.5;
/**
 * A step this many times its level's best, or LOW_FACTOR times what the low count steps in, counts
 * towards a collapse; three in a row make one.
 */
const COLLAPSE_FACTOR = 3;
const LOW_FACTOR = 2;
const COLLAPSE_STEPS = 3;
/** Steps a level needs before its best is trusted for the collapse rule. */
const MIN_STEPS = 4;

export class ThreadGovernor {
  level: number;
  /** Changes of count so far, and why the last one happened (metrics, bench). */
  switches = 0;
  lastReason = '';
  private readonly stats = new Map<string, StepStats>();
  private readonly now: () => number;
  private readonly probeMinMs: number;
  private readonly probeMaxMs: number;
  private readonly probeSteps: number;
  private probeWait: number;
  /** Decoding time spent at this count since it was set or last confirmed (idle time does not count). */
  private busyMs = 0;
  /** While trying the other count: the count it came from and the steps seen. */
  private probe: { from: number; steps: number } | undefined;
  private slowRun = 0;
  private last: { at: number; tokens: number; level: number } | undefined;

  constructor(private readonly options: GovernorOptions) {
    this.now = options.now ?? (() => performance.now());
    this.probeMinMs = options.probeMinMs ?? 1000;
    this.probeMaxMs = options.probeMaxMs ?? 60_000;
    this.probeSteps = options.probeSteps ?? 6;
    this.probeWait = this.probeMinMs;
    this.level = Math.min(Math.max(options.start, options.low), options.high);
    options.knob(this.level);
  }

  /**
   * Called as each decode starts, with its token count; `generation`: every sequence in it adds
   * one token (a prompt being read is not a step to compare).
   */
  step(tokens: number, generation: boolean): void {
    const t = this.now();
    const last = this.last;
    if (last && last.level === this.level && t - last.at < MAX_STEP_MS)
      this.observe(last.tokens, t - last.at);
    this.last = generation ? { at: t, tokens, level: this.level } : undefined;
    if (!this.probe && this.busyMs >= this.probeWait && this.options.low !== this.options.high) {
      const from = this.level;
      this.forget(this.other(from));
      this.probe = { from, steps: 0 };
      this.set(this.other(from), 'trying');
    }
  }

  /** No sequence is generating: the time until the next step is not a step. */
  idle(): void {
    this.last = undefined;
  }

  private observe(tokens: number, ms: number): void {
    this.busyMs += ms;
    const s = this.stat(this.level, tokens);
    s.recent.push(ms);
    if (s.recent.length > RECENT_STEPS) s.recent.shift();
    s.count++;
    s.best = Math.min(s.best, ms);
    const low = this.level > this.options.low ? this.stats.get(`${this.options.low}|${tokens}`) : undefined;
    const slow =
      this.level > this.options.low &&
      ((s.count > MIN_STEPS && ms > s.best * COLLAPSE_FACTOR) ||
        (low !== undefined && low.count > 0 && ms > median(low.recent) * LOW_FACTOR));
    if (slow) {
      if (++this.slowRun >= COLLAPSE_STEPS) {
        this.probe = undefined;
        this.probeWait = this.probeMinMs;
        this.set(this.options.low, 'collapse');
        return;
      }
    } else this.slowRun = 0;
    const probe = this.probe;
    if (!probe) return;
    const before = this.stats.get(`${probe.from}|${tokens}`);
    // On a busy box a try of two threads can take a second a step, on a quiet one a try of one thread
    // is plainly slower from its first step: one such step is enough.
    const hopeless =
      before !== undefined && before.count > 0 && ms > median(before.recent) * PROBE_ABORT_FACTOR;
    if (!hopeless && ++probe.steps < this.probeSteps) return;
    this.probe = undefined;
    if (!hopeless && before && before.count > 0 && median(s.recent) < median(before.recent) * 0.95) {
      // The other count stepped faster: stay, and look again soon.
      this.probeWait = this.probeMinMs;
      this.busyMs = 0;
      this.lastReason = 'faster';
    } else {
      this.probeWait = Math.min(this.probeWait * 2, this.probeMaxMs);
      this.set(probe.from, 'kept');
    }
  }

  private other(level: number): number {
    return level === this.options.high ? this.options.low : this.options.high;
  }

  private set(level: number, reason: string): void {
    this.last = undefined;
    this.slowRun = 0;
    this.busyMs = 0;
    this.lastReason = reason;
    if (level === this.level) return;
    this.level = level;
    this.switches++;
    this.options.knob(level);
  }

  private forget(level: number): void {
    for (const key of [...this.stats.keys()]) if (key.startsWith(`${level}|`)) this.stats.delete(key);
  }

  private stat(level: number, tokens: number): StepStats {
    const key = `${level}|${tokens}`;
    let s = this.stats.get(key);
    if (!s) this.stats.set(key, (s = { recent: [], count: 0, best: Infinity }));
    return s;
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
