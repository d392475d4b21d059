import { isIPv4, isIPv6 } from 'node:net';
import type { CountryCode } from 'libphonenumber-js/max';
import type * as Ibantools from 'ibantools' with { 'resolution-mode': 'import' };
import { calendarDay, cardIssuerKnown, luhnValid, shannonEntropy, usSsnValid } from './checksums';
import { phones } from './phone';
import {
  CASELESS_NAME_VALUE,
  findPersons,
  KEY_PERSON,
  KEY_PERSON_ROLE,
  NAME_VALUE,
  roleKey,
  type PersonDetector,
} from './person';
import { holdsOtherScripts } from './scripts';
import { alternatives } from './trie';
import type { BuiltinEntityType, CustomPattern, EntityType, Finding } from './types';

// ibantools ships a CommonJS build under its "require" condition, but its only typings are ESM.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { validateIBAN } = require('ibantools') as typeof Ibantools;

/**
 * Country, length, BBAN format and mod 97 must hold. A wrong national check digit (France's RIB key,
 * Spain's, Belgium's) does not clear it: mod 97 already makes a chance match very unlikely, and a
 * mistyped account number is still someone's account number.
 */
function ibanValid(iban: string): boolean {
  const r = validateIBAN(iban);
  return r.valid || (r.errorCodes.length > 0 && r.errorCodes.every((c) => c === 6));
}

export interface CompiledCustomPattern {
  name: string;
  regex: RegExp;
  context?: RegExp;
  window: number;
}

