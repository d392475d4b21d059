import nlp from 'compromise';

/**
 * `compromise`: its lexicon of given names and honorifics plus sentence context, with our title and
 * cue-word rules on top. `rules`: only the title and cue-word rules (fast, lower recall).
 */
export type PersonDetector = 'compromise' | 'rules' | 'off';

export interface PersonSpan {
  start: number;
  end: number;
  rule: string;
}

const NAME_WORD = String.raw`\p{Lu}[\p{Ll}'’]+(?:-\p{Lu}[\p{Ll}'’]+)?`;
const PARTICLE = String.raw`(?:(?:van|von|der|den|de|da|di|du|del|della|le|la|al|bin|ibn|ter|ten)\s+)`;
const FULL_NAME = String.raw`${NAME_WORD}(?:\s+${PARTICLE}{0,2}${NAME_WORD}){0,3}`;

const TITLE = new RegExp(
  String.raw`\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame|Herr|Frau|Mme|Mlle|Sr|Sra|Srta)\.?\s+(${FULL_NAME})`,
  'gdu',
);
const CUE = new RegExp(
  String.raw`\b(?:[Mm]y name is|[Nn]ame(?:d|:)|[Cc]alled|[Ss]igned by|[Dd]ear|[Hh]i|[Hh]ello|[Pp]atient|[Oo]perator|[Tt]echnician|[Ee]ngineer|[Dd]river|[Cc]ustomer|[Cc]ontact(?: person)?:?|[Aa]ttn:?|[Ss]poke (?:with|to)|[Tt]alked to|[Aa]ssigned to|[Rr]eported by|[Aa]pproved by|[Rr]equested by|[Ee]scalated to|[Cc]c:?|[Ff]rom:|[Tt]o:|[Oo]n behalf of)\s+(${FULL_NAME})`,
  'gdu',
);

/** Capitalised words that compromise or the cue rules take for names but that are not people here. */
const NOT_A_NAME = new Set(
  [
    'monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday',
    'january february march april june july august september october november december',
    'the a an this that these those it he she they we you i my our your their his her',
    'line pump valve sensor gateway device node server station plant site zone area unit team shift',
    'ok okay thanks thank please regards best hello hi dear sir madam all everyone',
    'admin root user system operator support service manager engineer technician',
    'mr mrs ms mx miss dr prof sir dame herr frau mme mlle sr sra srta',
  ]
    .join(' ')
    .split(/\s+/),
);

/** Words after (or ending) a capitalised name that make it a place or a thing. */
const PLACE_OR_THING =
  /^(?:street|st|avenue|ave|road|rd|lane|way|drive|boulevard|station|line|valve|pump|depot|plant|park|bridge|hall|gate|building|tower|centre|center|square|airport|river|lake|valley|substation|county|city|group|inc|ltd|gmbh|corp)\b/i;

function acceptable(text: string, after = ''): boolean {
  const words = text.split(/\s+/);
  if (PLACE_OR_THING.test(after.trimStart()) || PLACE_OR_THING.test(words[words.length - 1])) return false;
  if (!/^\p{Lu}/u.test(text)) return false;
  if (words.every((w) => NOT_A_NAME.has(w.toLowerCase()))) return false;
  // ALL-CAPS words are codes and acronyms far more often than names.
  return !words.every((w) => w === w.toUpperCase());
}

function trimSpan(text: string, start: number, end: number): [number, number] {
  let s = text.slice(start, end);
  const lead = s.length - s.trimStart().length;
  s = s.trim().replace(/(?:['’]s)?[.,;:!?)"'’]*$/u, '');
  return [start + lead, start + lead + s.length];
}

function ruleSpans(text: string, out: PersonSpan[]): void {
  for (const [regex, rule] of [
    [TITLE, 'title'],
    [CUE, 'cue'],
  ] as const) {
    for (const m of text.matchAll(regex)) {
      const span = m.indices?.[1];
      if (span && acceptable(m[1], text.slice(span[1], span[1] + 20)))
        out.push({ start: span[0], end: span[1], rule });
    }
  }
}

// compromise's cost grows with the text; bounded pieces keep memory flat on huge inputs.
const CHUNK = 16_384;

function compromiseSpans(text: string, out: PersonSpan[]): void {
  for (let base = 0; base < text.length;) {
    let end = Math.min(text.length, base + CHUNK);
    if (end < text.length) {
      const cut = Math.max(text.lastIndexOf('\n', end), text.lastIndexOf('. ', end));
      if (cut > base + CHUNK / 2) end = cut + 1;
    }
    const piece = text.slice(base, end);
    if (/\p{Lu}\p{Ll}/u.test(piece)) {
      const people = nlp(piece).people().json({ offset: true }) as {
        text: string;
        offset: { start: number; length: number };
      }[];
      for (const p of people) {
        let at = p.offset.start;
        // Offsets are UTF-16 indices into `piece`; check, and search nearby if compromise normalised it.
        if (
          piece.slice(at, at + p.offset.length).trim() === '' ||
          !piece.startsWith(p.text.slice(0, 1), at)
        ) {
          at = piece.indexOf(p.text.trim(), Math.max(0, at - 8));
          if (at < 0) continue;
        }
        const [s, e] = trimSpan(piece, at, at + p.offset.length);
        if (e > s && acceptable(piece.slice(s, e), piece.slice(e, e + 20)))
          out.push({ start: base + s, end: base + e, rule: 'compromise' });
      }
    }
    base = end;
  }
}

export function findPersons(text: string, detector: PersonDetector): PersonSpan[] {
  const out: PersonSpan[] = [];
  if (detector === 'off') return out;
  ruleSpans(text, out);
  if (detector === 'compromise') compromiseSpans(text, out);
  return out;
}
