import type { PrivacyGuard } from './guard';
import type { EntityType, Finding } from './types';

/** A labelled set: every occurrence of a listed value in a sample is an expected entity. */
export interface LabelledSet {
  samples: { text: string; entities: { type: EntityType; value: string }[] }[];
  json?: { value: unknown; entities: { type: EntityType; value: string }[] }[];
}

export interface TypeScore {
  type: EntityType;
  /** Expected entities, found ones, and found ones that match an expected one. */
  expected: number;
  predicted: number;
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  recall: number;
  precision: number;
}

interface Span {
  type: EntityType;
  start: number;
  end: number;
}

function expectedSpans(text: string, entities: { type: EntityType; value: string }[]): Span[] {
  const spans: Span[] = [];
  for (const e of entities) {
    for (let at = text.indexOf(e.value); at >= 0; at = text.indexOf(e.value, at + e.value.length)) {
      spans.push({ type: e.type, start: at, end: at + e.value.length });
    }
  }
  return spans;
}

const overlaps = (a: Span, b: Span): boolean => a.type === b.type && a.start < b.end && b.start < a.end;

/** Text leaves of a JSON value with the key they sit under, as the guard scans them. */
function leaves(v: unknown, key: string | undefined, out: { text: string; key?: string }[]): void {
  if (typeof v === 'string') out.push({ text: v, key });
  else if (typeof v === 'number') out.push({ text: String(v), key });
  else if (Array.isArray(v)) for (const x of v) leaves(x, key, out);
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) leaves(x, k, out);
}

/**
 * Scores the guard's detection on a labelled set. A found entity counts as correct when it has the
 * expected type and overlaps the expected span (a title such as "Dr." or a trailing bracket does not
 * make a hit a miss); each expected entity is matched at most once.
 */
export function evaluate(guard: PrivacyGuard, set: LabelledSet): TypeScore[] {
  const tally = new Map<EntityType, { expected: number; predicted: number; tp: number; matched: number }>();
  const t = (type: EntityType) => {
    let r = tally.get(type);
    if (!r) tally.set(type, (r = { expected: 0, predicted: 0, tp: 0, matched: 0 }));
    return r;
  };
  const score = (text: string, gold: Span[], found: Finding[]): void => {
    for (const g of gold) t(g.type).expected++;
    const used = new Set<Span>();
    for (const f of found) {
      const r = t(f.type);
      r.predicted++;
      const hits = gold.filter((g) => overlaps(g, f));
      if (hits.length > 0) r.tp++;
      for (const g of hits) {
        if (!used.has(g)) {
          used.add(g);
          r.matched++;
        }
      }
    }
    void text;
  };
  for (const s of set.samples) score(s.text, expectedSpans(s.text, s.entities), guard.detect(s.text));
  for (const s of set.json ?? []) {
    const parts: { text: string; key?: string }[] = [];
    leaves(s.value, undefined, parts);
    for (const p of parts) score(p.text, expectedSpans(p.text, s.entities), guard.detect(p.text, p.key));
  }
  return [...tally.entries()]
    .map(([type, r]) => ({
      type,
      expected: r.expected,
      predicted: r.predicted,
      truePositives: r.tp,
      falsePositives: r.predicted - r.tp,
      falseNegatives: r.expected - r.matched,
      recall: r.expected === 0 ? 1 : r.matched / r.expected,
      precision: r.predicted === 0 ? 1 : r.tp / r.predicted,
    }))
    .sort((a, b) => String(a.type).localeCompare(String(b.type)));
}

/** Fixed-width table of the scores, for the eval script and for people. */
export function formatScores(scores: TypeScore[]): string {
  const head = ['type', 'expected', 'found', 'TP', 'FP', 'FN', 'recall', 'precision'];
  const rows = scores.map((s) => [
    String(s.type),
    String(s.expected),
    String(s.predicted),
    String(s.truePositives),
    String(s.falsePositives),
    String(s.falseNegatives),
    s.recall.toFixed(3),
    s.precision.toFixed(3),
  ]);
  const sum = scores.reduce(
    (a, s) => ({
      e: a.e + s.expected,
      p: a.p + s.predicted,
      tp: a.tp + s.truePositives,
      fn: a.fn + s.falseNegatives,
    }),
    { e: 0, p: 0, tp: 0, fn: 0 },
  );
  rows.push([
    'ALL',
    String(sum.e),
    String(sum.p),
    String(sum.tp),
    String(sum.p - sum.tp),
    String(sum.fn),
    (sum.e ? (sum.e - sum.fn) / sum.e : 1).toFixed(3),
    (sum.p ? sum.tp / sum.p : 1).toFixed(3),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
