import { Metadata, type MetadataJson } from 'libphonenumber-js/core';
import metadataJson from 'libphonenumber-js/metadata.max.json';
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { alternatives } from './trie';
import type { Finding } from './types';

/**
 * Regions whose national numbers (written without +/00) are recognised when no list is configured:
 * Europe, the Americas, Asia, Africa and Oceania, with the gateway's own region put first.
 */
export const DEFAULT_REGIONS: readonly string[] = (
  'US CA MX BR AR CL CO PE GB IE DE AT CH FR BE NL LU ES PT IT PL CZ SK HU RO BG GR HR SI RS SE NO DK FI ' +
  'EE LV LT UA TR IL AE SA EG MA ZA NG KE GH IN PK BD LK CN HK TW JP KR VN TH MY SG ID PH AU NZ ' +
  'GE AM AZ KZ MD BA MK AL ME IS MT CY QA KW JO LB DZ TN ET TZ UG VE EC UY CR PA DO NP KH'
).split(' ');

/** The region of the gateway's locale (LANG, LC_ALL or Intl), if it names one. */
export function gatewayRegion(): string | undefined {
  for (const v of [process.env.LC_ALL, process.env.LC_TELEPHONE, process.env.LANG]) {
    const m = /^[a-z]{2,3}[_-]([A-Z]{2})\b/.exec(v ?? '');
    if (m) return m[1];
  }
  const locale = Intl.DateTimeFormat().resolvedOptions().locale;
  return /-([A-Z]{2})\b/.exec(locale)?.[1];
}

/** The regions to try, in order: the configured ones, else the gateway's then the defaults. */
export function phoneRegions(
  configured: readonly string[] | undefined,
  defaultCountry?: string,
): CountryCode[] {
  const list =
    configured && configured.length > 0 ? [...configured] : [gatewayRegion() ?? '', ...DEFAULT_REGIONS];
  if (defaultCountry) list.unshift(defaultCountry);
  return [...new Set(list.filter((r) => /^[A-Z]{2}$/.test(r)))] as CountryCode[];
}

