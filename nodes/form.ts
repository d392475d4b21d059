/** What a number field of an edit form may hold besides blank. */
export interface FormRange {
  /** The smallest value allowed. */
  min?: number;
  /** The largest value allowed. */
  max?: number;
  /** Values must be greater than this (for "positive": above 0). */
  above?: number;
  /** Only whole numbers. */
  whole?: boolean;
}

/**
 * A number typed into an edit form: blank (or a field older flows do not have) gives `fallback`;
 * anything else must be a finite number in `range`, else the error `problem(raw)` describes is
 * thrown, for the node's red status and its error.
 */
export function formNumber<F extends number | undefined>(
  raw: unknown,
  fallback: F,
  range: FormRange,
  problem: (raw: string) => string,
): number | F {
  if (raw === undefined || raw === null || String(raw).trim() === '') return fallback;
  const n = Number(raw);
  const ok =
    Number.isFinite(n) &&
    (range.min === undefined || n >= range.min) &&
    (range.max === undefined || n <= range.max) &&
    (range.above === undefined || n > range.above) &&
    (!range.whole || Number.isInteger(n));
  if (!ok) throw new Error(problem(String(raw)));
  return n;
}
