import type { PrivacyGuard } from './guard';
import type { EntityType, Finding } from './types';

/** A labelled set: every occurrence of a listed value in a sample is an expected entity. */
export interface LabelledSet {
  samples: { text: string; entities: LabelledEntity[] }[];
  json?: { value: unknown; entities: LabelledEntity[] }[];
}

export interface LabelledEntity {
  type: EntityType;
  value: string;
  /** A made-up person name that no name list holds (generated sets mark them). */
  oov?: boolean;
}

export interface TypeScore {
  type: EntityType;
  /** Expected entities (every occurrence). */
  expected: number;
  /** Expected entities with every character inside some finding, of whatever type: not leaked. */
  hidden: number;
  /** Expected entities of which a part was found and a part left visible. */
  partly: number;
  /** Expected entities that a finding of their own type overlaps. */
  matched: number;
  /** Findings of this type, and those that overlap an expected entity of any type. */
  predicted: number;
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  /** matched / expected */
  recall: number;
  /** hidden / expected: what the acceptance figures count. */
  hiddenRate: number;
  precision: number;
}

interface Span {
  type: EntityType;
  start: number;
  end: number;
}

function expectedSpans(text: string, entities: LabelledEntity[]): Span[] {
  const spans: Span[] = [];
  for (const e of entities) {
    if (e.value === '') continue;
    for (let at = text.indexOf(e.value); at >= 0; at = text.indexOf(e.value, at + e.value.length)) {
      spans.push({ type: e.type, start: at, end: at + e.value.length });
    }
  }
  return spans;
}

const overlap = (a: Span, b: Span): boolean => a.start < b.end && b.start < a.end;

/** True when every non-space character of `g` lies inside one of `found` (sorted by start). */
function covered(text: string, g: Span, found: readonly Finding[]): boolean {
  for (let i = g.start; i < g.end; i++) {
    if (/\s/.test(text[i])) continue;
    if (!found.some((f) => f.start <= i && i < f.end)) return false;
  }
  return true;
}

/** Text leaves of a JSON value with the key they sit under, as the guard scans them. */
function leaves(v: unknown, key: string | undefined, out: { text: string; key?: string }[]): void {
  if (typeof v === 'string') out.push({ text: v, key });
  else if (typeof v === 'number') out.push({ text: String(v), key });
  else if (Array.isArray(v)) for (const x of v) leaves(x, key, out);
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) leaves(x, k, out);
}

/** One text and what was found in it, for listing misses and false alarms. */
export interface Miss {
  text: string;
  missed: { type: EntityType; value: string; partly: boolean }[];
  extra: { type: EntityType; value: string; rule: string }[];
}

/**
 * Scores the guard's detection on a labelled set. An expected entity is *hidden* when findings of any
 * type cover all of it (that is what keeps it from the model), *partly* hidden when they cover some of
 * it, and *matched* when a finding of its own type overlaps it. A finding is a true positive when it
 * overlaps some expected entity, whatever its type.
 */
export function evaluate(
  guard: PrivacyGuard,
  set: LabelledSet,
  misses?: Miss[],
  subset?: (e: LabelledEntity) => boolean,
): TypeScore[] {
  const tally = new Map<
    EntityType,
    { expected: number; hidden: number; partly: number; matched: number; predicted: number; tp: number }
  >();
  const t = (type: EntityType) => {
    let r = tally.get(type);
    if (!r) tally.set(type, (r = { expected: 0, hidden: 0, partly: 0, matched: 0, predicted: 0, tp: 0 }));
    return r;
  };
  const score = (text: string, entities: LabelledEntity[], found: Finding[]): void => {
    const all = expectedSpans(text, entities);
    const gold = subset ? expectedSpans(text, entities.filter(subset)) : all;
    const miss: Miss = { text, missed: [], extra: [] };
    for (const g of gold) {
      const r = t(g.type);
      r.expected++;
      const hits = found.filter((f) => overlap(f, g));
      if (hits.some((f) => f.type === g.type)) r.matched++;
      if (hits.length > 0 && covered(text, g, hits)) r.hidden++;
      else {
        if (hits.length > 0) r.partly++;
        miss.missed.push({ type: g.type, value: text.slice(g.start, g.end), partly: hits.length > 0 });
      }
    }
    if (!subset) {
      for (const f of found) {
        const r = t(f.type);
        r.predicted++;
        if (all.some((g) => overlap(g, f))) r.tp++;
        else miss.extra.push({ type: f.type, value: f.value, rule: f.rule });
      }
    }
    if (misses && (miss.missed.length || miss.extra.length)) misses.push(miss);
  };
  for (const s of set.samples) score(s.text, s.entities, guard.detect(s.text));
  for (const s of set.json ?? []) {
    const parts: { text: string; key?: string }[] = [];
    leaves(s.value, undefined, parts);
    for (const p of parts) score(p.text, s.entities, guard.detect(p.text, p.key));
  }
  return [...tally.entries()]
    .map(([type, r]) => ({
      type,
      expected: r.expected,
      hidden: r.hidden,
      partly: r.partly,
      matched: r.matched,
      predicted: r.predicted,
      truePositives: r.tp,
      falsePositives: r.predicted - r.tp,
      falseNegatives: r.expected - r.matched,
      recall: r.expected === 0 ? 1 : r.matched / r.expected,
      hiddenRate: r.expected === 0 ? 1 : r.hidden / r.expected,
      precision: r.predicted === 0 ? 1 : r.tp / r.predicted,
    }))
    .sort((a, b) => String(a.type).localeCompare(String(b.type)));
}

/** Fixed-width table of the scores, for the eval script and for people. */
export function formatScores(scores: TypeScore[]): string {
  const head = ['type', 'expected', 'hidden', 'partly', 'found', 'FP', 'hidden %', 'recall', 'precision'];
  const pct = (n: number, d: number) => (d ? ((100 * n) / d).toFixed(1) : '-');
  const rows = scores.map((s) => [
    String(s.type),
    String(s.expected),
    String(s.hidden),
    String(s.partly),
    String(s.predicted),
    String(s.falsePositives),
    pct(s.hidden, s.expected),
    s.expected ? s.recall.toFixed(3) : '-',
    s.predicted ? s.precision.toFixed(3) : '-',
  ]);
  const sum = scores.reduce(
    (a, s) => ({
      e: a.e + s.expected,
      h: a.h + s.hidden,
      pa: a.pa + s.partly,
      m: a.m + s.matched,
      p: a.p + s.predicted,
      tp: a.tp + s.truePositives,
    }),
    { e: 0, h: 0, pa: 0, m: 0, p: 0, tp: 0 },
  );
  rows.push([
    'ALL',
    String(sum.e),
    String(sum.h),
    String(sum.pa),
    String(sum.p),
    String(sum.p - sum.tp),
    pct(sum.h, sum.e),
    (sum.e ? sum.m / sum.e : 1).toFixed(3),
    (sum.p ? sum.tp / sum.p : 1).toFixed(3),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
