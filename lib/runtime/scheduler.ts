import { LlmError } from './errors';

export type Priority = 'high' | 'normal' | 'low';
export const PRIORITIES: readonly Priority[] = ['high', 'normal', 'low'];

export interface ScheduleOptions {
  priority?: Priority;
  /** Absolute time (ms since epoch, per the scheduler's clock) by which the request must finish. */
  deadline?: number;
  signal?: AbortSignal;
  /** Who asked (a node id or a flow id): requests are served round-robin across owners. */
  owner?: string;
  /**
   * Requests with the same key (a prompt prefix) prefer the slot that last ran one, so the
   * sequence's cached KV state for that prefix is reused instead of evaluated again.
   */
  affinity?: string;
  /**
   * A health probe: it waits behind every production request and does not count against the queue
   * limit, so probing can never turn a production request into `queue_full`.
   */
  probe?: boolean;
}

export interface SchedulerOptions {
  /** How many tasks may run at once (one per context sequence). */
  slots: number;
  /** How many tasks may wait; one more is rejected at once. */
  queueLimit: number;
  /** A waiting request climbs one priority class per this many ms, so low never starves. */
  agingMs?: number;
  now?: () => number;
}

/** What a running task is given: its slot (the sequence index) and a signal that fires on deadline or cancel. */
export interface TaskContext {
  slot: number;
  signal: AbortSignal;
  /** The slot last ran a request with the same affinity key (its cached state is still there). */
  warm: boolean;
}

interface Pending {
  run: (ctx: TaskContext) => void;
  affinity: string | undefined;
  fail: (err: LlmError) => void;
  priority: number;
  owner: string;
  enqueuedAt: number;
  probe: boolean;
  cleanup: () => void;
}

/**
 * Admission control in front of a context's sequences: priority classes with aging, round-robin
 * between owners inside a class, deadlines, cancellation and a bounded queue. It never blocks: a
 * request that cannot be queued or started in time is rejected with a reason code.
 */
export class Scheduler {
  private readonly slots: boolean[];
  /** The affinity key each slot last ran. */
  private readonly slotKeys: (string | undefined)[];
  private queueLimit: number;
  private readonly agingMs: number;
  private readonly now: () => number;
  private readonly waiting: Pending[] = [];
  private lastOwner = '';
  private closedReason: string | undefined;
  /** Waiting probes: they do not count against the queue limit. */
  private waitingProbes = 0;

