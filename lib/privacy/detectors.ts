import { isIPv4, isIPv6 } from 'node:net';
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import type * as Ibantools from 'ibantools' with { 'resolution-mode': 'import' };
import { calendarDay, cardIssuerKnown, luhnValid, shannonEntropy, usSsnValid } from './checksums';
import { findPersons, type PersonDetector } from './person';
import type { BuiltinEntityType, CustomPattern, EntityType, Finding } from './types';

// ibantools ships a CommonJS build under its "require" condition, but its only typings are ESM.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { isValidIBAN } = require('ibantools') as typeof Ibantools;

export interface CompiledCustomPattern {
  name: string;
  regex: RegExp;
  context?: RegExp;
  window: number;
}

export interface DetectOptions {
  /** Types to look for; custom pattern names are always looked for. */
  types: ReadonlySet<EntityType>;
  /** ISO 3166 alpha-2 country for phone numbers written without +/00 (national format). */
  defaultCountry?: string;
  person?: PersonDetector;
  custom?: readonly CompiledCustomPattern[];
  /** Name of the JSON field the text came from, if any: `dob`, `lat`, `name` make the whole value an entity. */
  keyHint?: string;
}

/** Higher wins when two findings overlap. */
const PRIORITY: Record<string, number> = {
  'SECRET:structured': 100,
  custom: 90,
  EMAIL: 80,
  IBAN: 75,
  CARD: 74,
  NATIONAL_ID: 73,
  MAC: 72,
  IPV6: 71,
  IPV4: 70,
  GPS: 65,
  DOB: 64,
  PHONE: 60,
  PERSON: 50,
  'SECRET:entropy': 40,
};

function priority(f: Finding): number {
  if (f.type === 'SECRET') return PRIORITY[f.rule === 'entropy' ? 'SECRET:entropy' : 'SECRET:structured'];
  return PRIORITY[f.type] ?? PRIORITY.custom;
}

/** True when one of the words matched by `context` ends within `window` characters before `start`. */
function contextBefore(text: string, start: number, context: RegExp, window: number): boolean {
  const before = text.slice(Math.max(0, start - window), start);
  context.lastIndex = 0;
  return context.test(before);
}

function push(
  out: Finding[],
  type: EntityType,
  rule: string,
  text: string,
  start: number,
  end: number,
): void {
  out.push({ type, rule, start, end, value: text.slice(start, end) });
}

// ---------------------------------------------------------------- e-mail
const EMAIL =
  /(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9])/g;

const FILE_EXTENSION =
  /\.(?:png|jpe?g|gif|svg|webp|bmp|ico|m?js|cjs|ts|json|ya?ml|txt|log|csv|html?|css|py|sh|exe|dll|so|bin|zip|gz|tar|pdf)$/i;

function emails(text: string, out: Finding[]): void {
  for (const m of text.matchAll(EMAIL)) {
    if (FILE_EXTENSION.test(m[0])) continue; // asset names such as pump@2x.png
    push(out, 'EMAIL', 'email', text, m.index, m.index + m[0].length);
  }
}