export interface DetectOptions {
  /** Types to look for; custom pattern names are always looked for. */
  types: ReadonlySet<EntityType>;
  /** Regions (ISO 3166 alpha-2) whose national numbers, written without +/00, are phone numbers. */
  regions: readonly CountryCode[];
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
  /\.(?:service|socket|timer|mount|automount|target|path|slice|scope|swap|device|png|jpe?g|gif|svg|webp|bmp|ico|m?js|cjs|ts|json|ya?ml|txt|log|csv|html?|css|py|sh|exe|dll|so|bin|zip|gz|tar|pdf)$/i;

const EMAIL_AT = new RegExp(EMAIL.source, 'y');
const isLocalChar = (c: number): boolean =>
  isAlnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45;

/**
 * What EMAIL finds, tried only where it can start: at the beginning of the run of address
 * characters before each '@' (the look-behind allows no other start). Most text has few '@'.
 */
function emails(text: string, out: Finding[]): void {
  let from = 0;
  for (let at = text.indexOf('@'); at >= 0; at = text.indexOf('@', Math.max(at + 1, from))) {
    let s = at;
    while (s > 0 && at - s <= 64 && isLocalChar(text.charCodeAt(s - 1))) s--;
    // Only the start of the run may start an address, and not inside the last one found.
    if (s === at || s < from || (s > 0 && isLocalChar(text.charCodeAt(s - 1)))) continue;
    EMAIL_AT.lastIndex = s;
    const m = EMAIL_AT.exec(text);
    if (!m) continue;
    from = m.index + m[0].length;
    if (FILE_EXTENSION.test(m[0])) continue; // asset names such as pump@2x.png
    push(out, 'EMAIL', 'email', text, m.index, m.index + m[0].length);
  }
}

// ---------------------------------------------------------------- IP and MAC
const IPV4 =
  /(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)/g;
const VERSION_BEFORE =
  /(?:\bv|\b(?:version|ver\.?|release|firmware|fw|sw|build|rev|revision|section|chapter|clause|step|item)\s*|§\s*|\b[\w-]*(?:version|ver|firmware|fw|sw|build|release|rev)["']?\s*[:=]\s*["']?)$/i;
/** Field names whose values are versions, not addresses. */
const KEY_VERSION = /(?:version|ver|firmware|fw|sw|build|release|rev|revision)$/i;

function ipv4(text: string, out: Finding[], keyHint?: string): void {
  if (keyHint !== undefined && KEY_VERSION.test(keyHint)) return;
  for (const m of text.matchAll(IPV4)) {
    if (VERSION_BEFORE.test(text.slice(Math.max(0, m.index - 24), m.index))) continue;
    if (isIPv4(m[0])) push(out, 'IPV4', 'ipv4', text, m.index, m.index + m[0].length);
  }
}

/**
 * A run of hex digits and colons holding two colons, after neither a word character, a colon nor
 * a dot, with an IPv4 tail if one follows (::ffff:192.168.1.1 whole, not ::ffff:192). Tried only
 * at the start of the run around each colon.
 */
const IPV6_AT =
  /(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)(?:[0-9A-Fa-f:]{2,39}(?<=:)\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f:]{2,39})(?![\w:])/y;
const isHexOrColon = (c: number): boolean =>
  (c >= 48 && c <= 58) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
const isWordOrDot = (c: number): boolean => isAlnum(c) || c === 95 || c === 46;

/**
 * The IPv6 addresses in `text`: IPV6_AT tried at the start of the run of hex digits and colons around
 * each colon, where no word character or dot stands before it. A run with fewer than seven colons and
 * no "::" is no address (clock times, "key: value"): IPV6_AT's match starts at the run's start and
 * holds no colon outside it, so such a run is passed over without the pattern.
 */
function ipv6(text: string, out: Finding[]): void {
  let c = text.indexOf(':');
  while (c >= 0) {
    let s = c;
    while (s > 0 && isHexOrColon(text.charCodeAt(s - 1))) s--;
    let e = c + 1;
    while (e < text.length && isHexOrColon(text.charCodeAt(e))) e++;
    if (s === 0 || !isWordOrDot(text.charCodeAt(s - 1))) {
      let colons = 0;
      let double = false;
      for (let i = s; i < e; i++) {
        if (text.charCodeAt(i) !== 58) continue;
        colons++;
        if (i > s && text.charCodeAt(i - 1) === 58) double = true;
      }
      if (colons >= 7 || double) {
        IPV6_AT.lastIndex = s;
        const m = IPV6_AT.exec(text);
        if (m) {
          e = Math.max(e, s + m[0].length);
          ipv6Match(text, out, s, m[0]);
        }
      }
    }
    c = text.indexOf(':', e);
  }
}

function ipv6Match(text: string, out: Finding[], index: number, s: string): void {
  // Fewer than eight groups without "::" (clock times) first: the cheapest test, and no address.
  if (!s.includes('::') && s.split(':').length < 8) return;
  // "::" alone is valid-looking but not an address worth hiding.
  if (!/[0-9A-Fa-f]/.test(s) || !isIPv6(s)) return;
  // Eight groups of two hex digits are bytes (a Modbus or CAN frame), not an address.
  if (/^(?:[0-9A-Fa-f]{2}:){7}[0-9A-Fa-f]{2}$/.test(s)) return;
  push(out, 'IPV6', 'ipv6', text, index, index + s.length);
}

/**
 * Six hex pairs apart by colons or hyphens, either case. Before it: no word character or hyphen,
 * and no hex group and colon (the tail of an IPv6 address or an EUI-64), though a label such as
 * "mac:" or "HWaddr:" may stand right before. The look-behinds are bounded: unbounded, a long hex
 * run before a colon took time quadratic in its length.
 */
const MAC =
  /(?<![\w-]|(?<![G-Zg-z_][0-9A-Fa-f]{0,8})[0-9A-Fa-f]{1,8}:)[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![\w:-])/g;
/** Cisco's three dotted groups of four (0011.2233.4455); a full stop may end the sentence after it. */
const MAC_DOTTED = /(?<![\w.])[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}(?!\w|\.\w)/g;
/** Twelve hex digits in one run: a MAC only right after a MAC word or in a MAC field. */
const MAC_BARE = /(?<![\w.:-])[0-9A-Fa-f]{12}(?![\w:-]|\.\w)/g;
/** Words that name a MAC address (or the link it identifies). */
const MAC_WORDS =
  'mac|mac[ _-]?addr(?:ess)?|hw ?addr(?:ess)?|hardware[ _-]?addr(?:ess)?|ether|link/ether|bssid|lladdr|chaddr|eui(?:-?48)?|ble|bluetooth|wlan|wi-?fi';
/** Near a dotted group of decimal digits, the words of network logs count as well. */
const MAC_CONTEXT = new RegExp(`\\b(?:${MAC_WORDS}|station|client|arp|dhcp\\w*|nic)\\b`, 'i');
/** A MAC word and at most a separator, a quote or "is" between it and the value. */
const MAC_CUE_RIGHT_BEFORE = new RegExp(`\\b(?:${MAC_WORDS})["']?\\s*(?:[:=]|is)?\\s*["']?$`, 'i');
/** Field names whose value is a MAC address. */
const KEY_MAC =
  /^(?:[\w-]*[_-])?(?:mac|macaddr|macaddress|mac_?addr(?:ess)?|hwaddr|hw_?addr(?:ess)?|bssid|lladdr|chaddr|ether|eui48)$|^(?:macAddress|hwAddress|macAddr|hwAddr)$/i;

const MAC_DOTTED_AT = new RegExp(MAC_DOTTED.source, 'y');

/**
 * What MAC_DOTTED finds, tried only four characters before each ".hhhh." (hex runs are common), those
 * found from the full stops (a pattern for ".hhhh." looked at every character).
 */
function* macDotted(text: string): Generator<RegExpExecArray> {
  let from = 0;
  for (let a = text.indexOf('.'); a >= 0; a = text.indexOf('.', a + 1)) {
    if (a - 4 < from || text.charCodeAt(a + 5) !== 46) continue;
    if (!isHex(text.charCodeAt(a + 1)) || !isHex(text.charCodeAt(a + 2))) continue;
    if (!isHex(text.charCodeAt(a + 3)) || !isHex(text.charCodeAt(a + 4))) continue;
    MAC_DOTTED_AT.lastIndex = a - 4;
    const m = MAC_DOTTED_AT.exec(text);
    if (!m) continue;
    from = m.index + m[0].length;
    yield m;
  }
}

const MAC_BARE_AT = new RegExp(MAC_BARE.source, 'y');
/** A part of each MAC word: where one is, a bare MAC may follow within 24 characters. */
const MAC_WORD_PART = /mac|addr|ether|bssid|eui|ble|bluetooth|wlan|wi-?fi/gi;
const isHex = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);

/** Where MAC_WORD_PART's global search finds a part, each after the end of the one before. */
function macWordParts(text: string): number[] {
  const at: number[] = [];
  MAC_WORD_PART.lastIndex = 0;
  for (let w = MAC_WORD_PART.exec(text); w; w = MAC_WORD_PART.exec(text)) at.push(w.index);
  return at;
}

/**
 * The MAC_BARE matches that may follow a MAC word (the caller checks the word right before):
 * tried only within 24 characters after a part of such a word (`parts`, as macWordParts finds them).
 */
function* macBareAfterWord(text: string, parts: readonly number[]): Generator<RegExpExecArray> {
  let from = 0;
  for (const w of parts) {
    const last = Math.min(text.length - 12, w + 24);
    for (let p = Math.max(from, w + 1); p <= last; p++) {
      if (!isHex(text.charCodeAt(p))) continue;
      // MAC_BARE's look-behind, asked here first: most hex letters after a MAC word are inside words.
      const b = text.charCodeAt(p - 1);
      if (isAlnum(b) || b === 95 || b === 46 || b === 58 || b === 45) continue;
      MAC_BARE_AT.lastIndex = p;
      const m = MAC_BARE_AT.exec(text);
      if (!m) continue;
      p += m[0].length - 1;
      from = p + 1;
      yield m;
    }
    from = Math.max(from, last + 1);
  }
}

/** `parts`: where the MAC word parts are, as macWordParts finds them (found here if not given). */
function macs(text: string, out: Finding[], keyHint?: string, parts?: readonly number[]): void {
  for (const m of text.matchAll(MAC)) push(out, 'MAC', 'mac', text, m.index, m.index + m[0].length);
  const field = keyHint !== undefined && KEY_MAC.test(keyHint);
  for (const m of macDotted(text)) {
    // Cisco-style dotted MACs look like version or part numbers unless they hold a hex letter or a MAC word.
    if (field || /[A-Fa-f]/.test(m[0]) || contextBefore(text, m.index, MAC_CONTEXT, 30)) {
      push(out, 'MAC', 'mac-dotted', text, m.index, m.index + m[0].length);
    }
  }
  for (const m of field ? text.matchAll(MAC_BARE) : macBareAfterWord(text, parts ?? macWordParts(text))) {
    // Hashes, serials and order numbers are hex runs too: only a MAC word right before, or a MAC field.
    if (field || MAC_CUE_RIGHT_BEFORE.test(text.slice(Math.max(0, m.index - 24), m.index)))
      push(out, 'MAC', 'mac-bare', text, m.index, m.index + m[0].length);
  }
}

// ---------------------------------------------------------------- payment cards (Luhn)
/**
 * `(?<![\d.,-])\d(?:[ -]?\d){11,18}(?![\d]|[.,-]\d)` written out: eleven digits, then seven more each
 * optional inside the one before (greedy, tried longest first as the counted group is). V8 ran the
 * counted group four times slower at every digit of the text.
 */
const CARD_CANDIDATE = new RegExp(
  String.raw`(?<![\d.,-])\d` +
    String.raw`[ -]?\d`.repeat(11) +
    String.raw`(?:[ -]?\d`.repeat(7) +
    ')?'.repeat(7) +
    String.raw`(?![\d]|[.,-]\d)`,
  'g',
);

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
      if (ibanValid(s.replace(/ /g, ''))) {
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
/**
 * US SSNs, grouped (123-45-6789, 123 45 6789) or nine bare digits, in one search where there were
 * two: the two shapes cannot overlap (a bare run after a grouped one's space would need a digit where
 * its separator or its end stands), so one search finds what the two found.
 */
const SSN_EITHER = /(?<![\d-])(\d{3})(?:([- ])(\d{2})\2(\d{4})(?![\d]|-\d)|(\d{2})(\d{4})(?![\d-]))/g;
const SSN_CONTEXT = /\b(?:ssn|social security|soc\.? ?sec|ss#|taxpayer id|tin)\b/i;

function nationalIds(text: string, out: Finding[]): void {
  for (const m of text.matchAll(SSN_EITHER)) {
    if (m[2] !== undefined) {
      if (usSsnValid(m[1], m[3], m[4]))
        push(out, 'NATIONAL_ID', 'us-ssn', text, m.index, m.index + m[0].length);
    } else if (usSsnValid(m[1], m[5], m[6]) && contextBefore(text, m.index, SSN_CONTEXT, 30)) {
      // Nine bare digits are an SSN only where the text says so.
      push(out, 'NATIONAL_ID', 'us-ssn-bare', text, m.index, m.index + m[0].length);
    }
  }
}

// ---------------------------------------------------------------- GPS coordinates
const GPS_DECIMAL_PAIR =
  /(?<![\w.+-])([-+]?\d{1,2}\.(\d{2,}))\s*[,;/ ]\s*([-+]?\d{1,3}\.(\d{2,}))(?![\w]|[.,]\d)/g;
const GPS_LABELLED =
  /\b(?:lat(?:itude)?)\b["']?\s*[:=]?\s*([-+]?\d{1,2}(?:\.\d+)?)["']?\s*[,;]?\s*["']?(?:lon|lng|long|longitude)\b["']?\s*[:=]?\s*([-+]?\d{1,3}(?:\.\d+)?)/gi;
const DMS = String.raw`\d{1,3}(?:[.,]\d+)?\s*°\s*(?:\d{1,2}(?:[.,]\d+)?\s*['′’]\s*(?:\d{1,2}(?:[.,]\d+)?\s*(?:["″”]|''|′′)\s*)?)?`;
const DMS_LOOSE = String.raw`\d{1,3}(?:[.,]\d+)?\s*°?\s*(?:\d{1,2}(?:[.,]\d+)?\s*['′’]\s*(?:\d{1,2}(?:[.,]\d+)?\s*(?:["″”]|''|′′)\s*)?)?`;
const GPS_HEMISPHERE = new RegExp(
  String.raw`(?<![\w.])${DMS_LOOSE}[NS]\b[,;/\s]*${DMS_LOOSE}[EWO]\b|(?<![\w.])[NS]\s*${DMS}[,;/\s]*[EWO]\s*${DMS}`,
  'g',
);
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
  for (const m of hemisphereCoordinates(text)) {
    push(out, 'GPS', 'hemisphere', text, m.index, m.index + m[0].replace(/[\s,;/]+$/, '').length);
  }
}

const GPS_HEMISPHERE_AT = new RegExp(GPS_HEMISPHERE.source, 'y');
/** How far before its N or S a coordinate in degrees may start. */
const HEMISPHERE_REACH = 48;
const isLetterOrUnderscore = (c: number): boolean =>
  (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;

/**
 * What GPS_HEMISPHERE finds (V8 tried it at every digit), tried only where it can start: at an N or S
 * not followed by a letter (every match holds one), or at a number that starts within
 * HEMISPHERE_REACH characters before one. The letters are found by indexOf. An N or S after a letter,
 * "_" or "." ("RMS") is no match's hemisphere letter and starts none; a match the search from it could
 * find holds an earlier letter that is one (only digits, separators, degree signs and primes stand
 * between a match's start and its letter), so without such a letter within reach it is passed over.
 */
function* hemisphereCoordinates(text: string): Generator<RegExpExecArray> {
  let from = 0;
  let lastLetter = -1; // the last N or S that can be a hemisphere letter
  let n = text.indexOf('N');
  let s = text.indexOf('S');
  while (n >= 0 || s >= 0) {
    let h: number;
    if (s < 0 || (n >= 0 && n < s)) {
      h = n;
      n = text.indexOf('N', h + 1);
    } else {
      h = s;
      s = text.indexOf('S', h + 1);
    }
    if (h < from || isLetterOrUnderscore(text.charCodeAt(h + 1))) continue;
    const b = h > 0 ? text.charCodeAt(h - 1) : 0;
    if (isLetterOrUnderscore(b) || b === 46) {
      if (lastLetter < Math.max(from, h - HEMISPHERE_REACH)) continue;
    } else lastLetter = h;
    for (let p = Math.max(from, h - HEMISPHERE_REACH); p <= h; p++) {
      const c = text.charCodeAt(p);
      if (p < h && !(c >= 48 && c <= 57 && (p === 0 || !isWordOrDot(text.charCodeAt(p - 1))))) continue;
      GPS_HEMISPHERE_AT.lastIndex = p;
      const m = GPS_HEMISPHERE_AT.exec(text);
      if (!m) continue;
      from = m.index + m[0].length;
      yield m;
      break;
    }
  }
}

// ---------------------------------------------------------------- dates of birth
/** Month names and abbreviations in English, German, French, Spanish, Italian, Dutch and Portuguese. */
const MONTH_WORDS: string[][] = [
  [
    'january',
    'jan',
    'januar',
    'jänner',
    'janvier',
    'janv',
    'enero',
    'ene',
    'gennaio',
    'gen',
    'januari',
    'janeiro',
  ],
  [
    'february',
    'feb',
    'februar',
    'février',
    'fevrier',
    'févr',
    'fevr',
    'febrero',
    'febbraio',
    'februari',
    'fevereiro',
    'fev',
  ],
  ['march', 'mar', 'märz', 'maerz', 'mär', 'mrz', 'mars', 'marzo', 'maart', 'mrt', 'março', 'marco'],
  ['april', 'apr', 'avril', 'avr', 'abril', 'abr', 'aprile'],
  ['may', 'mai', 'mayo', 'maggio', 'mag', 'mei', 'maio'],
  ['june', 'jun', 'juni', 'juin', 'junio', 'giugno', 'giu', 'junho'],
  ['july', 'jul', 'juli', 'juillet', 'juil', 'julio', 'luglio', 'lug', 'julho'],
  ['august', 'aug', 'août', 'aout', 'agosto', 'ago', 'augustus'],
  ['september', 'sep', 'sept', 'septembre', 'septiembre', 'setiembre', 'settembre', 'set', 'setembro'],
  ['october', 'oct', 'oktober', 'okt', 'octobre', 'octubre', 'ottobre', 'ott', 'outubro', 'out'],
  ['november', 'nov', 'novembre', 'noviembre', 'novembro'],
  [
    'december',
    'dec',
    'dezember',
    'dez',
    'décembre',
    'decembre',
    'déc',
    'diciembre',
    'dic',
    'dicembre',
    'dezembro',
  ],
];
const MONTH_OF = new Map<string, number>();
MONTH_WORDS.forEach((names, i) => names.forEach((n) => MONTH_OF.set(n, i + 1)));
const MONTHS = [...MONTH_OF.keys()].sort((a, b) => b.length - a.length).join('|');
const DATE_TAIL = String.raw`)(?![\w]|[.-]\d)`;
/** Dates that start with a digit: ISO, day-month-year with numbers or a month name, 年月日. */
const DATE = new RegExp(
  String.raw`(?=\d)(?<![\w.-])(?:` +
    [
      String.raw`(?<iy>\d{4})[-/.](?<im>\d{1,2})[-/.](?<id>\d{1,2})`,
      String.raw`(?<na>\d{1,2})(?:[/-]|\.\s?)(?<nb>\d{1,2})(?:[/-]|\.\s?)(?<ny>\d{4}|\d{2})`,
      String.raw`(?<td>\d{1,2})(?:st|nd|rd|th|er|º|°)?\.?(?:\s*(?:de\s+)?|[-/.])(?<tm>${MONTHS})\.?(?:,?\s*(?:de\s+)?|[-/.])(?<ty>\d{4})`,
      String.raw`(?<ky>\d{4})\s*年\s*(?<km>\d{1,2})\s*月\s*(?<kd>\d{1,2})\s*日`,
    ]
      .map((p) => `(?:${p})`)
      .join('|') +
    DATE_TAIL,
  'giu',
);
/** Month-first dates ("March 12, 1985"), looked for only where a word, a day and a year follow. */
const DATE_MONTH_FIRST = new RegExp(
  String.raw`(?<![\w.-])(?:(?<um>${MONTHS})\.?\s+(?<ud>\d{1,2})(?:st|nd|rd|th)?,?\s+(?<uy>\d{4})` + DATE_TAIL,
  'giu',
);
const MONTH_FIRST_SHAPE = /\d(?:st|nd|rd|th)?,?\s+(?:1[89]|20)\d\d/;
/** Words that say a date is a birth date, in the languages above and more. */
const DOB_CONTEXT_ALL =
  /(?:\b(?:born|birth\w*|bday|dob|d\.o\.b|geb(?:\.|oren\b|urts\w*)|geboorte\w*|n[ée]e?(?!\p{L})|dn\b|naissance|ddn|nacid[oa]|nacimiento|f\.\s?nac|nat[oa]\b|nascita|nascid[oa]|nascimento|ur\.|urodzon[ya]|urodzenia|född|født|syntynyt|doğum|narozen[aíý]?|nar\.|született|născut|nașterii|lahir|ngày sinh|sinh ngày|födelse\w*|fødsels\w*|syntymä\w*|szül\.|janm\w*|janam)|生年月日|出生日期|出生|誕生日|생년월일|дата рождения|род\.|(?<![\p{L}\p{M}])(?:γέννηση\S*|γεννήθηκε|γενν\.)|تاريخ الميلاد|مواليد|תאריך לידה|जन्म|วันเกิด|(?:^|[\s(,;])b\.)/giu;

function plausibleBirthDate(g: Record<string, string | undefined>): boolean {
  const thisYear = new Date().getUTCFullYear();
  const year = (y: string): number => (y.length === 2 ? 1900 + Number(y) : Number(y));
  const month = (m: string): number => MONTH_OF.get(m.toLowerCase()) ?? 0;
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
  else if (g.uy) [y, m, d] = [Number(g.uy), month(g.um ?? ''), Number(g.ud)];
  else [y, m, d] = [Number(g.ky), Number(g.km), Number(g.kd)];
  return y >= 1900 && y <= thisYear && calendarDay(y, m, d);
}

/**
 * Where DOB_CONTEXT_ALL may match, in three cheap patterns without the Unicode flag (V8 tried the
 * whole with it slowly at every position, and one alternation of the three at every position too):
 * the starts of its Latin-script words as a trie, " b.", and the words of other scripts (looked for
 * only in text that holds such letters). They match wherever DOB_CONTEXT_ALL does, and in more
 * places; DOB_CUE_AT confirms each.
 */
const DOB_CUE_LATIN = new RegExp(
  // "ne", "né", "née" apart, as DOB_CONTEXT_ALL reads them (no letter after): as a start of a word
  // it was nine in ten of the places found in gateway text ("network", "next"), none of them a cue.
  String.raw`\b(?:n[eé]e?(?![A-Za-z])|${alternatives(
    'born birth bday dob d.o.b geb geboorte dn naissance ddn nacid nacimiento f. nat nascita nascid nascimento ur. urodzon urodzenia född født syntynyt doğum narozen nar. született născut nașterii lahir ngày+sinh sinh+ngày födelse fødsels syntymä szül. janm janam'
      .split(' ')
      .map((w) => w.replace('+', ' ')),
  )})`,
  'gi',
);
/** Before the "b." cue ("[\s(,;]b\." in DOB_CONTEXT_ALL): found from its "b." (rare) by indexOf. */
const DOB_CUE_B_BEFORE = /[\s(,;]/;
function bCueStarts(text: string, into: number[]): void {
  for (const b of ['b.', 'B.']) {
    for (let i = text.indexOf(b, 1); i >= 0; i = text.indexOf(b, i + 1))
      if (DOB_CUE_B_BEFORE.test(text.charAt(i - 1))) into.push(i - 1);
  }
}
const DOB_CUE_OTHER =
  /生年月日|出生日期|出生|誕生日|생년월일|дата рождения|род\.|γέννηση|γεννήθηκε|γενν\.|تاريخ الميلاد|مواليد|תאריך לידה|जन्म|วันเกิด/gi;

/** Every position where `regex` (global) matches, overlapping ones too. */
function starts(text: string, regex: RegExp, into: number[]): void {
  regex.lastIndex = 0;
  for (let m = regex.exec(text); m; m = regex.exec(text)) {
    into.push(m.index);
    regex.lastIndex = m.index + 1;
  }
}
const DOB_CUE_AT = new RegExp(DOB_CONTEXT_ALL.source, 'iuy');
const DATE_AT = new RegExp(DATE.source, 'iuy');
const DATE_MONTH_FIRST_AT = new RegExp(DATE_MONTH_FIRST.source, 'iuy');
/** How far after the start of a birth cue a date may start. */
const DOB_REACH = 40;

/** Birth cues in the text, as [start, end], in order. */
function dobCues(text: string, otherScripts: boolean, latin?: readonly number[]): [number, number][] {
  const candidates = [0];
  if (latin) for (const p of latin) candidates.push(p);
  else starts(text, DOB_CUE_LATIN, candidates);
  bCueStarts(text, candidates);
  if (otherScripts) starts(text, DOB_CUE_OTHER, candidates);
  candidates.sort((a, b) => a - b);
  const cues: [number, number][] = [];
  let next = 0;
  for (const c of candidates) {
    if (c < next) continue;
    DOB_CUE_AT.lastIndex = c;
    const e = DOB_CUE_AT.exec(text);
    next = c + 1;
    if (!e) continue;
    cues.push([e.index, e.index + e[0].length]);
    next = Math.max(c + 1, e.index + e[0].length);
  }
  return cues;
}

/**
 * Dates of birth in running text: a birth cue first (rare), then the dates that start within
 * DOB_REACH characters of it; one cue vouches for one date ("born 1985-03-12, admitted 2024-02-01").
 */
function birthDatesNearCues(
  text: string,
  out: Finding[],
  otherScripts: boolean,
  latin?: readonly number[],
): void {
  const cues = dobCues(text, otherScripts, latin);
  if (cues.length === 0) return;
  const monthFirst = MONTH_FIRST_SHAPE.test(text);
  let usedContext = -1;
  let next = 0;
  let k = 0; // cues before k end too early to vouch for what follows
  for (const [cueStart, cueEnd] of cues) {
    const last = Math.min(text.length - 1, cueStart + DOB_REACH);
    for (let p = Math.max(next, cueEnd); p <= last; p++) {
      const c = text.charCodeAt(p);
      let m: RegExpExecArray | null = null;
      if (c >= 48 && c <= 57) {
        DATE_AT.lastIndex = p;
        m = DATE_AT.exec(text);
      } else if (monthFirst && c > 64 && (p === 0 || !isWordOrDash(text.charCodeAt(p - 1)))) {
        DATE_MONTH_FIRST_AT.lastIndex = p;
        m = DATE_MONTH_FIRST_AT.exec(text);
      }
      if (!m) continue;
      next = m.index + m[0].length;
      p = next - 1;
      if (!plausibleBirthDate(m.groups ?? {})) continue;
      // The last cue wholly within DOB_REACH characters before the date vouches for it.
      while (k < cues.length && cues[k][0] < m.index - DOB_REACH) k++;
      let cue = -1;
      for (let j = k; j < cues.length && cues[j][1] <= m.index; j++) cue = cues[j][0];
      if (cue < 0 || cue === usedContext) continue;
      usedContext = cue;
      push(out, 'DOB', 'date+context', text, m.index, next);
    }
  }
}
const isWordOrDash = (c: number): boolean =>
  (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 46 || c === 45;

/** `latin`: where DOB_CUE_LATIN matches, when already found. */
function birthDates(
  text: string,
  out: Finding[],
  forced: boolean,
  otherScripts: boolean,
  latin?: readonly number[],
): void {
  if (!forced) return birthDatesNearCues(text, out, otherScripts, latin);
  let usedContext = -1;
  const dates = MONTH_FIRST_SHAPE.test(text)
    ? [...text.matchAll(DATE), ...text.matchAll(DATE_MONTH_FIRST)].sort((a, b) => a.index - b.index)
    : text.matchAll(DATE);
  for (const m of dates) {
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
  /**
   * A cheap test that must pass before the rule is run: true wherever the rule can match (searches
   * for the literal text every match holds, rather than a pattern tried at every character).
   */
  hint?: (text: string, underscores: () => UnderscoreHints) => boolean;
  /** Every match starts with one of these: the rule is tried only where one occurs. */
  anchors?: readonly string[];
  /** Its match starts with a word of SECRET_WORDS: tried only where one starts. */
  atWords?: boolean;
}

const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g;

/** PEM blocks run to kilobytes: looked for in the whole text, not chunk by chunk. */
function privateKeys(text: string, out: Finding[]): void {
  for (const m of text.matchAll(PRIVATE_KEY))
    push(out, 'SECRET', 'private-key', text, m.index, m.index + m[0].length);
}

/** Whether `literal` occurs in `text` at a position where `ok` holds. */
function holdsAt(text: string, literal: string, ok: (at: number) => boolean): boolean {
  for (let i = text.indexOf(literal); i >= 0; i = text.indexOf(literal, i + 1)) if (ok(i)) return true;
  return false;
}
interface UnderscoreHints {
  github: boolean;
  stripe: boolean;
}
/**
 * Whether the GitHub ("gh?_", "github_pat_") and Stripe ("k_live_", "k_test_") hints occur: found
 * from the underscores, rare in text (searches for "gh", "github_pat_" or "k_live_" stopped at every
 * "g" or "k").
 */
function underscoreHints(text: string): UnderscoreHints {
  const found = { github: false, stripe: false };
  for (let i = text.indexOf('_'); i >= 0; i = text.indexOf('_', i + 1)) {
    if (
      !found.github &&
      ((i >= 3 && text.startsWith('gh', i - 3) && 'pousr'.includes(text.charAt(i - 1))) ||
        (i >= 6 && text.startsWith('github_pat_', i - 6)))
    )
      found.github = true;
    if (
      !found.stripe &&
      text.charCodeAt(i - 1) === 107 &&
      (text.startsWith('_live_', i) || text.startsWith('_test_', i))
    )
      found.stripe = true;
    if (found.github && found.stripe) break;
  }
  return found;
}
/** The user of a URL with credentials, from its "://" (found from its "//": colons are common). */
const URL_USER_AT = /:\/\/[^\s@/]+@/y;
const urlUserAt = (text: string, at: number): boolean => {
  URL_USER_AT.lastIndex = at;
  return URL_USER_AT.test(text);
};

const SECRET_RULES: SecretRule[] = [
  {
    rule: 'aws-access-key',
    regex: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g,
    group: 0,
    hint: (t) => t.includes('AKIA') || t.includes('ASIA'),
  },
  {
    rule: 'github-token',
    regex: /\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b/g,
    group: 0,
    hint: (_t, underscores) => underscores().github,
  },
  {
    rule: 'slack-token',
    regex: /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g,
    group: 0,
    hint: (t) => t.includes('xox'),
  },
  {
    rule: 'slack-webhook',
    regex: /https:\/\/hooks\.slack\.com\/services\/[A-Za-z0-9/]{20,}/g,
    group: 0,
    hint: (t) =>
      holdsAt(t, 'ks.sl', (i) => i >= 3 && t.startsWith('hoo', i - 3) && t.startsWith('ack', i + 5)),
  },
  {
    rule: 'stripe-key',
    regex: /\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b/g,
    group: 0,
    hint: (_t, underscores) => underscores().stripe,
  },
  {
    rule: 'google-api-key',
    regex: /\bAIza[0-9A-Za-z_-]{35}(?![\w-])/g,
    group: 0,
    hint: (t) => t.includes('AIza'),
  },
  {
    rule: 'llm-api-key',
    regex: /\bsk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}(?![\w-])/g,
    group: 0,
    hint: (t) => holdsAt(t, 'k-', (i) => t.charCodeAt(i - 1) === 115),
  },
  {
    rule: 'jwt',
    regex: /\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}(?![\w-])/g,
    group: 0,
    // 'y' is rarer than 'e' in text: the search steps from one to the next faster.
    hint: (t) => holdsAt(t, 'yJ', (i) => t.charCodeAt(i - 1) === 101),
  },
  {
    rule: 'bearer',
    regex: /\b(?:Bearer|Basic|Token)\s+([A-Za-z0-9._~+/-]{16,}=*)/dg,
    group: 1,
    anchors: ['Bearer', 'Basic', 'Token'],
  },
  {
    rule: 'url-credentials',
    regex: /\b[a-z][a-z0-9+.-]*:\/\/[^\s:@/]+:([^\s@/]+)@/dgi,
    group: 1,
    hint: (t) => holdsAt(t, '//', (i) => t.charCodeAt(i - 1) === 58 && urlUserAt(t, i - 1)),
  },
  {
    rule: 'assignment',
    // Tried only where a word of SECRET_WORDS starts (secretWordStarts), not by a scan of its own.
    atWords: true,
    // The words as a trie, shorter first as in a flat list (V8 tried them in turn at every word).
    regex: new RegExp(
      String.raw`\b(?:${alternatives(
        'password passwd pwd passphrase secret client~secret api~key apikey access~key secret~key private~key access~token auth~token refresh~token token'
          .split(' ')
          .flatMap((w) => (w.includes('~') ? ['_', '-', ''].map((s) => w.replace('~', s)) : [w])),
        { shortestFirst: true },
      )})\b["']?\s*(?:[:=]|\bis\b)\s*["']?([^\s"',;}{)(]{6,})`,
      'dgi',
    ),
    group: 1,
  },
];

/** Words that name a secret; "~" stands for "_", " ", "-" or nothing, "+" for a space. */
const SECRET_WORDS = (
  'password passwort passwd pwd passphrase passcode kennwort mot+de+passe contraseña clave senha ' +
  'wachtwoord secret token api~key apikey access~key secret~key private~key auth~token access~token ' +
  'refresh~token client~secret key pin'
)
  .split(' ')
  // "api~key": api_key, api key, api-key, apikey.
  .flatMap((w) => (w.includes('~') ? ['_', ' ', '-', ''].map((s) => w.replace('~', s)) : [w]))
  .map((w) => w.replace(/\+/g, ' '));
/** A secret named in words: "token 3f9a…", "password: hunter2.", "API key is sk-…". */
const SECRET_CUE = new RegExp(
  // A trie of the words (shorter first where one starts another, "secret" before "secret key", as the
  // flat list this was tried them): V8 tried the forty words in turn at every position.
  String.raw`(?:${alternatives(SECRET_WORDS, { shortestFirst: true })})\b["']?\s*(?:[:=]|\b(?:is|was|ist|est|es|é)\b)?\s*["']?([^\s"',;}{)(<>]{8,})`,
  'dgi',
);

/** Where a word of SECRET_WORDS starts, overlapping ones too, in order. */
const SECRET_WORD_FIND = new RegExp(alternatives(SECRET_WORDS), 'gi');
function secretWordStarts(text: string): number[] {
  const at: number[] = [];
  starts(text, SECRET_WORD_FIND, at);
  return at;
}

// ---------------------------------------------------------------- words of several detectors
/** Which word lists one search finds: the secret words, the MAC word parts, the Latin birth cues. */
interface WordLists {
  secret: boolean;
  mac: boolean;
  dob: boolean;
}
/** Where the words of each list asked for start, as each list's own search finds them. */
interface WordStarts {
  /** Every place a word of SECRET_WORDS starts, as secretWordStarts. */
  secret?: number[];
  /** As macWordParts: MAC_WORD_PART's global search, each part after the end of the one before. */
  mac?: number[];
  /** Every place DOB_CUE_LATIN matches, as dobCues looks for them. */
  dob?: number[];
}
const MAC_PARTS = ['mac', 'addr', 'ether', 'bssid', 'eui', 'ble', 'bluetooth', 'wlan', 'wifi', 'wi-fi'];
const SECRET_WORD_AT = new RegExp(SECRET_WORD_FIND.source, 'iy');
const MAC_WORD_PART_AT = new RegExp(MAC_WORD_PART.source, 'iy');
const DOB_CUE_LATIN_AT = new RegExp(DOB_CUE_LATIN.source, 'iy');
/** One pattern per choice of lists: matches wherever a word of one of them does. */
const wordSearches = new Map<string, RegExp>();
function wordSearch(lists: WordLists): RegExp {
  const key = `${+lists.secret}${+lists.mac}${+lists.dob}`;
  let r = wordSearches.get(key);
  if (!r) {
    // The secret words and MAC parts as one trie (V8 tries a trie's first letters once, where it
    // tried each list's in turn); the birth cues keep their own branch for their \b, first (a few per
    // cent faster so; which branch matches first at a place does not change the places found).
    const trie = alternatives([...(lists.secret ? SECRET_WORDS : []), ...(lists.mac ? MAC_PARTS : [])]);
    const branches = [...(lists.dob ? [DOB_CUE_LATIN.source] : []), ...(trie ? [trie] : [])];
    wordSearches.set(key, (r = new RegExp(branches.join('|'), 'gi')));
  }
  return r;
}

/**
 * The word lists of several detectors in one search of the text instead of one search per list
 * (each such search looked at every character: 2-3 ms per MB each). At each place the search
 * stops, each list's own pattern is asked whether it matches there.
 */
function wordStarts(text: string, lists: WordLists): WordStarts {
  const found: WordStarts = {
    secret: lists.secret ? [] : undefined,
    mac: lists.mac ? [] : undefined,
    dob: lists.dob ? [] : undefined,
  };
  const search = wordSearch(lists);
  let macEnd = 0;
  search.lastIndex = 0;
  for (let m = search.exec(text); m; m = search.exec(text)) {
    const p = m.index;
    if (found.secret) {
      SECRET_WORD_AT.lastIndex = p;
      if (SECRET_WORD_AT.test(text)) found.secret.push(p);
    }
    if (found.mac && p >= macEnd) {
      MAC_WORD_PART_AT.lastIndex = p;
      if (MAC_WORD_PART_AT.test(text)) {
        found.mac.push(p);
        macEnd = MAC_WORD_PART_AT.lastIndex;
      }
    }
    if (found.dob) {
      DOB_CUE_LATIN_AT.lastIndex = p;
      if (DOB_CUE_LATIN_AT.test(text)) found.dob.push(p);
    }
    search.lastIndex = p + 1;
  }
  return found;
}

/**
 * The matches of `sticky` that a global search with it would find, tried only at `candidates`
 * (every place such a match can start, in order). `wordStart`: only the matches that start a word or
 * follow an underscore, what a leading `(?:\b|(?<=_))` would give, without V8 trying that
 * look-behind at every position of the text.
 */
function* matchesAt(
  text: string,
  sticky: RegExp,
  candidates: readonly number[],
  wordStart: boolean,
): Generator<RegExpExecArray> {
  let from = 0;
  for (const p of candidates) {
    if (p < from) continue;
    sticky.lastIndex = p;
    const m = sticky.exec(text);
    if (!m) continue;
    if (wordStart && p > 0 && isAlnum(text.charCodeAt(p - 1))) {
      from = p + 1; // the same position with a word start may match further on
      continue;
    }
    from = m.index + m[0].length;
    yield m;
  }
}

/** What a named secret must look like when no `:` or `=` stands between: not a plain word. */
function secretShaped(v: string): boolean {
  if (/^[0-9a-f]{16,}$/i.test(v)) return true;
  return /\d/.test(v) && /[A-Za-z]/.test(v) && v.length >= 8;
}

const NOT_A_SECRET =
  /^(?:null|none|undefined|true|false|required|optional|changeme|\*+|x+|<[^>]*>|\[[^\]]*\]|\$\{[^}]*\}|\{\{[^}]*\}\})$/i;
const isTokenChar = (c: number): boolean =>
  (c >= 48 && c <= 57) ||
  (c >= 65 && c <= 90) ||
  (c >= 97 && c <= 122) ||
  c === 43 ||
  c === 47 ||
  c === 95 ||
  c === 45;
/** isTokenChar as a table: longTokens reads most of the text's letters, a third faster so. */
const TOKEN_CHAR = new Uint8Array(128);
for (let c = 0; c < 128; c++) TOKEN_CHAR[c] = isTokenChar(c) ? 1 : 0;
function tokenAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return c < 128 && TOKEN_CHAR[c] === 1;
}
const isAlnum = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);

/**
 * Runs of 24 or more base64/URL-safe characters (with = padding) standing alone: what
 * /(?<![A-Za-z0-9+/_=.-])[A-Za-z0-9+/_-]{24,}={0,2}(?![A-Za-z0-9+/_=-]|\.[A-Za-z0-9])/ matches, in
 * one pass over the text instead of a lookbehind at every position.
 */
function* longTokens(text: string): Generator<[number, string]> {
  const n = text.length;
  // Every run of 24 or more holds a position p with p % 24 === 23: only the runs around those
  // positions are read, so most of the text is never looked at.
  for (let p = 23; p < n; p += 24) {
    if (!tokenAt(text, p)) continue;
    let start = p;
    while (start > 0 && tokenAt(text, start - 1)) start--;
    let end = p + 1;
    while (end < n && tokenAt(text, end)) end++;
    // The next sample inside this run would find it again.
    while (p + 24 < end) p += 24;
    if (end - start < 24) continue;
    const before = start > 0 ? text.charCodeAt(start - 1) : 0;
    if (before === 61 || before === 46) continue; // '=' or '.' before: part of something longer
    let pad = 0;
    while (end < n && text.charCodeAt(end) === 61 && pad < 2) {
      end++;
      pad++;
    }
    const next = end < n ? text.charCodeAt(end) : 0;
    if ((next < 128 && TOKEN_CHAR[next] === 1) || next === 61) continue;
    if (next === 46 && end + 1 < n && isAlnum(text.charCodeAt(end + 1))) continue;
    yield [start, text.slice(start, end)];
  }
}

const stickyOf = new Map<RegExp, RegExp>();
const sticky = (r: RegExp): RegExp => {
  let s = stickyOf.get(r);
  if (!s) stickyOf.set(r, (s = new RegExp(r.source, r.flags.replace('g', 'y'))));
  return s;
};

/** Where each of `literals` occurs in `text`, in order. */
function anchorsIn(text: string, literals: readonly string[]): number[] {
  const at: number[] = [];
  for (const literal of literals)
    for (let i = text.indexOf(literal); i >= 0; i = text.indexOf(literal, i + 1)) at.push(i);
  return literals.length > 1 ? at.sort((a, b) => a - b) : at;
}

/** `words`: where the words of SECRET_WORDS start, when already found. */
function secrets(text: string, out: Finding[], withPrivateKeys: boolean, words?: readonly number[]): void {
  if (withPrivateKeys) privateKeys(text, out);
  // The words that name a secret, found once for the rules that start with one.
  words ??= secretWordStarts(text);
  let under: UnderscoreHints | undefined;
  const underscores = (): UnderscoreHints => (under ??= underscoreHints(text));
  for (const { rule, regex, group, hint, anchors, atWords } of SECRET_RULES) {
    if (hint && !hint(text, underscores)) continue;
    const found = atWords
      ? matchesAt(text, sticky(regex), words, false)
      : anchors
        ? matchesAt(text, sticky(regex), anchorsIn(text, anchors), false)
        : text.matchAll(regex);
    for (const m of found) {
      if (group === 0) {
        push(out, 'SECRET', rule, text, m.index, m.index + m[0].length);
        continue;
      }
      const span = m.indices?.[group];
      if (!span || NOT_A_SECRET.test(m[group])) continue;
      push(out, 'SECRET', rule, text, span[0], span[1]);
    }
  }
  for (const m of matchesAt(text, sticky(SECRET_CUE), words, true)) {
    const span = m.indices?.[1];
    if (!span) continue;
    // A full stop or comma right after is the sentence's, not the key's.
    let v = m[1];
    let end = span[1];
    while (/[.,:!?]$/.test(v) && !/[!?]$/.test(v.slice(0, -1)) && /[.,:]$/.test(v)) {
      v = v.slice(0, -1);
      end--;
    }
    if (v.length < 6 || NOT_A_SECRET.test(v)) continue;
    const separated = /[:=]|\b(?:is|was|ist|est|es|é)\b/i.test(text.slice(m.index, span[0]));
    if (!separated && !secretShaped(v)) continue;
    push(out, 'SECRET', 'named', text, span[0], end);
  }
  // Generated keys look random: mixed case and digits, and near the maximum entropy for their length.
  for (const [index, s] of longTokens(text)) {
    const m = { index };
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
const KEY_DOB =
  /(?:^|[_-])(?:dob|birth|born|geburt|geboorte|naissance|nacimiento|nascita|nascimento)|^(?:dateOfBirth|birthDate|birthday|geburtsdatum|geboortedatum)$/i;
/** Field names whose values are phone numbers. */
const KEY_PHONE =
  /(?:phone|tel|telefon|telefono|mobile|mobil|cell|fax|handy|gsm|whatsapp|msisdn)(?:_?(?:no|nr|number))?$/i;
/** Field names whose whole value is a secret. */
const KEY_SECRET =
  /^(?:[\w-]*[_-])?(?:password|passwd|pwd|pass|passphrase|passcode|secret|token|api_?key|apikey|access_?key|secret_?key|private_?key|auth|authorization|credentials?|pin|client_?secret|access_?token|refresh_?token|auth_?token)$|^(?:apiKey|accessToken|refreshToken|clientSecret|privateKey|secretKey|authToken)$/i;
/** In a name field, up to eight words (a title and four names, particles between) of letters with a capital somewhere: "Kadar rodriguez Ulloa, Yolanda". */
const NAME_WORDS_VALUE = /^(?=[^]*\p{Lu})(?:[\p{L}\p{M}'’.-]+,?(?:\s+|$)){1,8}$/u;
const KEY_LAT_LON = /^(?:lat|latitude|lon|lng|long|longitude)$/i;

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
  if (
    types.has('PERSON') &&
    (KEY_PERSON.test(keyHint) || KEY_PERSON_ROLE.test(roleKey(keyHint))) &&
    (NAME_VALUE.test(t) || NAME_WORDS_VALUE.test(t) || CASELESS_NAME_VALUE.test(t))
  ) {
    push(out, 'PERSON', 'field', text, start, start + t.length);
  }
  if (types.has('SECRET') && KEY_SECRET.test(keyHint) && t.length >= 4 && !NOT_A_SECRET.test(t)) {
    push(out, 'SECRET', 'field', text, start, start + t.length);
  }
}

/** Ranks two overlapping findings: higher priority, then the longer span, then the earlier one. */
function better(a: Finding, b: Finding): number {
  return priority(b) - priority(a) || b.end - b.start - (a.end - a.start) || a.start - b.start;
}

/** The best non-overlapping findings of one cluster (findings chained by overlaps), by start. */
function pickCluster(cluster: Finding[]): Finding[] {
  const chosen: Finding[] = [];
  for (const f of cluster.sort(better)) {
    // chosen is sorted and non-overlapping: only the neighbours at f's position can overlap it.
    let lo = 0;
    let hi = chosen.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (chosen[mid].start < f.start) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && chosen[lo - 1].end > f.start) continue;
    if (lo < chosen.length && chosen[lo].start < f.end) continue;
    chosen.splice(lo, 0, f);
  }
  return chosen;
}

const byStart = (a: Finding, b: Finding): number => a.start - b.start || b.end - a.end;
/** Findings settled in one step of resolveOverlapsSteps. */
const RESOLVE_STEP = 4_096;

/**
 * Keeps the non-overlapping findings, preferring the more specific type, then the longer span.
 * Sorted by start, findings fall into clusters that overlap nothing outside themselves; each cluster
 * is settled on its own, so the cost grows with n log n, not with n².
 */
export function resolveOverlaps(findings: Finding[]): Finding[] {
  const steps = resolveOverlapsSteps(findings);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** resolveOverlaps, yielding after the sort and after every RESOLVE_STEP findings. */
function* resolveOverlapsSteps(findings: Finding[]): Generator<number, Finding[], void> {
  if (findings.length < 2) return findings;
  const sorted = [...findings].sort(byStart);
  if (sorted.length > RESOLVE_STEP) yield 0;
  const kept: Finding[] = [];
  let cluster: Finding[] = [];
  let clusterEnd = -1;
  const flush = (): void => {
    if (cluster.length === 1) kept.push(cluster[0]);
    else if (cluster.length > 1) for (const f of pickCluster(cluster)) kept.push(f);
    cluster = [];
  };
  for (let i = 0; i < sorted.length; i++) {
    const f = sorted[i];
    if (f.start >= clusterEnd) {
      flush();
      clusterEnd = f.end;
      if (i > 0 && i % RESOLVE_STEP === 0) yield i;
    } else clusterEnd = Math.max(clusterEnd, f.end);
    cluster.push(f);
  }
  flush();
  return kept;
}

const HAS_YEAR = /(?:19|20)\d\d|年/;
/**
 * Digits with at most single spaces or dashes between, 9 or more: cards and SSNs need that. Written
 * out: as `\d(?:[ -]?\d){8}` V8 took six times as long over a window that holds none.
 */
const HAS_DIGIT_RUN = /\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d/;
const HAS_HEX_PAIR_SEP = /[0-9A-Fa-f]{2}[:-][0-9A-Fa-f]{2}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}|[0-9A-Fa-f]{12}/;

/** Every detector but the whole-text ones, on one piece of text; offsets relative to it. */
function scanWindow(text: string, options: DetectOptions, out: Finding[], wholeText: boolean): void {
  const { types } = options;
  const on = (t: BuiltinEntityType): boolean => types.has(t);
  // Asked once per window, by the first detector that needs it.
  let others: boolean | undefined;
  const otherScripts = (): boolean => (others ??= holdsOtherScripts(text));
  const { keyHint } = options;
  const macOn = on('MAC') && HAS_HEX_PAIR_SEP.test(text);
  const dobForced = on('DOB') && keyHint !== undefined && KEY_DOB.test(keyHint);
  // A birth date has a four-digit year (or 年); the cue is looked for only near such dates.
  const dobOn = on('DOB') && (dobForced || HAS_YEAR.test(text));
  // The word lists this window is searched for, in one search where two or more are.
  const lists: WordLists = {
    secret: on('SECRET'),
    mac: macOn && !(keyHint !== undefined && KEY_MAC.test(keyHint)),
    dob: dobOn && !dobForced,
  };
  const words = +lists.secret + +lists.mac + +lists.dob >= 2 ? wordStarts(text, lists) : undefined;
  if (on('SECRET')) secrets(text, out, wholeText, words?.secret);
  if (options.custom && options.custom.length > 0) customs(text, out, options.custom);
  // Cheap tests first: most text holds no '@', no long digit run, no date cue.
  if (on('EMAIL') && text.includes('@')) emails(text, out);
  // No test for "[A-Z]{2}\d{2}" first: where it holds, its search came on top of ibans' own, which
  // costs the same where it does not.
  if (on('IBAN')) ibans(text, out);
  const longDigits = HAS_DIGIT_RUN.test(text);
  if (on('CARD') && longDigits) cards(text, out);
  if (on('NATIONAL_ID') && longDigits) nationalIds(text, out);
  if (macOn) macs(text, out, keyHint, words?.mac);
  if (on('IPV6') && text.includes(':')) ipv6(text, out);
  if (on('IPV4') && text.includes('.')) ipv4(text, out, options.keyHint);
  if (on('GPS')) gps(text, out);
  if (dobOn) birthDates(text, out, dobForced, otherScripts(), words?.dob);
  if (on('PHONE')) {
    const before = out
      .filter((f) => priority(f) > PRIORITY.PHONE)
      .map((f): [number, number] => [f.start, f.end])
      .sort((x, y) => x[0] - y[0]);
    // Whether a finding holds [s, e]: the furthest end of those that start at s or before. The
    // candidates come in text order, so the findings are read once (each candidate asking all of them
    // was most of the phone detector's own time in a window with many findings).
    let next = 0;
    let furthest = -1;
    let last = -1;
    const taken = (s: number, e: number): boolean => {
      if (s < last) [next, furthest] = [0, -1];
      last = s;
      for (; next < before.length && before[next][0] <= s; next++)
        furthest = Math.max(furthest, before[next][1]);
      return furthest >= e;
    };
    phones(
      text,
      out,
      options.regions,
      options.keyHint !== undefined && KEY_PHONE.test(options.keyHint),
      before.length > 0 ? taken : undefined,
    );
  }
  if (on('PERSON') && options.person !== 'off') {
    for (const p of findPersons(text, options.person ?? 'names', otherScripts()))
      push(out, 'PERSON', p.rule, text, p.start, p.end);
  }
}

/** Characters scanned in one step; a step of the slowest detectors stays well under 50 ms. */
export const CHUNK = 16_384;
/** Context read before a chunk (cue words) and after it (an entity that starts inside runs on). */
const LEAD = 256;
const TAIL = 2_048;
/**
 * Past this many characters after a chunk, its window ends at the next line break: what starts in
 * the chunk and is shorter than that, and the line after it (a family name on the next line), is
 * read whole, and most windows stop a few hundred characters on rather than TAIL (the 2,048 read
 * again in every window were a tenth of the work).
 */
const TAIL_LINE = 512;

/** Where the window of a chunk that ends at `b` ends: after a line break past TAIL_LINE, else TAIL on. */
function windowEnd(text: string, b: number): number {
  const most = Math.min(text.length, b + TAIL);
  const nl = text.indexOf('\n', b + TAIL_LINE);
  return nl >= 0 && nl < most ? nl + 1 : most;
}

/** Where a chunk ending near `target` should end: a line break, else a space, else `target`. */
function cutPoint(text: string, target: number): number {
  if (target >= text.length) return text.length;
  const nl = text.lastIndexOf('\n', target);
  if (nl > target - 2_048) return nl + 1;
  const sp = text.lastIndexOf(' ', target);
  if (sp > target - 256) return sp + 1;
  return target;
}

/**
 * Detection in steps of about CHUNK characters: yields after each step so that a caller can let the
 * event loop run, and returns all entities, non-overlapping, in text order. An entity that starts in
 * a chunk belongs to it and is read to its end (up to TAIL characters on); PEM private keys, which
 * run longer, are looked for in the whole text first.
 */
export function* detectSteps(text: string, options: DetectOptions): Generator<number, Finding[], void> {
  const out: Finding[] = [];
  if (text.length <= CHUNK + TAIL) scanWindow(text, options, out, true);
  else {
    if (options.types.has('SECRET')) {
      privateKeys(text, out); // the whole text at once: a step of its own
      yield 0;
    }
    for (let a = 0; a < text.length;) {
      const b = cutPoint(text, a + CHUNK);
      const from = Math.max(0, a - LEAD);
      const found: Finding[] = [];
      scanWindow(text.slice(from, windowEnd(text, b)), options, found, false);
      const mine: Finding[] = [];
      for (const f of found) {
        // The window's own findings: moved to the text's offsets in place rather than copied.
        const start = f.start + from;
        if (start < a || start >= b) continue;
        f.start = start;
        f.end += from;
        mine.push(f);
      }
      // In resolveOverlaps' order (a stable sort, as its own): chunk after chunk, the findings then
      // arrive sorted, and its sort of all of them at the end is one pass rather than one long step.
      mine.sort(byStart);
      for (const f of mine) out.push(f);
      a = b;
      yield a;
    }
  }
  if (options.keyHint !== undefined) keyHints(text, options.keyHint, options.types, out);
  if (out.length > 5_000) yield text.length;
  return yield* resolveOverlapsSteps(out);
}

/** All entities in `text`, non-overlapping, in text order. */
export function detect(text: string, options: DetectOptions): Finding[] {
  const steps = detectSteps(text, options);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}