// Candidates are cut with a cheap regex and validated by libphonenumber-js against the numbering
// plans; its own text scanner is several times slower on long text.
const PHONE_CANDIDATE = /(?<![\w+.,/:-])(?:\+|\b00)?\(?\d[\d ().\-/]{5,22}\d(?![\w/:]|[.,\-/]\d)/g;

/** The cue words of PHONE_CUE in Latin script ("+" for a space), `tel\.?\s?nr` beside them, each once. */
const PHONE_CUE_WORDS = (
  'tel tél tlf tlfn tfn tf fon phone telephone téléphone telefon telefono teléfono telefone ' +
  'telefoon telephon mobil mobile mobiel móvil movil cell cellulare cel celular handy natel ' +
  'portable gsm telemóvel tlm fax call calls callback ring ruf rufnummer rückruf durchwahl hotline ' +
  'whatsapp sms text bel bellen terugbellen anrufen benachrichtigen avisar llamar llamen llamada ' +
  'richiamato richiamare chiamare chiamata appeler rappel rappelé rappeler ligar retorno notify ' +
  'reach dial family familie famille familia famiglia família emergency notfall urgence emergencia ' +
  'emergenza noodgeval contact kontakt contacto contatto contato contact_no contact_number ' +
  'contact_nr contact+no contact+number contact+nr contactno contactnumber contactnr numéro número ' +
  'numero nummer nr puh puhelin tlf.nr ph mob hp telp điện+thoại sđt dt hatsapp ' +
  'kom komórka komorka komórkowy numer cep gsm+no mobiltelefon mobilnummer telefonnummer ' +
  'telefonszám telefonní číslo nomor no.+hp no+hp sampark fone phone+no mob+no landline ' +
  'festnetz fixe fijo fisso'
)
  .split(' ')
  .map((w) => w.replace(/\+/g, ' '));
/**
 * Words before a number that say it is one: tel, phone, mobile, Handy, tél., móvil, 電話 ... with up to
 * three words between, in any script ("call Ιωάννης Γεννάδιος (2237.943292)").
 */
const PHONE_CUE = new RegExp(
  // The words as a trie (alternatives): V8 tried the 127 words of a flat list in turn at every word
  // start of the 40 characters before each candidate. Only test() asks it, so the order of the words,
  // which a trie does not keep, decides nothing. The Greek, Cyrillic and Devanagari words are tried
  // only at their first letters: their look-behind (Unicode letter classes) was asked at every
  // position. Together 3.4 times faster on the bench text's candidates.
  String.raw`(?:\b(?:${alternatives(PHONE_CUE_WORDS)}|tel\.?\s?nr)\b|` +
    String.raw`(?=[τκтмमफद])(?<![\p{L}\p{M}])(?:τηλέφωνο|τηλ|κινητό|телефон|тел|моб|मोबाइल|फ़ोन|फोन|दूरभाष)(?![\p{L}\p{M}])|電話|携帯|手机|手機|电话|联系电话|連絡先|전화|휴대폰|연락처|هاتف|جوال|موبايل|تلفون|טלפון|נייד|โทร|📞|☎)[\s.:#=("'\]-]{0,6}(?:[\p{L}\p{M}\w]+[\s.:#=("'-]{1,3}){0,3}$`,
  'iu',
);

/**
 * Answers of validPhone per list of regions (lists of the same regions share one), each keyed by the
 * cue and the candidate: a key of the regions joined and the number was a string of 200 characters
 * built and hashed per number.
 */
const caches = new Map<string, Map<string, boolean>>();
const CACHE_SIZE = 8192;
/** Lists of regions shared this way; the oldest list's answers go first (a guard that holds it keeps them). */
const CACHE_LISTS = 16;
/** Each list's answers, found once per list object rather than once per number. */
const cacheOfList = new WeakMap<readonly CountryCode[], Map<string, boolean>>();
function cacheFor(regions: readonly CountryCode[]): Map<string, boolean> {
  let c = cacheOfList.get(regions);
  if (c === undefined) {
    const key = regions.join('');
    c = caches.get(key);
    if (c === undefined) {
      if (caches.size >= CACHE_LISTS) caches.delete(caches.keys().next().value as string);
      caches.set(key, (c = new Map()));
    }
    cacheOfList.set(regions, c);
  }
  return c;
}

/**
 * Per region: the national number lengths, trunk prefix and the pattern every valid national number
 * matches, to skip the regions a number cannot belong to before libphonenumber parses it (it builds
 * its regular expressions anew on each call, and V8 compiles them again after a garbage collection:
 * tens of milliseconds for a message with many numbers).
 */
interface Plan {
  lengths: ReadonlySet<number>;
  prefix: string;
  /** The general national number pattern, whole; absent where the trunk prefix is rewritten. */
  general?: RegExp;
  /** The trunk prefix as libphonenumber strips it, at the start. */
  forParsing?: RegExp;
  callingCode: string;
}
const plans = new Map<string, Plan>();
function plan(region: CountryCode): Plan {
  let p = plans.get(region);
  if (!p) {
    const m = new Metadata(metadataJson as unknown as MetadataJson);
    m.selectNumberingPlan(region);
    const np = m.numberingPlan as
      | (NonNullable<typeof m.numberingPlan> & {
          nationalPrefix(): string | undefined;
          nationalPrefixForParsing(): string | undefined;
          nationalPrefixTransformRule(): string | undefined;
          nationalNumberPattern(): string | undefined;
          callingCode(): string;
        })
      | undefined;
    const pattern = np?.nationalNumberPattern();
    const forParsing = np?.nationalPrefixForParsing();
    p = {
      lengths: new Set(np?.possibleLengths() ?? []),
      prefix: np?.nationalPrefix() ?? '',
      general: pattern && !np?.nationalPrefixTransformRule() ? new RegExp(`^(?:${pattern})$`) : undefined,
      forParsing: forParsing ? new RegExp(`^(?:${forParsing})`) : undefined,
      callingCode: np?.callingCode() ?? '',
    };
    plans.set(region, p);
  }
  return p;
}

function mayFit(region: CountryCode, digits: string): boolean {
  const { lengths, prefix, general, forParsing, callingCode } = plan(region);
  if (lengths.size === 0) return true;
  const length =
    lengths.has(digits.length) ||
    (prefix !== '' && digits.startsWith(prefix) && lengths.has(digits.length - prefix.length));
  if (!length || !general) return length;
  // A valid national number matches the region's general pattern: as written, after the trunk
  // prefix, or after the calling code written without +.
  if (general.test(digits)) return true;
  const trunk = forParsing?.exec(digits);
  if (trunk && trunk[0] !== '' && general.test(digits.slice(trunk[0].length))) return true;
  return (
    callingCode !== '' && digits.startsWith(callingCode) && general.test(digits.slice(callingCode.length))
  );
}
const NOT_A_NUMBER =
  /^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:19|20)?\d{2}|(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)|[1-9]\d*\.\d+)$/;
/** Three digit groups or more, an area code in brackets, or a trunk 0 and an area code set apart. */
const NATIONAL_SHAPE = /^(?:\(?\d+\)?[\s.\-/]+\d+[\s.\-/]+\d+.*|\(\d{2,5}\)\s?\d.*|0\d{1,4}[\s/.-]\d{5,})$/;

function digitGroups(s: string): string {
  return (s.match(/\d+/g) ?? []).map((g) => g.length).join(',');
}

/**
 * Whether `candidate` is a phone number: international ones (+ or 00) when possible for their
 * country; national ones when valid in one of `regions` and either a cue word stands before them or
 * they are grouped the way that region writes its numbers.
 */