// ---------------------------------------------------------------- phone (libphonenumber-js)
// Candidates are cut with a cheap regex and validated by libphonenumber-js against the numbering
// plan of the country; its own text scanner is several times slower on long text.
const PHONE_CANDIDATE = /(?<![\w+.,/:-])(?:\+|\b00)?\(?\d[\d ().-]{5,22}\d(?![\w/:]|[.,-]\d)/g;

function phones(text: string, out: Finding[], defaultCountry?: string): void {
  for (const m of text.matchAll(PHONE_CANDIDATE)) {
    let candidate = m[0];
    // Trailing space-separated groups may belong to the next word ("+44 20 7946 0958 12 units").
    for (let attempt = 0; attempt < 3 && candidate.length >= 7; attempt++) {
      if (validPhone(candidate, defaultCountry)) {
        push(out, 'PHONE', 'libphonenumber', text, m.index, m.index + candidate.length);
        break;
      }
      const cut = candidate.lastIndexOf(' ');
      if (cut <= 0) break;
      candidate = candidate.slice(0, cut).replace(/[ (.-]+$/, '');
    }
  }
}

function digitGroups(s: string): string {
  return (s.match(/\d+/g) ?? []).map((g) => g.length).join(',');
}

function validPhone(candidate: string, defaultCountry?: string): boolean {
  const digits = candidate.replace(/\D/g, '');
  if (digits.length < 7 || digits.length > 17) return false;
  const international = candidate.startsWith('+') || candidate.startsWith('00');
  if (!international && !defaultCountry) return false;
  const input = candidate.startsWith('00') ? '+' + candidate.slice(2) : candidate;
  try {
    const parsed = parsePhoneNumberFromString(input, {
      defaultCountry: defaultCountry as CountryCode | undefined,
      extract: false,
    });
    if (!parsed) return false;
    // A leading + (or 00) is itself strong evidence; numbering plans change faster than metadata,
    // so a number of possible length for its country is enough.
    if (international) return digits.length >= 8 && parsed.isPossible();
    // Without it, dates, lot and ticket numbers parse as valid national numbers: the digits must
    // also be grouped the way the country writes its numbers (or not grouped at all).
    if (!parsed.isValid()) return false;
    const groups = digitGroups(candidate);
    return !groups.includes(',') || groups === digitGroups(parsed.formatNational());
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- IP and MAC
const IPV4 =
  /(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)/g;
const VERSION_BEFORE =
  /(?:\bv|\b(?:version|ver\.?|release|firmware|section|chapter|clause|step|item)\s*|§\s*)$/i;

function ipv4(text: string, out: Finding[]): void {
  for (const m of text.matchAll(IPV4)) {
    if (VERSION_BEFORE.test(text.slice(Math.max(0, m.index - 12), m.index))) continue;
    if (isIPv4(m[0])) push(out, 'IPV4', 'ipv4', text, m.index, m.index + m[0].length);
  }
}

const IPV6_CANDIDATE =
  /(?<![\w:.])(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?![\w:])/g;

function ipv6(text: string, out: Finding[]): void {
  for (const m of text.matchAll(IPV6_CANDIDATE)) {
    const s = m[0];
    // "::" alone and clock times are valid-looking but not addresses worth hiding.
    if (!/[0-9A-Fa-f]/.test(s) || !isIPv6(s)) continue;
    if (!s.includes('::') && s.split(':').length < 8) continue;
    push(out, 'IPV6', 'ipv6', text, m.index, m.index + s.length);
  }
}

const MAC = /(?<![\w:-])[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![\w:-])/g;
const MAC_DOTTED = /(?<![\w.])[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}(?![\w.]|\.\d)/g;
const MAC_CONTEXT = /\b(?:mac|hw ?addr|hardware address|ether|bssid)\b/i;

function macs(text: string, out: Finding[]): void {
  for (const m of text.matchAll(MAC)) push(out, 'MAC', 'mac', text, m.index, m.index + m[0].length);
  for (const m of text.matchAll(MAC_DOTTED)) {
    // Cisco-style dotted MACs look like version or part numbers unless they hold a hex letter or a MAC word.
    if (/[A-Fa-f]/.test(m[0]) || contextBefore(text, m.index, MAC_CONTEXT, 30)) {
      push(out, 'MAC', 'mac-dotted', text, m.index, m.index + m[0].length);
    }
  }
}

// ---------------------------------------------------------------- payment cards (Luhn)
const CARD_CANDIDATE = /(?<![\d.,-])\d(?:[ -]?\d){11,18}(?![\d]|[.,-]\d)/g;

function cards(text: string, out: Finding[]): void {
  for (const m of text.matchAll(CARD_CANDIDATE)) {
    const s = m[0];
    const seps = s.match(/[ -]/g);
    if (seps && new Set(seps).size > 1) continue; // "4111 1111-1111" mixes separators: not one number
    const digits = s.replace(/\D/g, '');
    if (digits.length < 12 || digits.length > 19) continue;
    if (luhnValid(digits) && cardIssuerKnown(digits))
      push(out, 'CARD', 'luhn', text, m.index, m.index + s.length);
  }
}

// ---------------------------------------------------------------- IBAN (ibantools: country length, BBAN format, mod 97)
const IBAN_CANDIDATE = /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g;

function ibans(text: string, out: Finding[]): void {
  for (const m of text.matchAll(IBAN_CANDIDATE)) {
    let s = m[0];
    // The candidate may have run into following words ("... 0130 00 BANK"): shorten group by group.
    while (s.replace(/ /g, '').length >= 15) {
      if (isValidIBAN(s.replace(/ /g, ''))) {
        push(out, 'IBAN', 'ibantools', text, m.index, m.index + s.length);
        break;
      }
      const cut = s.lastIndexOf(' ');
      if (cut < 0) break;
      s = s.slice(0, cut);
    }
  }
}

// ---------------------------------------------------------------- national ids
const SSN = /(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d]|-\d)/g;
const SSN_BARE = /(?<![\d-])(\d{3})(\d{2})(\d{4})(?![\d-])/g;
const SSN_CONTEXT = /\b(?:ssn|social security|soc\.? ?sec|ss#|taxpayer id|tin)\b/i;

function nationalIds(text: string, out: Finding[]): void {
  for (const m of text.matchAll(SSN)) {
    if (usSsnValid(m[1], m[3], m[4]))
      push(out, 'NATIONAL_ID', 'us-ssn', text, m.index, m.index + m[0].length);
  }
  for (const m of text.matchAll(SSN_BARE)) {
    // Nine bare digits are an SSN only where the text says so.
    if (usSsnValid(m[1], m[2], m[3]) && contextBefore(text, m.index, SSN_CONTEXT, 30)) {
      push(out, 'NATIONAL_ID', 'us-ssn-bare', text, m.index, m.index + m[0].length);
    }
  }
}

// ---------------------------------------------------------------- GPS coordinates
const GPS_DECIMAL_PAIR =
  /(?<![\w.+-])([-+]?\d{1,2}\.(\d{2,}))\s*[,;/ ]\s*([-+]?\d{1,3}\.(\d{2,}))(?![\w]|[.,]\d)/g;
const GPS_LABELLED =
  /\b(?:lat(?:itude)?)\b["']?\s*[:=]?\s*([-+]?\d{1,2}(?:\.\d+)?)["']?\s*[,;]?\s*["']?(?:lon|lng|long|longitude)\b["']?\s*[:=]?\s*([-+]?\d{1,3}(?:\.\d+)?)/gi;
const GPS_HEMISPHERE =
  /\b\d{1,2}(?:\.\d+)?°?\s*(?:\d{1,2}['′]\s*(?:\d{1,2}(?:\.\d+)?["″]\s*)?)?[NS]\b[,\s]*\d{1,3}(?:\.\d+)?°?\s*(?:\d{1,2}['′]\s*(?:\d{1,2}(?:\.\d+)?["″]\s*)?)?[EW]\b/g;
const GPS_CONTEXT =
  /\b(?:gps|location|loc|position|pos|coordinates?|coords?|lat\/lon|lat\/lng|geo|located at|at)\b/i;

function gps(text: string, out: Finding[]): void {
  for (const m of text.matchAll(GPS_DECIMAL_PAIR)) {
    const lat = Number(m[1]);
    const lon = Number(m[3]);
    if (Math.abs(lat) > 90 || Math.abs(lon) > 180) continue;
    // Bare pairs of numbers are everywhere (readings, prices); four decimals (~10 m) or a place word.
    const decimals = Math.min(m[2].length, m[4].length);
    if (decimals >= 4 || (decimals >= 2 && contextBefore(text, m.index, GPS_CONTEXT, 25))) {
      push(out, 'GPS', 'decimal-pair', text, m.index, m.index + m[0].length);
    }
  }
  for (const m of text.matchAll(GPS_LABELLED)) {
    if (Math.abs(Number(m[1])) <= 90 && Math.abs(Number(m[2])) <= 180) {
      push(out, 'GPS', 'labelled', text, m.index, m.index + m[0].length);
    }
  }
  for (const m of text.matchAll(GPS_HEMISPHERE)) {
    push(out, 'GPS', 'hemisphere', text, m.index, m.index + m[0].trimEnd().length);
  }
}

// ---------------------------------------------------------------- dates of birth
const MONTHS =
  'jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?';
const MONTH_INDEX = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DATE = new RegExp(
  [
    String.raw`(?<iy>\d{4})-(?<im>\d{1,2})-(?<id>\d{1,2})`,
    String.raw`(?<na>\d{1,2})[./-](?<nb>\d{1,2})[./-](?<ny>\d{4}|\d{2})`,
    String.raw`(?<td>\d{1,2})(?:st|nd|rd|th)?\.?\s+(?<tm>${MONTHS})\.?,?\s+(?<ty>\d{4})`,
    String.raw`(?<um>${MONTHS})\.?\s+(?<ud>\d{1,2})(?:st|nd|rd|th)?,?\s+(?<uy>\d{4})`,
  ]
    .map((p) => `(?:${p})`)
    .join('|')
    .replace(/^/, String.raw`(?<![\w.-])(?:`)
    .concat(String.raw`)(?![\w]|[.-]\d)`),
  'gi',
);
const DOB_CONTEXT_ALL =
  /\b(?:born|birth|birthday|birthdate|dob|d\.o\.b|geb\.?|geboren|geburtsdatum|n[ée]e?|date de naissance|fecha de nacimiento|nacid[oa])(?![\w])/gi;

function plausibleBirthDate(g: Record<string, string | undefined>): boolean {
  const thisYear = new Date().getUTCFullYear();
  const year = (y: string): number => (y.length === 2 ? 1900 + Number(y) : Number(y));
  const month = (m: string): number => MONTH_INDEX.indexOf(m.slice(0, 3).toLowerCase()) + 1;
  let y: number, m: number, d: number;
  if (g.iy) [y, m, d] = [Number(g.iy), Number(g.im), Number(g.id)];
  else if (g.ny) {
    y = year(g.ny);
    const a = Number(g.na);
    const b = Number(g.nb);
    // Day-first or month-first: either reading being a real day is enough.
    if (calendarDay(y, b, a)) [m, d] = [b, a];
    else [m, d] = [a, b];
  } else if (g.ty) [y, m, d] = [Number(g.ty), month(g.tm ?? ''), Number(g.td)];
  else [y, m, d] = [Number(g.uy), month(g.um ?? ''), Number(g.ud)];
  return y >= 1900 && y <= thisYear && calendarDay(y, m, d);
}

function birthDates(text: string, out: Finding[], forced: boolean): void {
  let usedContext = -1;
  for (const m of text.matchAll(DATE)) {
    if (!plausibleBirthDate(m.groups ?? {})) continue;
    if (forced) {
      push(out, 'DOB', 'date+field', text, m.index, m.index + m[0].length);
      continue;
    }
    // A date is a date of birth only where the text says so, and one "born" vouches for one date
    // ("born 1985-03-12, admitted 2024-02-01").
    const from = Math.max(0, m.index - 40);
    let cue = -1;
    for (const c of text.slice(from, m.index).matchAll(DOB_CONTEXT_ALL)) cue = from + c.index;
    if (cue < 0 || cue === usedContext) continue;
    usedContext = cue;
    push(out, 'DOB', 'date+context', text, m.index, m.index + m[0].length);
  }
}

// ---------------------------------------------------------------- secrets
interface SecretRule {
  rule: string;
  regex: RegExp;
  /** Capture group holding the secret; 0 = the whole match. */
  group: number;
}

const SECRET_RULES: SecretRule[] = [
  {
    rule: 'private-key',
    regex: /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
    group: 0,
  },
  { rule: 'aws-access-key', regex: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, group: 0 },
  {
    rule: 'github-token',
    regex: /\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b/g,
    group: 0,
  },
  { rule: 'slack-token', regex: /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g, group: 0 },
  { rule: 'slack-webhook', regex: /https:\/\/hooks\.slack\.com\/services\/[A-Za-z0-9/]{20,}/g, group: 0 },
  { rule: 'stripe-key', regex: /\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b/g, group: 0 },
  { rule: 'google-api-key', regex: /\bAIza[0-9A-Za-z_-]{35}(?![\w-])/g, group: 0 },
  { rule: 'llm-api-key', regex: /\bsk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}(?![\w-])/g, group: 0 },
  {
    rule: 'jwt',
    regex: /\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}(?![\w-])/g,
    group: 0,
  },
  { rule: 'bearer', regex: /\b(?:Bearer|Basic|Token)\s+([A-Za-z0-9._~+/-]{16,}=*)/dg, group: 1 },
  { rule: 'url-credentials', regex: /\b[a-z][a-z0-9+.-]*:\/\/[^\s:@/]+:([^\s@/]+)@/dgi, group: 1 },
  {
    rule: 'assignment',
    regex:
      /\b(?:password|passwd|pwd|passphrase|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token|token)\b["']?\s*(?:[:=]|\bis\b)\s*["']?([^\s"',;}{)(]{6,})/dgi,
    group: 1,
  },
];

const NOT_A_SECRET =
  /^(?:null|none|undefined|true|false|required|optional|changeme|\*+|x+|<[^>]*>|\[[^\]]*\]|\$\{[^}]*\}|\{\{[^}]*\}\})$/i;
const TOKEN = /(?<![A-Za-z0-9+/_=.-])[A-Za-z0-9+/_-]{24,}={0,2}(?![A-Za-z0-9+/_=.-])/g;

function secrets(text: string, out: Finding[]): void {
  for (const { rule, regex, group } of SECRET_RULES) {
    for (const m of text.matchAll(regex)) {
      if (group === 0) {
        push(out, 'SECRET', rule, text, m.index, m.index + m[0].length);
        continue;
      }
      const span = m.indices?.[group];
      if (!span || NOT_A_SECRET.test(m[group])) continue;
      push(out, 'SECRET', rule, text, span[0], span[1]);
    }
  }
  // Generated keys look random: mixed case and digits, and near the maximum entropy for their length.
  for (const m of text.matchAll(TOKEN)) {
    const s = m[0];
    if (!/[a-z]/.test(s) || !/[A-Z]/.test(s) || !/\d/.test(s)) continue;
    if ((s.match(/\//g) ?? []).length > 2) continue; // a path
    const h = shannonEntropy(s);
    if (h >= Math.min(4.2, Math.log2(s.length) - 0.45))
      push(out, 'SECRET', 'entropy', text, m.index, m.index + s.length);
  }
}

// ---------------------------------------------------------------- custom patterns
function customs(text: string, out: Finding[], patterns: readonly CompiledCustomPattern[]): void {
  for (const p of patterns) {
    p.regex.lastIndex = 0;
    for (const m of text.matchAll(p.regex)) {
      if (m[0].length === 0) continue;
      if (p.context && !contextBefore(text, m.index, p.context, p.window)) continue;
      push(out, p.name, 'custom', text, m.index, m.index + m[0].length);
    }
  }
}

/** Validates and compiles user-defined patterns; throws an Error naming the bad one. */
export function compileCustomPatterns(patterns: readonly CustomPattern[]): CompiledCustomPattern[] {
  return patterns.map((p, i) => {
    if (!p || typeof p.name !== 'string' || !/^[A-Z][A-Z0-9_]{0,31}$/.test(p.name)) {
      throw new Error(
        `custom pattern ${i + 1}: name must be upper case letters, digits and _ (e.g. ASSET_TAG)`,
      );
    }
    if (typeof p.pattern !== 'string' || p.pattern.length === 0) {
      throw new Error(`custom pattern ${p.name}: pattern is empty`);
    }
    const flags = (p.flags ?? '').replace(/[^imsu]/g, '');
    let regex: RegExp;
    try {
      regex = new RegExp(p.pattern, flags + 'g');
    } catch (err) {
      throw new Error(`custom pattern ${p.name}: ${(err as Error).message}`, { cause: err });
    }
    if (regex.test('')) throw new Error(`custom pattern ${p.name}: matches the empty string`);
    const words = (p.context ?? []).filter((w) => typeof w === 'string' && w.trim() !== '');
    const context =
      words.length > 0
        ? new RegExp(
            `(?:^|\\W)(?:${words.map((w) => w.trim().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})(?:\\W|$)`,
            'i',
          )
        : undefined;
    return { name: p.name, regex, context, window: Number.isFinite(p.window) ? Number(p.window) : 40 };
  });
}

// ---------------------------------------------------------------- field-name hints
const KEY_DOB = /^(?:dob|date_?of_?birth|birth_?date|birthdate|birthday|geburtsdatum)$/i;
const KEY_LAT_LON = /^(?:lat|latitude|lon|lng|long|longitude)$/i;
const KEY_PERSON =
  /^(?:name|full_?name|first_?name|last_?name|given_?name|family_?name|surname|middle_?name|display_?name|contact(?:_?name)?|patient(?:_?name)?|customer(?:_?name)?|operator(?:_?name)?|technician|owner|driver|employee(?:_?name)?|user_?name|person)$/i;
const NAME_VALUE = /^\p{Lu}[\p{L}'’.-]*(?:\s+\p{Lu}[\p{L}'’.-]*){0,3}$/u;

function keyHints(text: string, keyHint: string, types: ReadonlySet<EntityType>, out: Finding[]): void {
  const t = text.trim();
  const start = text.indexOf(t);
  if (t === '') return;
  if (
    types.has('GPS') &&
    KEY_LAT_LON.test(keyHint) &&
    /^[-+]?\d{1,3}\.\d{2,}$/.test(t) &&
    Math.abs(Number(t)) <= 180
  ) {
    push(out, 'GPS', 'field', text, start, start + t.length);
  }
  if (types.has('PERSON') && KEY_PERSON.test(keyHint) && NAME_VALUE.test(t)) {
    push(out, 'PERSON', 'field', text, start, start + t.length);
  }
}

/** Keeps the non-overlapping findings, preferring the more specific type, then the longer span. */
export function resolveOverlaps(findings: Finding[]): Finding[] {
  if (findings.length < 2) return findings;
  const ranked = [...findings].sort(
    (a, b) => priority(b) - priority(a) || b.end - b.start - (a.end - a.start) || a.start - b.start,
  );
  const kept: Finding[] = [];
  for (const f of ranked) {
    if (kept.every((k) => f.end <= k.start || f.start >= k.end)) kept.push(f);
  }
  return kept.sort((a, b) => a.start - b.start);
}

/** All entities in `text`, non-overlapping, in text order. */
export function detect(text: string, options: DetectOptions): Finding[] {
  const { types } = options;
  const out: Finding[] = [];
  const on = (t: BuiltinEntityType): boolean => types.has(t);
  if (on('SECRET')) secrets(text, out);
  if (options.custom && options.custom.length > 0) customs(text, out, options.custom);
  if (on('EMAIL')) emails(text, out);
  if (on('IBAN')) ibans(text, out);
  if (on('CARD')) cards(text, out);
  if (on('NATIONAL_ID')) nationalIds(text, out);
  if (on('MAC')) macs(text, out);
  if (on('IPV6')) ipv6(text, out);
  if (on('IPV4')) ipv4(text, out);
  if (on('GPS')) gps(text, out);
  if (on('DOB')) birthDates(text, out, options.keyHint !== undefined && KEY_DOB.test(options.keyHint));
  if (on('PHONE')) phones(text, out, options.defaultCountry);
  if (options.keyHint !== undefined) keyHints(text, options.keyHint, types, out);
  if (on('PERSON') && options.person !== 'off') {
    for (const p of findPersons(text, options.person ?? 'compromise'))
      push(out, 'PERSON', p.rule, text, p.start, p.end);
  }
  return resolveOverlaps(out);
}