  constructor(options: SchedulerOptions) {
    this.slots = new Array<boolean>(Math.max(1, options.slots)).fill(false);
    this.slotKeys = new Array<string | undefined>(this.slots.length).fill(undefined);
    this.queueLimit = Math.max(0, options.queueLimit);
    this.agingMs = options.agingMs ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  get queued(): number {
    return this.waiting.length - this.waitingProbes;
  }

  get active(): number {
    return this.slots.filter(Boolean).length;
  }

  /** Several users may share one scheduler: the queue holds as much as the most generous asks. */
  raiseQueueLimit(limit: number): void {
    this.queueLimit = Math.max(this.queueLimit, Math.floor(limit));
  }

  get limit(): number {
    return this.queueLimit;
  }

  get capacity(): number {
    return this.slots.length;
  }

  /**
   * Run `task` when a slot is free. The task's signal aborts when the deadline passes or the
   * caller's signal aborts; the slot is freed when the task's promise settles.
   */
  run<T>(task: (ctx: TaskContext) => Promise<T>, options: ScheduleOptions = {}): Promise<T> {
    const refused = this.admission(options);
    if (refused) return Promise.reject(refused);
    const { signal, deadline } = options;
    const free = this.freeSlot(options.affinity);
    return new Promise<T>((resolve, reject) => {
      const start = (slot: number, warm: boolean): void => {
        const controller = new AbortController();
        let timer: NodeJS.Timeout | undefined;
        const onAbort = (): void =>
          controller.abort(signal?.reason ?? new LlmError('cancelled', 'Cancelled.'));
        if (deadline !== undefined) {
          timer = setTimeout(
            () =>
              controller.abort(new LlmError('timeout', 'The request ran past its deadline and was aborted.')),
            Math.max(0, deadline - this.now()),
          );
        }
        signal?.addEventListener('abort', onAbort, { once: true });
        const release = (): void => {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          this.slots[slot] = false;
          this.dispatch();
        };
        let result: Promise<T>;
        try {
          result = task({ slot, signal: controller.signal, warm });
        } catch (err) {
          result = Promise.reject(err);
        }
        result.then(
          (value) => {
            release();
            resolve(value);
          },
          (err: unknown) => {
            release();
            reject(err);
          },
        );
      };

      if (free >= 0 && this.waiting.length === 0 && !options.probe) {
        this.slots[free] = true;
        const warm = options.affinity !== undefined && this.slotKeys[free] === options.affinity;
        this.slotKeys[free] = options.affinity;
        start(free, warm);
        return;
      }

      const entry: Pending = {
        run: ({ slot, warm }) => start(slot, warm),
        affinity: options.affinity,
        fail: reject,
        priority: PRIORITIES.indexOf(options.priority ?? 'normal'),
        owner: options.owner ?? '',
        enqueuedAt: this.now(),
        probe: options.probe === true,
        cleanup: () => undefined,
      };
      const remove = (err: LlmError): void => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          entry.cleanup();
          reject(err);
        }
      };
      let timer: NodeJS.Timeout | undefined;
      if (deadline !== undefined) {
        timer = setTimeout(
          () => remove(new LlmError('timeout', 'The request could not start before its deadline.')),
          Math.max(0, deadline - this.now()),
        );
      }
      const onAbort = (): void =>
        remove(new LlmError('cancelled', 'The request was cancelled while queued.'));
      signal?.addEventListener('abort', onAbort, { once: true });
      entry.cleanup = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (entry.probe) this.waitingProbes--;
      };
      if (entry.probe) this.waitingProbes++;
      this.waiting.push(entry);
      this.dispatch();
    });
  }

  /**
   * Why a request would be refused now (closed, cancelled, past its deadline, queue full), or
   * undefined. Cheap: callers check it before costly preparation (a schema compile, a grammar).
   */
  admission(options: ScheduleOptions = {}): LlmError | undefined {
    if (this.closedReason !== undefined) return new LlmError('closed', this.closedReason);
    if (options.signal?.aborted) {
      return new LlmError('cancelled', 'The request was cancelled before it was queued.');
    }
    if (options.deadline !== undefined && options.deadline <= this.now()) {
      return new LlmError('timeout', 'The request deadline had already passed.');
    }
    if (options.probe) return undefined;
    if (this.freeSlot(options.affinity) < 0 && this.queued >= this.queueLimit) {
      return new LlmError(
        'queue_full',
        `The queue is full (${this.queued} waiting, ${this.slots.length} running); try again later or raise the queue limit.`,
      );
    }
    return undefined;
  }

  /** Reject everything waiting; running tasks are left to their own signals. */
  close(reason = 'The runtime was closed.'): void {
    this.closedReason = reason;
    for (const entry of this.waiting.splice(0)) {
      entry.cleanup();
      entry.fail(new LlmError('closed', reason));
    }
  }

  private dispatch(): void {
    while (this.slots.includes(false) && this.waiting.length > 0) {
      const next = this.pick();
      const free = this.freeSlot(next.affinity);
      this.waiting.splice(this.waiting.indexOf(next), 1);
      next.cleanup();
      this.slots[free] = true;
      const warm = next.affinity !== undefined && this.slotKeys[free] === next.affinity;
      this.slotKeys[free] = next.affinity;
      this.lastOwner = next.owner;
      next.run({ slot: free, signal: new AbortController().signal, warm });
    }
  }

  /** A free slot that last ran this affinity key, else one that ran none, else any free one. */
  private freeSlot(affinity: string | undefined): number {
    let fallback = -1;
    for (let i = 0; i < this.slots.length; i++) {
      if (this.slots[i]) continue;
      if (affinity !== undefined && this.slotKeys[i] === affinity) return i;
      if (fallback < 0 || (this.slotKeys[fallback] !== undefined && this.slotKeys[i] === undefined))
        fallback = i;
    }
    return fallback;
  }

  /** Best effective class first; inside it, the first owner after the last one served (round-robin). */
  private pick(): Pending {
    const production = this.waiting.find((p) => !p.probe);
    if (!production) return this.waiting[0];
    const now = this.now();
    const effective = (p: Pending): number =>
      Math.max(0, p.priority - Math.floor((now - p.enqueuedAt) / this.agingMs));
    const waiting = this.waiting.filter((p) => !p.probe);
    const best = Math.min(...waiting.map(effective));
    const candidates = waiting.filter((p) => effective(p) === best);
    const owners = [...new Set(candidates.map((p) => p.owner))].sort();
    const nextOwner = owners.find((o) => o > this.lastOwner) ?? owners[0];
    return candidates.find((p) => p.owner === nextOwner)!;
  }
}