function validPhone(candidate: string, regions: readonly CountryCode[], cued: () => boolean): boolean {
  // The digits counted first: the string of them is needed only where the cache has no answer.
  let count = 0;
  for (let i = 0; i < candidate.length; i++) {
    const c = candidate.charCodeAt(i);
    if (c >= 48 && c <= 57) count++;
  }
  if (count < 7 || count > 17) return false;
  const international = candidate.startsWith('+') || candidate.startsWith('00');
  // The cue word is looked for only where it decides: national numbers that are no date or decimal.
  let cue = false;
  if (!international) {
    // Dates, IP addresses and decimals are no numbers to dial; without a cue, only number-shaped
    // groupings are worth asking the numbering plans about.
    if (NOT_A_NUMBER.test(candidate)) return false;
    cue = cued();
    if (!cue && !NATIONAL_SHAPE.test(candidate)) return false;
  }
  const cache = cacheFor(regions);
  const key = (cue ? '1' : '0') + candidate;
  const known = cache.get(key);
  if (known !== undefined) return known;
  const input = candidate.startsWith('00') ? '+' + candidate.slice(2) : candidate;
  const digits = candidate.replace(/\D/g, '');
  let ok = false;
  try {
    if (international) {
      const parsed = parsePhoneNumberFromString(input.replace(/\(0\)/, ''), { extract: false });
      // A leading + (or 00) is itself strong evidence; numbering plans change faster than metadata,
      // so a number of possible length for its country is enough.
      ok = !!parsed && digits.length >= 8 && parsed.isPossible();
    } else {
      const grouped = /[\s.\-/()]/.test(candidate.trim());
      for (const region of regions) {
        if (!mayFit(region, digits)) continue;
        const parsed = parsePhoneNumberFromString(input, { defaultCountry: region, extract: false });
        if (!parsed || !parsed.isValid()) continue;
        if (cue) {
          ok = true;
          break;
        }
        // Without a cue, dates, lot and ticket numbers parse as valid national numbers too: the
        // digits must be grouped the way the region writes its numbers, in three groups or more.
        const groups = digitGroups(candidate);
        if (grouped && groups.split(',').length >= 3 && groups === digitGroups(parsed.formatNational())) {
          ok = true;
          break;
        }
        // An area code in brackets, or a trunk 0 and an area code set apart: "(0312) 393 82 33", "0208/2727282".
        if (
          (/^\(\d{2,5}\)\s?\d/.test(candidate) || /^0\d{1,4}[\s/.-]\d{5,}$/.test(candidate)) &&
          digits.length >= 9
        ) {
          ok = true;
          break;
        }
      }
    }
  } catch {
    ok = false;
  }
  // The oldest answer goes first (a Map keeps insertion order): clearing all at once made a text with
  // more distinct numbers than the cache holds ask the numbering plans about every number again.
  if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  cache.set(key, ok);
  return ok;
}

export function phones(
  text: string,
  out: Finding[],
  regions: readonly CountryCode[],
  fieldCue: boolean,
  taken?: (start: number, end: number) => boolean,
): void {
  for (const m of text.matchAll(PHONE_CANDIDATE)) {
    let candidate = m[0];
    let start = m.index;
    // Inside what a more specific detector found (an SSN, a card, a date): that finding wins anyway,
    // and the numbering plans of sixty regions need not be asked.
    if (taken?.(start, start + candidate.length)) continue;
    // "(0034 975 60 34 31)": the bracket is the text's, not the number's.
    if (candidate.startsWith('(') && !candidate.includes(')')) {
      candidate = candidate.slice(1);
      start++;
    }
    let cue: boolean | undefined;
    const cued = (): boolean =>
      (cue ??= fieldCue || PHONE_CUE.test(text.slice(Math.max(0, start - 40), start)));
    // Trailing space-separated groups may belong to the next word ("+44 20 7946 0958 12 units").
    for (let attempt = 0; attempt < 3 && candidate.length >= 7; attempt++) {
      if (validPhone(candidate, regions, cued)) {
        out.push({
          type: 'PHONE',
          rule: 'libphonenumber',
          start,
          end: start + candidate.length,
          value: candidate,
        });
        break;
      }
      const cut = candidate.lastIndexOf(' ');
      if (cut <= 0) break;
      candidate = candidate.slice(0, cut).replace(/[ (.-]+$/, '');
    }
  }
}

/**
 * libphonenumber builds each region's number patterns as regular expressions on first use, tens of
 * milliseconds for some regions: asking each region once about a number of each possible length
 * compiles them one region per step, before the first message rather than all at once inside it.
 */
export function* warmUpPhoneSteps(): Generator<void, void, void> {
  const regions = Object.keys((metadataJson as unknown as { countries: Record<string, unknown> }).countries);
  for (const region of regions as CountryCode[]) {
    try {
      for (const length of plan(region).lengths) {
        const parsed = parsePhoneNumberFromString('2'.repeat(length), {
          defaultCountry: region,
          extract: false,
        });
        if (parsed?.isValid()) parsed.formatNational();
        parsed?.getType();
      }
    } catch {
      // A region the metadata cannot parse for is only not warmed up.
    }
    yield;
  }
}
