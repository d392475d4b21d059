/** The longest status text shown under a node before it is cut; the full text is in the node's error. */
export const STATUS_MAX_CHARS = 40;

/** A status text that fits under a node on the canvas: a long one ends in "…" after STATUS_MAX_CHARS. */
export function statusText(text: string, max = STATUS_MAX_CHARS): string {
  return text.length > max ? `${text.slice(0, max).trimEnd()}…` : text;
}

/**
 * Shows a node's status at most once per interval. Counts and progress change many times a
 * second; the canvas needs only the latest. The first change after a quiet spell shows on the
 * next turn of the event loop, later ones wait out the interval, and the last one always shows.
 */
export class StatusThrottle {
  private timer: NodeJS.Timeout | undefined;
  private lastAt = 0;
  private closed = false;

  constructor(
    private readonly show: () => void,
    private readonly intervalMs: number,
  ) {}

  /** Shows within `wait` ms of the last showing (the interval unless told). */
  soon(wait = this.intervalMs): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => this.now(), Math.max(0, wait - (Date.now() - this.lastAt)));
  }

  /** Shows at once, and drops a showing that was waiting. */
  now(): void {
    this.cancel();
    if (this.closed) return;
    this.lastAt = Date.now();
    this.show();
  }

  /** Drops a showing that was waiting (another status has replaced it). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The node is closing: nothing more is shown. */
  close(): void {
    this.cancel();
    this.closed = true;
  }
}
