import { gazetteer, NAME_PARTICLES, type Gazetteer } from './gazetteer';
import { holdsOtherScripts } from './scripts';
import { alternatives } from './trie';

/**
 * `names` (default): runs of capitalised words read against a gazetteer of given and family names
 * of many cultures, plus titles, cue words and field names. `rules`: titles, cue words and field
 * names only (no gazetteer: a little faster, much lower recall). `compromise` is the name older flows
 * saved for the default and means `names`.
 */
export type PersonDetector = 'names' | 'rules' | 'off' | 'compromise';

export interface PersonSpan {
  start: number;
  end: number;
  rule: string;
}

const words = (s: string): Set<string> => new Set(s.trim().split(/\s+/));

/**
 * Capitalised words that are common words first (a name list holds "Will", "May", "Line", "Said",
 * "Rose", "Brown", "Paris"): alone they are no evidence of a name.
 */
const COMMON = words(`
a an the this that these those it he she they we you i me my our your their his her its who whom what which
and or but nor so yet if then than when while where why how all any each every some no not only also just
is are was were be been being am do does did done has have had can could will would shall should may might
must to of in on at by for from with without into onto over under after before about above below between
through during until till up down out off per via vs via new old good best fine long young little big
great grand high low north south east west upper lower main general major minor royal noble golden
january february march april may june july august september october november december jan feb mar apr jun
jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday today tomorrow
yesterday morning evening night day week month year spring summer autumn fall winter
line name note notes ticket job order shift team crew unit area zone site plant gate dock bay hall
room ward wing floor level mode state status stage step phase batch lot item part kit set case
pump valve motor sensor alarm alert fault error warning event log logs device robot drone arm gateway
node server host client user admin root system service support office desk center centre station
park hill wood woods field fields green white black brown gray grey red blue pink rose violet olive
hazel ruby pearl jade amber crystal coral ivory silver gold sterling stone rock river lake ocean sea
sky star sun rain storm frost snow
king queen prince princess baron duke lord lady sir dame judge major marshal bishop dean earl
faith hope joy grace charity patience mercy honor honour justice harmony melody destiny trinity
heaven haven bliss love lucky sunny sandy rusty dusty misty golden happy merry
will bill mark pat sue rob guy ray jay bob rod mat art max les dawn eve
frank earnest constant innocent modest prosper
paris london berlin milan florence geneva vienna madrid dallas denver phoenix austin houston
sydney victoria georgia virginia carolina florida montana indiana asia africa america europe
china india japan israel jordan kenya chad
christian german french english irish dutch swiss
tea coffee sugar honey cherry apple berry olive ginger pepper salt
hunter archer porter carter fisher baker cook miller smith taylor mason turner
hope brook lane dale glen forest
said says told asked called named saw set put got let made take took
aus bei mit von zur zum dem den der die das des ein eine einer und oder nicht auch noch nur schon
ist sind war hat haben wird werden kann muss soll bitte danke heute morgen
druck pumpe ventil anlage linie schicht station störung meldung alarm fehler auftrag teile
sommer winter herbst frühling koch bauer wolf fuchs vogel hahn engel kraft stahl graf richter
le la les un une des du de et ou mais pour par avec sans sur sous dans chez est sont
salle service unité pavillon ligne poste équipe alarme défaut pompe vanne
el los las un una del y o pero para por con sin sobre en es son
sala planta turno equipo alarma bomba válvula
il lo gli uno una per con su tra fra è sono turno reparto
het een en of maar voor met zonder op bij naar is zijn
o os as um uma do dos das em no na para com sem é são turno ala
sol luz paz cruz mar rosa blanca dolores pilar nieves rocio consuelo amparo
wi-fi wifi bluetooth ethernet modbus profinet profibus ethercat zigbee lorawan lora canbus opc mqtt http https
vpn lan wan ssh ftp api sms usb lte gps
`);

const TITLE_WORDS =
  'mr mrs ms mx miss mister dr doctor prof professor sir dame herr frau fr hr mme mlle m monsieur madame ' +
  'mademoiselle sr sra srta sres don doña dña dott dott.ssa dottssa dottor dottore sig sig.ra sigra sig.na ' +
  'signor signora signorina dhr mevr mw mevrouw meneer ing eng mag pan pani fru bay bayan sayın ' +
  'capt captain sgt lt col nurse sister brother father rev';
const TITLES = words(TITLE_WORDS);

/** Words right after a run of capitalised words that make it a place, a ward, a firm or a product. */
const THING_AFTER = words(`
ward wards wing unit units station stations street st road rd avenue ave lane way drive boulevard blvd
square place plaza court gate gates bridge tower house hall hospital clinic klinik clinique hôpital
hospital centre center institute university school college academy campus building block park garden
gardens airport port harbour harbor river lake falls springs mountain mount valley bay beach island
electric electrical electronics controls control automation robotics robots medical healthcare dynamics
instruments systems system technologies technology solutions software industries industrial motors
energy power group holding holdings gmbh ag kg se sa sas sarl spa srl bv nv ab as oy inc ltd llc plc co
corp corporation company limited truck car straße strasse platz weg allee ring gasse
rue boulevard chemin calle avenida plaza rua praça via viale piazza straat laan plein weg
`);

/** Place words that are common family names as well. */
const SURNAME_THINGS = words(
  'park hill wood field fields lane way house gate bay port court hall bridge tower',
);

/**
 * Vendors and brands named after people or with name-like words: a run that holds one is a product.
 */
const BRANDS = words(`
siemens allen-bradley rockwell honeywell yokogawa mitsubishi omron beckhoff endress+hauser rexroth danfoss
grundfos festo wago keyence fanuc kuka abb medtronic fresenius garmin fitbit withings suunto dji
fisher-price hewlett-packard mercedes-benz rolls-royce harley-davidson toyota honda nissan mazda yamaha
kawasaki hitachi toshiba panasonic sony samsung canon nikon legrand rittal moxa hirschmann pepperl+fuchs
sew-eurodrive turck balluff ifm wilo ksb sulzer flowserve daikin mettler-toledo sartorius eppendorf
westinghouse kärcher miele dyson dewalt makita hilti stihl husqvarna caterpillar liebherr komatsu scania
iveco renault peugeot citroën fiat lamborghini maserati bugatti mclaren chevrolet cadillac
`);

/** One capitalised word (with apostrophes, hyphens, Mc/Mac/O' prefixes) or an initial. */
/** Prefixes joined by a hyphen to a capitalised family name: "al-Rashid", "bin-Laden". */
const NAME_PREFIXES = [
  'al',
  'el',
  'ad',
  'as',
  'ash',
  'at',
  'az',
  'ar',
  'an',
  'bin',
  'ibn',
  'abu',
  'ben',
  'bint',
];
const TOKEN = String.raw`(?:(?:${NAME_PREFIXES.join('|')})-\p{Lu}[\p{Ll}\p{M}]+|(?:\p{Lu}\.-?){2,3}(?!\p{L})|\p{Lu}\.|(?:\p{Lu}\p{Ll}{0,2}['’])?\p{Lu}[\p{Ll}\p{M}]*(?:\p{Lu}[\p{Ll}\p{M}]+)?(?:[-'’](?:\p{Lu}\p{Ll}{0,2}['’])?\p{Lu}?[\p{Ll}\p{M}]+(?:\p{Lu}[\p{Ll}\p{M}]+)?)*|\p{Lu}{2,}(?:-\p{Lu}{2,})?)`;
const PARTICLE = String.raw`(?:${[...NAME_PARTICLES].join('|')})`;
/** What may not stand right before a run (RUN's look-behind). */
const RUN_BLOCKER = String.raw`[\p{L}\p{N}_@./\\-]`;
/** A run without its look-behind: capitalised words and initials, particles between them, on one line. */
const RUN_BODY = String.raw`${TOKEN}(?:[ \t]+(?:${PARTICLE}[ \t]+){0,3}${TOKEN}){0,6}(?![\p{L}\p{N}_@]|\.\p{L})`;
/** A run: capitalised words and initials, particles between them, on one line. */
const RUN = new RegExp(String.raw`(?=\p{Lu})(?<!${RUN_BLOCKER})${RUN_BODY}`, 'gu');

type Kind =
  | 'cparticle'
  | 'given'
  | 'family'
  | 'both'
  | 'initial'
  | 'particle'
  | 'unknown'
  | 'weak'
  | 'common'
  | 'title'
  | 'cue'
  | 'place'
  | 'brand';

interface Tok {
  text: string;
  /** `text` in lower case. */
  lower: string;
  start: number;
  end: number;
  kind: Kind;
}

/**
 * Single words that announce a name (titles are apart): "Patient Maria Keller". Role words of many
 * languages, not only those of the texts the rules were tuned on: patient, operator, technician,
 * driver, nurse, doctor, contact...
 */
const CUE_WORDS = words(`
patient pt pat patientin paciente paziente patiënt patiente operator operatorin opérateur opératrice operador
operadora operatore technician techniker technikerin technicien technicienne técnico técnica tecnico tecnica
monteur tech engineer ingenieur ingénieur ingeniero ingegnere driver fahrer chauffeur conductor pilot pilote
piloto nurse pflegekraft infirmière infirmier enfermera enfermero infermiera verpleegkundige arzt ärztin médecin
médico medico huisarts hausarzt gp attending surgeon contact kontakt contacto contatto ansprechpartner
ansprechpartnerin contactpersoon contato owner caller escort wearer employee worker mitarbeiter mitarbeiterin
customer kunde kundin client cliente klant visitor besucher guest inspector supervisor manager foreman
vorarbeiter author reporter requester assignee dear hi hello attn cc ask call notify tell inform thank thanks
regards cheers
pacjent pacjentka technik kierowca pielęgniarka pielęgniarz lekarz lekarka kierownik brygadzista pracownik klient
pacient pacientka pacientă operátor technička vodič sestra lékař lékařka lekár zaměstnanec zákazník
páciens kezelő technikus sofőr nővér orvos kapcsolattartó művezető
tehnician sofer asistentă medic operatör teknisyen sürücü hemşire hekim müşteri
tekniker förare sjuksköterska läkare kontaktperson arbetsledare kund operatør chauffør sjåfør sygeplejerske
sykepleier læge potilas operaattori teknikko kuljettaja sairaanhoitaja hoitaja lääkäri yhteyshenkilö asiakas
pasien teknisi sopir perawat dokter kontak doktor
ασθενής χειριστής τεχνικός οδηγός νοσηλεύτρια νοσηλευτής γιατρός επαφή
пациент пациентка оператор техник водитель медсестра врач контакт пацієнт технік водій лікар
`);
/** First words of place names: "San Francisco", "Port Elizabeth", "Bad Homburg". */
const PLACE_WORDS = words(
  `st st. saint sainte san santa santo são sankt mount mt mt. fort ft port lake cape bad villa puerto porto ciudad new`,
);

/** An initial or a few written together: "E.", "E.L.", "J.-P.". */
const INITIALS = /^(?:(?:\p{Lu}|(?!\p{Script=Latin})\p{L})\.-?){1,3}$/u;

/** Generations after a name, counted as initials are: "Jr.", "III". ("Sr." is a title too.) */
const GENERATION = /^(?:Jr|Jnr|Snr|II|III|IV)\.?$/;

/**
 * What kind of word `w` is, remembered: gateway text repeats the same words (units, codes, names of
 * the shift), and the lists answer the same for the same word.
 */
const KINDS_KEPT = 50_000;
/** A word's kind, and the word in lower case (asked of most words of a run as well). */
interface Known {
  kind: Kind;
  lower: string;
}
/** One map per way of asking (with the lists, with them but no places, rules only): no key built per word. */
const kinds = { g: new Map<string, Known>(), h: new Map<string, Known>(), r: new Map<string, Known>() };
let kindsOf: Gazetteer | undefined;
function knownWord(w: string, g: Gazetteer | undefined, place = true): Known {
  if (g && g !== kindsOf) {
    kinds.g.clear();
    kinds.h.clear();
    kindsOf = g;
  }
  const known = g ? (place ? kinds.g : kinds.h) : kinds.r;
  let word = known.get(w);
  if (word === undefined) {
    if (known.size >= KINDS_KEPT) known.clear();
    word = { kind: classifyWord(w, g, place), lower: w.toLowerCase() };
    known.set(w, word);
  }
  return word;
}
const classify = (w: string, g: Gazetteer | undefined, place = true): Kind => knownWord(w, g, place).kind;

/** Whether `w` reads the same in capitals ("OEE", "SMITH", "P-104"): a small letter a-z says no at once. */
function allCaps(w: string): boolean {
  for (let i = 0; i < w.length; i++) {
    const c = w.charCodeAt(i);
    if (c >= 97 && c <= 122) return false;
  }
  return w === w.toUpperCase();
}

/**
 * Family names written together without a hyphen ("NikolićKovačić", "Tikas-PuačMatešić"): halves
 * of four letters or more, and a family name the lists hold somewhere in the word.
 */
function familiesTogether(part: string, word: string, g: Gazetteer): boolean {
  const halves = (x: string) => x.split(/(?<=\p{Ll})(?=\p{Lu})|[-'’]/u);
  return halves(part).every((h) => h.length > 3) && halves(word).some((h) => g.family.has(h.toLowerCase()));
}

function classifyWord(w: string, g: Gazetteer | undefined, place: boolean): Kind {
  if (INITIALS.test(w) || GENERATION.test(w)) return 'initial';
  const lower = w.toLowerCase();
  const bare = lower.replace(/\.$/, '');
  // Lower-case particles join a name ("van der Berg"); capitalised ones start a family name
  // ("De Stefano", "Van Dijk") or are names themselves ("Lê Thụy Du").
  if (NAME_PARTICLES.has(w)) return 'particle';
  // "d’van de Meer", "al-ter Willems": a prefix on a particle.
  const elided = /^(?:(?:d|l|dell)['’]|(?:al|el)-)(\p{Ll}+)$/u.exec(w);
  if (elided && NAME_PARTICLES.has(elided[1])) return 'particle';
  if (NAME_PARTICLES.has(lower) && /^\p{Lu}\p{Ll}{1,3}$/u.test(w)) return 'cparticle';
  if (TITLES.has(bare)) return 'title';
  if (CUE_WORDS.has(bare)) return 'cue';
  if (place && PLACE_WORDS.has(lower)) return 'place';
  if (BRANDS.has(lower)) return 'brand';
  // Product names: CamelCase inside a word (ControlLogix, DeltaV) other than Mc/Mac/De/Di/La/Le/Van,
  // and other than family names written together ("NikolićKovačić").
  if (
    /\p{Ll}\p{Lu}/u.test(w) &&
    w
      .split(/[-'’]/)
      .some(
        (p) =>
          /\p{Ll}\p{Lu}/u.test(p) &&
          !/^(?:Mc|Mac|De|Di|Da|Du|La|Le|Van|Von|Fitz)\p{Lu}/u.test(p) &&
          !(g && familiesTogether(p, w, g)),
      )
  )
    return 'brand';
  if (!g) return COMMON.has(lower) ? 'common' : 'unknown';
  const parts = lower.split(/[-'’]/).filter((p) => p.length > 1);
  const known = (set: ReadonlySet<string>) =>
    set.has(lower) || (parts.length > 1 && parts.every((p) => set.has(p)));
  const given = known(g.given);
  const family =
    known(g.family) ||
    (/^(?:al|el|ad|as|ash|at|az|ar|an|bin|ibn|abu|ben|bint)-/.test(lower) && parts.length > 1) ||
    /^(?:o['’]|mc|fitz)\p{L}{2,}/u.test(lower);
  if (COMMON.has(lower)) return given || family ? 'weak' : 'common';
  if (given && family) return 'both';
  if (given) return 'given';
  if (family) return 'family';
  if (parts.length > 1 && parts.some((p) => g.given.has(p) || g.family.has(p))) return 'family';
  return 'unknown';
}

const SPACE = /\s/;
/** Whether the character at `i` is white space (what `\s` matches; NaN past the end is none). */
function spaceAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return c === 32 || (c >= 9 && c <= 13) || (c > 127 && SPACE.test(text[i]));
}

/** Where the first white space in `text` is (its length if none). */
function firstSpace(text: string): number {
  let i = 0;
  while (i < text.length && !spaceAt(text, i)) i++;
  return i;
}

/** The words of `text` (what `\S+` matches), read by hand: a pattern's exec per word cost more. */
function tokens(text: string, start: number, g: Gazetteer | undefined): Tok[] {
  const out: Tok[] = [];
  for (let i = 0; i < text.length;) {
    if (spaceAt(text, i)) {
      i++;
      continue;
    }
    let j = i + 1;
    while (j < text.length && !spaceAt(text, j)) j++;
    const w = text.slice(i, j);
    const known = knownWord(w, g);
    out.push({ text: w, lower: known.lower, start: start + i, end: start + j, kind: known.kind });
    i = j;
  }
  return out;
}

const isName = (k: Kind) => k === 'given' || k === 'family' || k === 'both';
const isGiven = (k: Kind) => k === 'given' || k === 'both';

/**
 * Whether a segment of name-like tokens (no common words inside) is a person's name. `cue`: 2 after a
 * title, a role word or a field name; 1 after a weak cue (by, to, from); 0 without.
 */
function judge(seg: Tok[], cue: number): [number, number] | undefined {
  let a = 0;
  let b = seg.length;
  while (a < b && seg[a].kind === 'particle') a++;
  while (b > a && seg[b - 1].kind === 'particle') b--;
  let core = seg.slice(a, b);
  if (core.length === 0) return undefined;
  // A capitalised word before the name that is none ("Föraren Anna Lindqvist", "Kierowca Jan
  // Kowalski"): without a cue, a name starts at a given name when one follows.
  if (cue < 2) {
    const g = core.findIndex((t) => isGiven(t.kind) || t.kind === 'weak');
    if (g > 0 && core.slice(0, g).every((t) => t.kind === 'unknown')) core = core.slice(g);
  }
  // "Camion de Charlotte Amalie": a word and a particle before names are no part of them.
  if (cue === 0 && core.length > 2 && core[0].kind === 'unknown' && core[1].kind === 'particle')
    return judge(core.slice(2), 0);
  // A capitalised particle at the end is a name ("Lê Thụy Du"); elsewhere it joins the family name.
  if (core.length > 1 && core[core.length - 1].kind === 'cparticle') core[core.length - 1].kind = 'unknown';
  const named = core.filter((t) => t.kind !== 'particle' && t.kind !== 'initial' && t.kind !== 'cparticle');
  const words = named.length;
  if (words === 0 || words > 5) return undefined;
  // ALL-CAPS words are codes and acronyms unless the gazetteer knows them (SMITH, Jean DUPONT).
  if (named.some((t) => t.kind === 'unknown' && t.text.length > 1 && allCaps(t.text))) return undefined;
  const span: [number, number] = [core[0].start, core[core.length - 1].end];
  if (cue === 2) return span;
  // Counted only now: after a strong cue (all that rules only asks) they are not needed.
  const strong = named.filter((t) => isName(t.kind)).length;
  const given = named.some((t) => isGiven(t.kind));
  const family = named.some((t) => t.kind === 'family' || t.kind === 'both');
  const weak = named.filter((t) => t.kind === 'weak').length;
  const unknown = named.filter((t) => t.kind === 'unknown').length;
  if (cue === 1 && ((strong >= 1 && words >= 2) || core[0].kind === 'initial')) return span;
  const first = core[0].kind;
  if (words >= 2) {
    if (isGiven(first) && (strong >= 2 || unknown + weak >= 1)) return span;
    if (strong >= 2) return span;
    if (family && given) return span;
    if (first === 'family' && named.slice(1).every((t) => t.kind !== 'unknown') && weak >= 1) return span;
    if (strong >= 1 && weak >= 1 && unknown === 0) return span;
  }
  if (first === 'initial' && words >= 1 && (strong >= 1 || unknown >= 1)) return span;
  // A name after a capitalised word that is none ("Störung Maria Keller", "Replaced Maria Keller").
  const at = core.findIndex((t, i) => i > 0 && isGiven(t.kind));
  if (at > 0) return judge(core.slice(at), 0);
  return undefined;
}

const LAST_FIRST = /^\s*,\s*$/;

/** Single words after which a name follows for sure (beside CUE_WORDS). */
const STRONG_WORDS = words(`
named called signed notify inform informed ask asked call phone text page paged remind tell told meet met thank
thanks regards cheers best greetings gruß grüße gruesse cordialement saludos saluti groeten cumprimentos
avisar benachrichtigen informieren anrufen prévenir appeler avvisare chiamare bellen bel ligar
pilot pilote piloto driver fahrer chauffeur tech gp arts hausarzt huisarts médecin médico medico
`);
/** Two-word phrases after which a name follows for sure. */
const STRONG_CUE_2 = new Set([
  'signed by',
  'approved by',
  'reported by',
  'requested by',
  'raised by',
  'opened by',
  'closed by',
  'checked by',
  'confirmed by',
  'acknowledged by',
  'informed by',
  'called by',
  'visited by',
  'seen by',
  'treated by',
  'relieved by',
  'covered by',
  'escalated to',
  'assigned to',
  'handed to',
  'over to',
  'forwarded to',
  'sent to',
  'given to',
  'passed to',
  'behalf of',
  'name is',
  'zugewiesen an',
  'gemeldet von',
  'geprüft von',
  'übergabe an',
  'assigné à',
  'signalé par',
  'asignado a',
  'reportado por',
  'assegnato a',
  'segnalato da',
  'toegewezen aan',
  'gemeld door',
  'atribuído a',
  'aberto por',
  'relatado por',
  'avisar a',
  'ligar para',
  'llamar a',
  'signed off',
  'off by',
]);
const STRONG_CUE_1 = new Set([...CUE_WORDS, ...STRONG_WORDS]);
const WEAK_CUE = words(
  'by to from an à a aan für pour para per voor von par por da door cc with mit avec con met com for',
);
const PLACE_PREV = words(
  'in at near nach aus em naar uit st saint sainte san santa santo são sankt mount mt fort port lake cape bad villa ' +
    'puerto porto ciudad ward unit wing station salle service pavillon unité pabellón sala planta reparto ' +
    'padiglione afdeling paviljoen ala enfermaria klinik clinic hospital hôpital ospedale ziekenhuis street rue ' +
    'calle via straat rua avenue',
);
const WORD_CHAR = /[\p{L}\p{N}_.'’-]/u;
/** Whether the character at `i` may be part of a word read backwards (letters, digits, _ . ' ’ -). */
function wordCharAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return (
    (c >= 97 && c <= 122) ||
    (c >= 65 && c <= 90) ||
    (c >= 48 && c <= 57) ||
    (c > 127 && WORD_CHAR.test(text[i])) ||
    c === 95 ||
    c === 46 ||
    c === 39 ||
    c === 45
  );
}

/** The word that ends at `end` (exclusive), read backwards: [start, word]. */
function wordBefore(text: string, end: number): [number, string] {
  let i = end;
  while (i > 0 && end - i < 40 && wordCharAt(text, i - 1)) i--;
  return [i, text.slice(i, end)];
}

/** What may stand between a cue and a name: white space, quotes, brackets, ':', '=' (CUE_GAP's class). */
function gapAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return (
    c === 32 ||
    c === 34 ||
    c === 39 ||
    c === 91 ||
    c === 93 ||
    c === 40 ||
    c === 58 ||
    c === 61 ||
    (c >= 9 && c <= 13) ||
    (c > 127 && SPACE.test(text[i]))
  );
}

/** `w` without the full stops, apostrophes and hyphens it ends in. */
function withoutTrailing(w: string): string {
  let e = w.length;
  while (e > 0 && (w[e - 1] === '.' || w[e - 1] === "'" || w[e - 1] === '’' || w[e - 1] === '-')) e--;
  return e === w.length ? w : w.slice(0, e);
}

/** The last words of STRONG_CUE_2's phrases and "by": only then is the word before them read. */
const CUE_2_LAST = new Set([...[...STRONG_CUE_2].map((p) => p.slice(p.lastIndexOf(' ') + 1)), 'by']);
/** Whether `w1` (starting at `w1Start`) and the word before it are a strong cue: "signed by", "assigned to", "checked by". */
function strongPair(text: string, w1Start: number, w1: string): boolean {
  let j = w1Start;
  while (j > 0 && (text[j - 1] === ' ' || text[j - 1] === '\t')) j--;
  const w0 = j < w1Start ? wordBefore(text, j)[1].toLowerCase() : '';
  return STRONG_CUE_2.has(`${w0} ${w1}`) || (w1 === 'by' && /(?:ed|en|t)$/.test(w0));
}

/**
 * What stands right before a run: a cue (2: a title, a role word, a field name, "signed by"; 1: a
 * weak one such as "by", "to"), a word that makes the run a place, and particles of a family name
 * ("aan de Ruiter") that belong to the run. Reads the last two words backwards from the run.
 */
function contextBefore(text: string, start: number): { cue: number; place: boolean; leadStart: number } {
  let leadStart = start;
  // Lower-case particles right before belong to the name.
  for (let n = 0; n < 3; n++) {
    let i = leadStart;
    while (i > 0 && (text[i - 1] === ' ' || text[i - 1] === '\t')) i--;
    if (i === leadStart) break;
    const [ws, w] = wordBefore(text, i);
    if (!NAME_PARTICLES.has(w)) break;
    leadStart = ws;
  }
  let i = leadStart;
  while (i > 0 && leadStart - i < 8 && (gapAt(text, i - 1) || text.charCodeAt(i - 1) === 62)) i--;
  const gap = text.slice(i, leadStart);
  if (i === 0 || (gap === '' && leadStart > 0)) return { cue: 0, place: false, leadStart };
  const [w1Start, w1Raw] = wordBefore(text, i);
  if (w1Raw === '') return { cue: 0, place: false, leadStart };
  const w1 = withoutTrailing(w1Raw.toLowerCase());
  let spaceOnly = gap.length > 0;
  for (let k = 0; spaceOnly && k < gap.length; k++) spaceOnly = gap[k] === ' ' || gap[k] === '\t';
  const clean = spaceOnly || /^["'\]]?\s*[:=>]?\s*["'[(]?\s*$/.test(gap);
  let cue = 0;
  if (clean) {
    if (
      (TITLES.has(w1) && spaceOnly) ||
      STRONG_CUE_1.has(w1) ||
      (CUE_2_LAST.has(w1) && strongPair(text, w1Start, w1))
    )
      cue = 2;
    else if ((gap.includes(':') || gap.includes('=')) && KEY_WORD.test(w1)) cue = 2;
    // An element named for a person: "<technician>Anna Keller</technician>".
    else if (gap[0] === '>' && text[w1Start - 1] === '<' && KEY_WORD.test(w1)) cue = 2;
    // A header line: "From: Anna Keller", "Cc: ...".
    else if (gap[0] === ':' && HEADER_WORDS.has(w1) && (w1Start === 0 || text[w1Start - 1] === '\n')) cue = 2;
    else if (WEAK_CUE.has(w1)) cue = 1;
  }
  return { cue, place: spaceOnly && PLACE_PREV.has(w1), leadStart };
}

/** Header names before a person at the start of a line: "From:", "To:", "Cc:". */
const HEADER_WORDS = words('from to cc bcc reply-to sender attn von an für de à para da per van aan');
/** The last part of a field name that holds a person's name (each ends in an ASCII letter). */
const KEY_NAMES = [
  'name',
  'patient',
  'operator',
  'technician',
  'tech',
  'contact',
  'signed_?by',
  'approved_?by',
  'reported_?by',
  'assigned_?to',
  'owner',
  'driver',
  'pilot',
  'nurse',
  'doctor',
  'physician',
  'attending',
  'wearer',
  'caller',
  'author',
  'reporter',
  'requester',
  'assignee',
  'actor',
  'inspector',
  'supervisor',
  'manager',
  'escort',
  'visitor',
  'employee',
  'customer',
  'user_?name',
  'full_?name',
  'first_?name',
  'last_?name',
  'surname',
];
/** Field names in JSON-like text that hold a person's name: `"signed_by":"`, `technician_name=`. */
const KEY_WORD = new RegExp(`^(?:[a-z]+_)*(?:${KEY_NAMES.join('|')})$`, 'i');
/**
 * The last two letters a field name of KEY_WORD can end in, lower case (as 256 × first + second):
 * the word before most ':' and '=' ends otherwise ("finished:", "ip=", "mac=", "device:"), and is
 * not cut out and tried then.
 */
const KEY_LAST = new Set(KEY_NAMES.map((k) => k.charCodeAt(k.length - 2) * 256 + k.charCodeAt(k.length - 1)));

/**
 * Where a name can be found without the name lists: the titles and role words a run may start with,
 * every word and phrase contextBefore reads as a strong cue, and field names before `:` or `=`. Only
 * ASCII boundaries are checked here (a superset of the matches); contextBefore decides.
 */
const CUE_PHRASES = [...TITLES, ...STRONG_CUE_1, ...STRONG_CUE_2, 'by'].sort((x, y) => y.length - x.length);
/** A space in a cue phrase stands for spaces or tabs. */
const SPACES = { space: '[ \\t]+' };
// Apart: V8 tried one alternation of them all at every position, and the words that start with a
// letter outside a-z ("übergabe an", "γιατρός") cannot use the cheaper \b.
const CUE_FIND = new RegExp(
  `\\b(?:${alternatives(
    CUE_PHRASES.filter((w) => /^[a-z]/.test(w)),
    SPACES,
  )})(?![A-Za-z0-9_])`,
  'gi',
);
const CUE_OTHER_PHRASES = CUE_PHRASES.filter((w) => !/^[a-z]/.test(w) && /^\p{Script=Latin}/u.test(w));
/** The cue words that start with a Latin letter outside a-z ("übergabe an", "ärztin"), at one place. */
const CUE_AT_OTHER = new RegExp(`(?:${alternatives(CUE_OTHER_PHRASES, SPACES)})(?![A-Za-z0-9_])`, 'iy');
/**
 * The characters those cue words start with, in both cases ("ü", "Ü", "ä", "Ä"): CUE_AT_OTHER is tried
 * only where indexOf finds one (a scan of each window by the pattern cost more than the indexOf of
 * each). The spec checks that no other character matches one of them when case is ignored.
 */
export const CUE_OTHER_FIRST: readonly string[] = [
  ...new Set(CUE_OTHER_PHRASES.flatMap((w) => [w[0], w[0].toLowerCase(), w[0].toUpperCase()])),
].filter((c) => c.length === 1);
/** Cue words in Greek and Cyrillic letters, looked for only in text that holds such letters. */
const CUE_FIND_SCRIPTS = new RegExp(
  `(?:${alternatives(
    CUE_PHRASES.filter((w) => !/^\p{Script=Latin}/u.test(w)),
    SPACES,
  )})(?![\\p{L}\\p{N}_])`,
  'giu',
);
/**
 * RUN at one place, its look-behind read by runMayStart: on text in two-byte form (any character past
 * Latin-1 in the message) V8 spent a third of each try on the look-behind.
 */
const RUN_AT = new RegExp(String.raw`(?=\p{Lu})${RUN_BODY}`, 'uy');
const RUN_BLOCKER_END = new RegExp(`${RUN_BLOCKER}$`, 'u');
const NAME_PREFIX_SET = new Set(NAME_PREFIXES);
const upperAscii = (c: number): boolean => c >= 65 && c <= 90;
const lowerAscii = (c: number): boolean => c >= 97 && c <= 122;
const surrogate = (c: number): boolean => c >= 0xd800 && c <= 0xdfff;
const UPPER = /\p{Lu}/u;
const LOWER_OR_MARK = /[\p{Ll}\p{M}]/u;
/** Whether the character at `i` is a capital (one code unit; NaN past the end is none). */
const upperAt = (text: string, i: number): boolean => {
  const c = text.charCodeAt(i);
  return upperAscii(c) || (c > 127 && !surrogate(c) && UPPER.test(text[i]));
};

/** Past the small letters and marks from `j` (one code unit each); -1 at a surrogate (RUN_AT decides). */
function smallLetters(text: string, j: number): number {
  for (let c = text.charCodeAt(j); ; c = text.charCodeAt(++j)) {
    if (lowerAscii(c)) continue;
    if (c <= 127 || Number.isNaN(c)) return j;
    if (surrogate(c)) return -1;
    if (!LOWER_OR_MARK.test(text[j])) return j;
  }
}

/** Past the spaces and tabs from `j`. */
function blanks(text: string, j: number): number {
  while (text.charCodeAt(j) === 32 || text.charCodeAt(j) === 9) j++;
  return j;
}

/**
 * Where RUN_AT's match at `p` ends when the run is plain: words of a capital and small letters (or a
 * capital alone, or an initial "A."), parts after hyphens of the same shape ("Collier-Dach",
 * "Akeem-omosanya"), spaces, tabs and up to three particles between them, and after them nothing
 * that lets RUN go on or turn back (white space then no capital, no particle and no "al-"; or ASCII
 * punctuation that is no joiner, '_' or '@'). `undefined` for anything else, which RUN_AT itself
 * reads. Most runs are plain, and V8 took 0.5-1 µs per try of RUN_AT on text in two-byte form (its
 * classes hold thousands of ranges there).
 */
export function plainRunEnd(text: string, p: number): number | undefined {
  let i = p;
  for (let words = 1; ; words++) {
    // TOKEN's third alternative matches an initial ("A." before no capital, '-' or '.'), its fourth a
    // word (small letters and marks after the capital, no apostrophe in it), and no other does.
    if (!upperAt(text, i)) return undefined;
    let j = i + 1;
    let initial = false;
    if (text.charCodeAt(j) === 46) {
      j++;
      initial = true;
    } else {
      j = smallLetters(text, j);
      // The parts after hyphens: an optional capital, then small letters.
      while (j >= 0 && text.charCodeAt(j) === 45) {
        const k = upperAt(text, j + 1) ? j + 2 : j + 1;
        const e = smallLetters(text, k);
        j = e === k ? -1 : e;
      }
      if (j < 0) return undefined;
    }
    const c = text.charCodeAt(j);
    if (c === 32 || c === 9) {
      // RUN takes seven words at most; its look-ahead holds before white space.
      if (words === 7) return j;
      let k = blanks(text, j);
      let particles = 0;
      for (;;) {
        if (upperAt(text, k)) break;
        const d = text.charCodeAt(k);
        if (!lowerAscii(d)) return surrogate(d) ? undefined : j;
        // A particle before the next word ("van Dijk"), or a prefix joined to one ("al-Rashid").
        let e = k + 1;
        while (lowerAscii(text.charCodeAt(e))) e++;
        const f = text.charCodeAt(e);
        const w = text.slice(k, e);
        if (f === 45 && NAME_PREFIX_SET.has(w)) return undefined;
        if ((f !== 32 && f !== 9) || !NAME_PARTICLES.has(w)) return j;
        if (++particles > 3) return undefined;
        k = blanks(text, e);
      }
      i = k;
      continue;
    }
    if (Number.isNaN(c)) return j;
    // Letters past ASCII, capitals (CamelCase, initials together), a small letter after an initial,
    // digits, '_', '@', and the joiners - and '.
    if (
      c > 127 ||
      upperAscii(c) ||
      (initial && lowerAscii(c)) ||
      (c >= 48 && c <= 57) ||
      c === 95 ||
      c === 64 ||
      c === 45 ||
      c === 39
    )
      return undefined;
    if (c === 46) {
      // A full stop before a letter ("Keller.com") fails RUN's look-ahead.
      const n = text.charCodeAt(j + 1);
      if (n > 127 || upperAscii(n) || lowerAscii(n)) return undefined;
    }
    return j;
  }
}

/** Where RUN_AT's match at `p` ends, -1 if there is none. */
export function patternRunEnd(text: string, p: number): number {
  RUN_AT.lastIndex = p;
  const m = RUN_AT.exec(text);
  return m ? p + m[0].length : -1;
}

/** RUN's look-behind at `p`: no letter, digit or `_@./\-` right before (a whole code point). */
function runMayStart(text: string, p: number): boolean {
  if (p === 0) return true;
  const c = text.charCodeAt(p - 1);
  if (c > 127) return !RUN_BLOCKER_END.test(text.slice(Math.max(0, p - 2), p));
  return !(
    (c >= 48 && c <= 57) ||
    (c >= 65 && c <= 90) ||
    (c >= 97 && c <= 122) ||
    c === 95 ||
    c === 64 ||
    c === 46 ||
    c === 47 ||
    c === 92 ||
    c === 45
  );
}
/** What may stand between a cue and the run it announces (contextBefore's gap, then particles). */
const CUE_GAP = new RegExp(String.raw`[.'’-]*[\s"'[\](:=]{0,8}(?:${PARTICLE}[ \t]+){0,3}`, 'y');

/**
 * Where CUE_GAP's match from `end` ends. Read by hand unless a small letter a-z follows the
 * punctuation and white space (a particle may start there): everything in CUE_GAP is optional and
 * greedy, so its match is the longest of each part in turn.
 */
export function cueGapEnd(text: string, end: number): number {
  let k = end;
  for (
    let c = text.charCodeAt(k);
    c === 46 || c === 39 || c === 0x2019 || c === 45;
    c = text.charCodeAt(++k)
  );
  for (let n = 0; n < 8 && gapAt(text, k); n++) k++;
  return lowerAscii(text.charCodeAt(k)) ? patternGapEnd(text, end) : k;
}

/** Where CUE_GAP's match from `end` ends, by the pattern. */
export function patternGapEnd(text: string, end: number): number {
  CUE_GAP.lastIndex = end;
  const gap = CUE_GAP.exec(text);
  return end + (gap ? gap[0].length : 0);
}

type Run = { start: number; end: number; text: string; toks?: Tok[] };
/**
 * Where the field name before the ':' or '=' at `q` ends, or -1 when no letter stands there (clock
 * times, readings): what /[A-Za-z_]["'\]]?[ \t]*[:=]/ matches, read backwards from each sign rather than
 * tried at every letter; by char codes (NaN before the text's start matches none).
 */
export function keyEnd(text: string, q: number): number {
  let i = q - 1;
  let c = text.charCodeAt(i);
  while (c === 32 || c === 9) c = text.charCodeAt(--i);
  if (c === 34 || c === 39 || c === 93) c = text.charCodeAt(--i);
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 ? i + 1 : -1;
}

/**
 * The runs a name can be found in without the name lists: a run that starts with a title or role
 * word, or one right after a strong cue. Most capitalised words in gateway text (codes, sentence
 * starts, units) stand by no cue, so these are looked for first and the rest is never read.
 */
function cuedRuns(text: string, otherScripts: boolean): Run[] {
  const starts: number[] = [];
  const at = (p: number): void => {
    if (p >= text.length) return;
    const c = text.charCodeAt(p);
    // A capital: A-Z at once, other letters by their lower-case form.
    if ((c >= 65 && c <= 90) || (c > 127 && text[p] !== text[p].toLowerCase())) starts.push(p);
  };
  const after = (end: number): void => at(cueGapEnd(text, end));
  for (const find of otherScripts ? [CUE_FIND, CUE_FIND_SCRIPTS] : [CUE_FIND]) {
    find.lastIndex = 0;
    for (let m = find.exec(text); m; m = find.exec(text)) {
      at(m.index);
      after(m.index + m[0].length);
    }
  }
  // The cue words that start outside a-z, found as a scan by their pattern would find them: in text
  // order, each looked for after the end of the one before.
  const places: number[] = [];
  for (const c of CUE_OTHER_FIRST)
    for (let q = text.indexOf(c); q >= 0; q = text.indexOf(c, q + 1)) places.push(q);
  places.sort((a, b) => a - b);
  let from = 0;
  for (const q of places) {
    if (q < from) continue;
    CUE_AT_OTHER.lastIndex = q;
    const m = CUE_AT_OTHER.exec(text);
    if (m) {
      at(q);
      after(q + m[0].length);
      from = q + m[0].length;
    }
  }
  // Field names: `"technician_name": "`, `signed_by=`.
  const keyBefore = (p: number, k: number): void => {
    // Two ASCII letters in either case (KEY_WORD ignores case; no other character folds to one).
    if (k < 2 || !KEY_LAST.has((text.charCodeAt(k - 2) | 0x20) * 256 + (text.charCodeAt(k - 1) | 0x20)))
      return;
    const w = wordBefore(text, k)[1];
    if (w !== '' && KEY_WORD.test(w)) after(p + 1);
  };
  // Each ':' and '=' in order, by indexOf (a pattern's exec per sign cost more than the signs' checks).
  let colon = text.indexOf(':');
  let equals = text.indexOf('=');
  while (colon >= 0 || equals >= 0) {
    const q = colon < 0 ? equals : equals < 0 ? colon : Math.min(colon, equals);
    const k = keyEnd(text, q);
    if (k >= 0) keyBefore(q, k);
    if (q === colon) colon = text.indexOf(':', q + 1);
    else equals = text.indexOf('=', q + 1);
  }
  starts.sort((a, b) => a - b);
  const runs: Run[] = [];
  for (const p of starts) {
    if ((runs.length > 0 && p < runs[runs.length - 1].end) || !runMayStart(text, p)) continue;
    const end = plainRunEnd(text, p) ?? patternRunEnd(text, p);
    if (end >= 0) runs.push({ start: p, end, text: text.slice(p, end) });
  }
  return runs;
}

function runSpans(text: string, g: Gazetteer | undefined, out: PersonSpan[], otherScripts: boolean): void {
  const runs: Run[] = [];
  if (g)
    for (const m of text.matchAll(RUN)) runs.push({ start: m.index, end: m.index + m[0].length, text: m[0] });
  else runs.push(...cuedRuns(text, otherScripts));
  const toksOf = (r: Run): Tok[] => (r.toks ??= tokens(r.text, r.start, g));
  for (let i = 0; i < runs.length; i++) {
    const r = runs[i];
    // A lone word is a name only after a cue: most runs are one capitalised word, look no further.
    // (The words of a run are apart by spaces and tabs only.)
    const oneWord = !r.text.includes(' ') && !r.text.includes('\t');
    if (text[r.end] !== ',' && oneWord) {
      const c = text[r.start - 1];
      if (r.start === 0 || c === '\n' || c === '.' || c === '!' || c === '?' || c === ';' || c === ',')
        continue;
      const k = classify(r.text, g);
      if (k !== 'unknown' && k !== 'given' && k !== 'family' && k !== 'both') continue;
      // A code in capitals ("OEE", "RMS") is never a name alone, nor a letter before a number ("P-104").
      if (k === 'unknown' && (r.text.length === 1 ? /[-\d]/.test(text[r.end] ?? '') : allCaps(r.text)))
        continue;
    }
    const ctx = contextBefore(text, r.start);
    // Without the gazetteer only a cue or a title makes a name.
    if (!g && ctx.cue < 2 && text[r.end] !== ',') {
      const k = classify(oneWord ? r.text : r.text.slice(0, firstSpace(r.text)), undefined);
      if (k !== 'title' && k !== 'cue') continue;
    }
    const leadStart = ctx.leadStart;
    // What follows is read by patterns that start with white space.
    const spaced = spaceAt(text, r.end);
    const after = spaced ? text.slice(r.end, r.end + 24) : '';
    const nextWord = spaced ? /^\s+([\p{L}&]+)/u.exec(after)?.[1]?.toLowerCase() : undefined;
    let cue = ctx.cue;
    if (nextWord && THING_AFTER.has(nextWord)) continue;
    // A product model right after ("Garmin Venu 3", "Dräger Evita V500"); not an ordinal ("2nd shift"),
    // nor after a role word or a title that starts the run ("Operator Anna Keller 2nd shift").
    if (
      cue < 2 &&
      spaced &&
      toksOf(r)[0].kind !== 'title' &&
      toksOf(r)[0].kind !== 'cue' &&
      /^\s+(?:\p{Lu}{1,4}-?\d[\p{L}\d-]*|(?!\d+(?:st|nd|rd|th|e|er|re|ème|º|ª)\b)\d+\p{L}[\p{L}\d]*|(?!DOB|MRN|SSN|PIN|GP|MD|RN|PHD)\p{Lu}{3,}\b(?!:))/u.test(
        after,
      )
    )
      continue;
    if (cue < 2 && ctx.place) continue;
    // "Last, First": a family name, a comma, then given names only.
    const next = runs[i + 1];
    if (toksOf(r)[0].kind === 'title' || toksOf(r)[0].kind === 'cue') cue = 2;
    if (g && next && LAST_FIRST.test(text.slice(r.end, next.start))) {
      const lastToks = toksOf(r).filter((t) => t.kind !== 'title' && t.kind !== 'cue');
      // "SMITH, JOHN  DOB": an unknown code after the given names is no part of them.
      const nextToks = toksOf(next);
      const codeAt = nextToks.findIndex(
        (t, j) => j > 0 && t.kind === 'unknown' && t.text.length > 1 && allCaps(t.text),
      );
      const firstToks = codeAt > 0 ? nextToks.slice(0, codeAt) : nextToks;
      const firstNamed = firstToks.filter((t) => t.kind !== 'particle' && t.kind !== 'initial');
      const lastNamed = lastToks.filter((t) => t.kind !== 'particle');
      const givenOnly =
        firstNamed.length >= 1 &&
        firstNamed.length <= 2 &&
        (firstNamed.every((t) => isGiven(t.kind) || t.kind === 'weak') ||
          (cue === 2 &&
            firstNamed.every((t) => isName(t.kind) || (t.kind === 'unknown' && !allCaps(t.text)))));
      const lastOk =
        lastNamed.length >= 1 &&
        lastNamed.length <= 3 &&
        lastNamed.every((t) => isName(t.kind) || t.kind === 'unknown' || t.kind === 'weak') &&
        (cue > 0 ||
          toksOf(r).length > lastToks.length ||
          lastNamed.some((t) => t.kind === 'family' || t.kind === 'both'));
      if (givenOnly && lastOk && !/^[ \t]+\p{Lu}/u.test(text.slice(next.end, next.end + 3))) {
        const s0 = lastToks[0].start === r.start ? leadStart : lastToks[0].start;
        out.push({ start: s0, end: firstToks[firstToks.length - 1].end, rule: 'last-first' });
        i++;
        continue;
      }
    }
    // Split the run at words that are no part of a name; a title or role word cues what follows it.
    let segCue = cue;
    let skip = false;
    let seg: Tok[] = [];
    const flush = (): void => {
      if (seg.length > 0 && !skip) {
        const last = seg[seg.length - 1].lower;
        const span =
          (THING_AFTER.has(last) && !(SURNAME_THINGS.has(last) && seg.some((x) => isGiven(x.kind)))) ||
          (g && g.places.has(text.slice(seg[0].start, seg[seg.length - 1].end).toLowerCase()))
            ? undefined
            : g || segCue === 2
              ? judge(seg, g ? segCue : 2)
              : undefined;
        if (span)
          out.push({
            start: span[0] === r.start ? leadStart : span[0],
            end: span[1],
            rule: segCue ? 'cue' : 'gazetteer',
          });
      }
      seg = [];
    };
    for (const t of toksOf(r)) {
      // A firm or a place word inside the run ("Johnson Controls", "Charité Klinik"): what came before is none.
      const thing = t.lower;
      if (
        seg.length > 0 &&
        segCue < 2 &&
        THING_AFTER.has(thing) &&
        // "Emma Hall", "Ji-woo Park": words that are family names too end a name after a given name.
        !(SURNAME_THINGS.has(thing) && seg.some((x) => isGiven(x.kind)))
      ) {
        seg = [];
        segCue = 0;
        skip = true;
        continue;
      }
      // "Station Albert Schweitzer", "Ward Florence Nightingale": a ward or place word leads the run.
      if (seg.length === 0 && t.text.length > 3 && PLACE_PREV.has(t.lower)) break;
      if (t.kind === 'place' && seg.length > 0) t.kind = classify(t.text, g, false);
      if (
        t.kind === 'common' ||
        t.kind === 'brand' ||
        t.kind === 'title' ||
        t.kind === 'cue' ||
        t.kind === 'place'
      ) {
        flush();
        segCue = t.kind === 'title' || t.kind === 'cue' ? 2 : 0;
        skip = t.kind === 'brand' || t.kind === 'place';
        if (t.kind === 'place') break;
        continue;
      }
      if (skip && (t.kind === 'unknown' || t.kind === 'weak')) continue;
      skip = false;
      seg.push(t);
    }
    flush();
  }
}

/** The word right after `end` on the same line, with the gap before it. */
const WORD_AFTER =
  /^([ \t]+)((?:(?:\p{Lu}|(?!\p{Script=Latin})\p{L})\.-?){2,3}(?!\p{L})|[\p{L}\p{M}][\p{L}\p{M}'’-]*\.?)/u;
/** A word of letters of scripts other than Latin. */
const OTHER_SCRIPT_WORD = /^(?:(?!\p{Script=Latin})[\p{L}\p{M}'’-]){2,}$/u;
/** A word that starts with a letter of a script without capitals. */
const CASELESS_START =
  /^[\u0590-\u08ff\u0900-\u0dff\u0e00-\u0fff\u1000-\u109f\u10a0-\u10ff\u1100-\u11ff\u1200-\u139f\u1780-\u18af\u1c90-\u1cbf\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]/u;
/** A Latin prefix of a family name: "al-", "d'", "O’", "Mc". */
const LATIN_PREFIX = /^(?:al|el|ad|as|ash|ben|bin|ibn|abu|bint|d|l|dell|O)['’-]|^Mc(?=\P{Script=Latin})/u;
/** The next field of a log line ("cruz ip=…"): the value before it ends there. */
const NEXT_FIELD = /^[ \t]+[\p{L}\p{N}_.-]+[=:]/u;
/** The word right before `start` on the same line, with the gap after it. */
const WORD_BEFORE = /(?<![\p{L}\p{M}'’.-])((?:\p{Lu}\.-?){2,3}|[\p{L}\p{M}][\p{L}\p{M}'’-]*\.?)([ \t]+)$/u;
/** "Last, First": a comma and one capitalised word that ends the name. */
const COMMA_FIRST = /^,[ \t]*(\p{Lu}(?:[\p{Ll}\p{M}'’-]+|[\p{Lu}\p{M}'’-]+))(?![\p{L}\p{M}])/u;

/**
 * A name is hidden whole or it is not hidden: a given name left beside a hidden family name tells
 * who it was. Grows a span over the name-like words next to it: capitalised words the lists know,
 * initials, particles before a name, a family name written in lower case ("Da silva"), and the
 * given name of "Last, First".
 */
function extendSpan(text: string, span: PersonSpan, g: Gazetteer, found: readonly PersonSpan[]): PersonSpan {
  let { start, end } = span;
  let memo: { start: number; end: number; toks: Tok[] } | undefined;
  const inSpan = (): Tok[] => {
    if (!memo || memo.start !== start || memo.end !== end)
      memo = { start, end, toks: tokens(text.slice(start, end), start, g) };
    return memo.toks;
  };
  for (let guard = 0; guard < 6; guard++) {
    const m = WORD_AFTER.exec(text.slice(end, end + 64));
    if (!m) break;
    // "Paul E.L.", "Yayada ო.R.": initials written together after the name.
    if (/^(?:(?:\p{Lu}|(?!\p{Script=Latin})\p{L})\.-?){2,3}$/u.test(m[2])) {
      end += m[1].length + m[2].length;
      continue;
    }
    const word = m[2].replace(/\.$/, '');
    let kind = classify(word, g);
    // "Ambre Legrand", "Beth Kunde": a family name that is also a brand or a role word, after a name.
    if (
      (kind === 'brand' || kind === 'cue') &&
      g.family.has(word.toLowerCase()) &&
      inSpan().some((t) => isName(t.kind) || t.kind === 'weak')
    )
      kind = 'family';
    // "Deanna LA PORTA", "RENDÓN DE ARCE": a particle in capitals and the family name after it.
    const capsParticle = /^\p{Lu}{1,3}$/u.test(word) && NAME_PARTICLES.has(word.toLowerCase());
    if (capsParticle) {
      const after = /^[ \t]+(\p{Lu}[\p{Lu}\p{M}'’-]+)(?![\p{L}\p{M}])/u.exec(
        text.slice(end + m[1].length + word.length, end + 64),
      );
      if (after) {
        end += m[1].length + word.length + after[0].length;
        continue;
      }
    }
    const lower = word === word.toLowerCase();
    const wordEnd = end + m[1].length + word.length;
    const next = WORD_AFTER.exec(text.slice(wordEnd, wordEnd + 64));
    const nextKind = next ? classify(next[2].replace(/\.$/, ''), g) : undefined;
    const nextIsName =
      !!next && /^\p{Lu}/u.test(next[2]) && (isName(nextKind as Kind) || nextKind === 'cparticle');
    if (!lower && (isName(kind) || kind === 'cparticle') && kind !== 'cparticle') end = wordEnd;
    else if (
      (kind === 'particle' || kind === 'cparticle') &&
      (nextIsName || (!!next && (g.family.has(next[2]) || g.given.has(next[2]))))
    )
      end = wordEnd;
    else if (
      kind === 'particle' &&
      !!next &&
      NAME_PARTICLES.has(next[2]) &&
      /^[ \t]+\p{L}/u.test(text.slice(wordEnd + next[0].length, wordEnd + next[0].length + 2))
    )
      // "Quintero de la cruz": two particles, then the family name.
      end = wordEnd;
    else if (
      lower &&
      word.length > 3 &&
      g.family.has(word) &&
      (!COMMON.has(word) ||
        nextIsName ||
        // "Quintero cruz de Carreón": a particle and a capitalised name follow.
        (!!next &&
          NAME_PARTICLES.has(next[2]) &&
          /^[ \t]+\p{Lu}/u.test(text.slice(wordEnd + next[0].length, wordEnd + next[0].length + 2))) ||
        !/^[ \t]*[\p{L}\p{N}]/u.test(text.slice(wordEnd, wordEnd + 2)) ||
        NEXT_FIELD.test(text.slice(wordEnd, wordEnd + 40))) &&
      /^\p{Lu}/u.test(text.slice(start, end).split(/\s+/).pop() ?? '') &&
      inSpan().some((t) => t.kind === 'family' || t.kind === 'both' || t.kind === 'unknown')
    )
      // "Korta hernandez", "Kranz sans Salinas": the second family name written in lower case.
      end = wordEnd;
    else if (
      lower &&
      word.length > 2 &&
      /^(?:\p{Lu}\p{Ll}{1,3}|\p{Ll}{1,3})$/u.test(text.slice(start, end).split(/\s+/).pop() ?? '') &&
      NAME_PARTICLES.has((text.slice(start, end).split(/\s+/).pop() ?? '').toLowerCase()) &&
      (g.family.has(word) || g.given.has(word))
    )
      // "Da silva": a family name in lower case after a particle.
      end = wordEnd;
    else if (
      lower &&
      word.length > 2 &&
      !COMMON.has(word) &&
      (g.family.has(word) || g.given.has(word)) &&
      (nextIsName || !/^[ \t]*[\p{L}\p{N}]/u.test(text.slice(wordEnd, wordEnd + 2)))
    )
      end = wordEnd;
    else if (
      (/^\p{Lu}$/u.test(word) || (/^(?!\p{Script=Latin})\p{L}$/u.test(word) && m[2].endsWith('.'))) &&
      (!next || !/^\p{Lu}/u.test(next[2]) || isName(nextKind as Kind) || nextKind === 'unknown')
    )
      // "Keller M.", "Anna Keller B", "Bakoni 지.": an initial after the name.
      end += m[1].length + m[2].length;
    else if (
      kind === 'unknown' &&
      !lower &&
      word.length > 1 &&
      word !== word.toUpperCase() &&
      !(next && /^\p{Lu}/u.test(next[2]) && !GENERATION.test(next[2])) &&
      (span.rule === 'cue' || inSpan().some((t) => isName(t.kind)))
    )
      // The last of a run of capitalised words after a name found: a name no list holds.
      end = wordEnd;
    else if (
      (OTHER_SCRIPT_WORD.test(word.replace(LATIN_PREFIX, '')) ||
        (LATIN_PREFIX.test(word) && OTHER_SCRIPT_WORD.test(`${word.replace(LATIN_PREFIX, '')}-`))) &&
      (/\p{Script=Latin}/u.test(text.slice(start, end)) ||
        LATIN_PREFIX.test(word) ||
        CASELESS_START.test(word)) &&
      inSpan().some((t) => isName(t.kind) || t.kind === 'unknown' || t.kind === 'initial')
    )
      // "Tupo Fiumtu კონსტანტინე": a word in another script (Georgian, Hebrew, Arabic, Chinese...)
      // right after a name in Latin letters is read as part of it: most of these scripts have no
      // capitals to tell a name apart, and a word too many hidden is safe. With a Latin prefix too
      // ("ალიო al-ხარატიშვილი").
      end = wordEnd;
    else if (
      // "Fivifi O Rokoho": an initial without its full stop too.
      (inSpan().at(-1)?.kind === 'initial' || /^\p{Lu}$/u.test(inSpan().at(-1)?.text ?? '')) &&
      !/^\p{Ll}/u.test(word.replace(LATIN_PREFIX, '')) &&
      (kind === 'unknown' || isName(kind))
    )
      // "REVI თ. ELTOKOZU", "Anna K. Brown": after an initial, the family name.
      end = wordEnd;
    else break;
  }
  // "Signed: Maria\nKeller": a given name alone at the end of a line, its family name on the next.
  const own0 = inSpan();
  // After a strong cue, a name of one word is the first half of one: the family name on the next
  // line, alone there ("Signed: Hoka\nShifi", "Signed: Beau\nde Ruiter"), is the rest of it.
  if (
    (own0.length === 1 && (isGiven(own0[0].kind) || span.rule === 'cue')) ||
    (own0.length <= 3 && own0.every((t) => t.kind === 'given' || (span.rule === 'cue' && isGiven(t.kind))))
  ) {
    const nl = NEXT_LINE_NAME.exec(text.slice(end, end + 64));
    const words = nl ? nl[1].split(/[ \t]+/).filter((w) => !NAME_PARTICLES.has(w)) : [];
    const kinds = words.map((w) => classify(w, g));
    if (
      nl &&
      kinds.length > 0 &&
      kinds.every((k) => isName(k) || k === 'weak' || (span.rule === 'cue' && k === 'unknown')) &&
      (span.rule === 'cue' || kinds.some(isName))
    )
      end += nl[0].length;
  }
  // The same seen from the family name: "Signed: Pilar\nCarrera Olivares".
  const prevLine = PREV_LINE_NAME.exec(text.slice(Math.max(0, start - 48), start));
  if (prevLine && !/\S/.test(text.slice(start - prevLine[0].length + prevLine[0].indexOf('\n') + 1, start))) {
    const wordStart = start - prevLine[0].length + prevLine[1].length;
    const kind = classify(prevLine[2], g);
    if ((isName(kind) || kind === 'weak' || kind === 'unknown') && contextBefore(text, wordStart).cue >= 2)
      start = wordStart;
  }
  let unknownBefore = false;
  for (let guard = 0; guard < 3; guard++) {
    const m = WORD_BEFORE.exec(text.slice(Math.max(0, start - 64), start));
    if (!m) break;
    const word = m[1];
    const bare = word.replace(/\.$/, '');
    const kind = classify(word, g);
    const wordStart = start - m[0].length;
    if (
      kind === 'initial' ||
      /^\p{Lu}$/u.test(bare) ||
      // "par Pat Thompson", "Don Keller": a role word or title that is also a given name, right
      // before a name that has none, is its given name (hidden with it; a title hidden costs nothing).
      ((kind === 'cue' || kind === 'title') &&
        /^\p{Lu}\p{Ll}+$/u.test(word) &&
        g.given.has(word.toLowerCase()) &&
        (!inSpan().some((t) => isGiven(t.kind)) || titleBefore(text, wordStart, g))) ||
      (/^\p{Lu}/u.test(word) && isGiven(kind)) ||
      kind === 'cparticle' ||
      kind === 'particle' ||
      (kind === 'weak' && g.given.has(bare.toLowerCase()))
    )
      start = wordStart;
    else if (
      /^\p{Lu}/u.test(bare) &&
      (kind === 'unknown' || isName(kind)) &&
      ((bare !== bare.toUpperCase() && inSpan()[0]?.kind === 'particle') ||
        // "GUILLEN DE TREVIÑO María": the same in capitals.
        (bare.length > 1 &&
          bare === bare.toUpperCase() &&
          /^\p{Lu}{1,3}$/u.test(inSpan()[0]?.text ?? '') &&
          NAME_PARTICLES.has((inSpan()[0]?.text ?? '').toLowerCase())))
    )
      // "Viel di Umzuleum", "Ludwig van Beethoven": a particle in lower case starts no name.
      start = wordStart;
    else if (
      !unknownBefore &&
      kind === 'unknown' &&
      bare.length > 1 &&
      bare !== bare.toUpperCase() &&
      /^\p{Lu}/u.test(bare) &&
      (isGiven(inSpan()[0]?.kind ?? 'unknown') ||
        inSpan()[0]?.kind === 'initial' ||
        /^\p{Lu}\.?$/u.test(inSpan()[0]?.text ?? ''))
    ) {
      // "from Viyaba Christer", "Note: Maelzu Maya", "-> Kamida Korene Vivi": one or two words no
      // list holds, after a cue or a separator, before a given name or an initial.
      const opens = (at: number): boolean =>
        /(?:^|[\n:(;,"'[{>])[ \t]*$/.test(text.slice(Math.max(0, at - 4), at)) ||
        contextBefore(text, at).cue > 0;
      if (opens(wordStart)) start = wordStart;
      else {
        const m2 = WORD_BEFORE.exec(text.slice(Math.max(0, wordStart - 64), wordStart));
        const word2 = m2?.[1] ?? '';
        const start2 = wordStart - (m2?.[0].length ?? 0);
        if (m2 && /^\p{Lu}\p{Ll}/u.test(word2) && classify(word2, g) === 'unknown' && opens(start2))
          start = start2;
        else break;
      }
      unknownBefore = true;
    } else if (/^\p{Ll}[\p{Ll}\p{M}'’-]{3,}$/u.test(bare) && g.family.has(bare) && !COMMON.has(bare)) {
      // "Kadar rodriguez Covarrubias", "Le gall Adegrine": a family name in lower case, after a
      // capitalised name or particle.
      const m2 = WORD_BEFORE.exec(text.slice(Math.max(0, wordStart - 64), wordStart));
      const kind2 = m2 ? classify(m2[1], g) : undefined;
      if (
        !m2 ||
        !/^\p{Lu}\p{Ll}/u.test(m2[1]) ||
        !(kind2 === 'cparticle' || kind2 === 'unknown' || (kind2 !== undefined && isName(kind2)))
      )
        break;
      start = wordStart - m2[0].length;
    } else break;
  }
  // "Kim Min-jun (김민준)": the same name in a script without capitals, in brackets right after.
  const alias = /^[ \t]*\(([^()\n]{2,40})\)/u.exec(text.slice(end, end + 48));
  if (
    alias &&
    !/\p{Lu}/u.test(alias[1]) &&
    alias[1]
      .trim()
      .split(/\s+/)
      .every((w) => OTHER_SCRIPT_WORD.test(w)) &&
    /\p{Script=Latin}/u.test(text.slice(start, end))
  )
    end += alias[0].length;
  // "Di Benedetto, Iacopo": a span of family names only, a comma, then a given name alone.
  const comma = COMMA_FIRST.exec(text.slice(end, end + 48));
  const commaKind = comma ? classify(comma[1], g) : undefined;
  // What follows the given name: nothing capitalised, or a word that is no name ("Jerde, Mark Shift
  // lead"), or an initial ("Reis, Alessandro J.").
  const afterComma = comma
    ? /^[ \t]+(\p{Lu}[\p{L}\p{M}'’-]*\.?)/u.exec(
        text.slice(end + comma[0].length, end + comma[0].length + 40),
      )
    : null;
  const afterKind = afterComma ? classify(afterComma[1], g) : undefined;
  if (
    comma &&
    (isGiven(commaKind as Kind) || (commaKind === 'weak' && g.given.has(comma[1].toLowerCase()))) &&
    !inSpan().some((t) => t.kind === 'given') &&
    (!afterComma ||
      afterKind === 'initial' ||
      afterKind === 'common' ||
      afterKind === 'cue' ||
      afterKind === 'title')
  )
    end += comma[0].length + (afterComma && afterKind === 'initial' ? afterComma[0].length : 0);
  else if (
    span.rule === 'cue' &&
    text[end] === ',' &&
    (inSpan().length === 1 || !inSpan().some((t) => isGiven(t.kind)))
  ) {
    // "Signed: Kowalczyk, Zbigniew Shift lead", "checked by ROEL, VIRIYA": after a strong cue, one
    // word or family names, then given names no list holds: "Last, First", read as the rules
    // detector reads it (hiding a word too many, or all of a list of names, is safe; leaving the
    // given name beside a hidden family name is not).
    const caps =
      /\p{Lu}{2}/u.test(text.slice(start, end)) &&
      text.slice(start, end) === text.slice(start, end).toUpperCase();
    const given = (caps ? COMMA_GIVEN_CAPS : COMMA_GIVEN).exec(text.slice(end, end + 64));
    if (given) end += given[0].length;
  }
  // "Arriaga Sr.", "Smith, Jr.", "Henry III": a generation belongs to the name.
  const suffix = SUFFIX_AFTER.exec(text.slice(end, end + 8));
  if (suffix) end += suffix[0].length;
  // "Hiebl-Sehls Jr." found up to "Jr": its full stop is the abbreviation's.
  else if (text[end] === '.' && /(?:^|\s)(?:Jr|Jnr|Sr|Snr)$/.test(text.slice(Math.max(start, end - 4), end)))
    end++;
  // "Green, Marten Fini": a name of given names after "Word, " is the second half of "Last, First".
  const own = inSpan();
  if (
    own.length <= 5 &&
    own.some((t) => isGiven(t.kind)) &&
    own.every(
      (t, i) =>
        isGiven(t.kind) ||
        t.kind === 'weak' ||
        t.kind === 'unknown' ||
        t.kind === 'initial' ||
        // "Soyinka, Omolola Daum": given names and family names.
        t.kind === 'family' ||
        (i > 0 && t.kind === 'particle'),
    )
  ) {
    // "Limón Madrigal, Andrea": family names found on their own before the comma join the name.
    const before = found.find(
      (o) =>
        /^,[ \t]*$/.test(text.slice(o.end, start)) &&
        tokens(text.slice(o.start, o.end), o.start, g).every((t) => !isGiven(t.kind) && t.kind !== 'weak'),
    );
    const lowerLast = before ? null : PARTICLE_LAST_BEFORE.exec(text.slice(Math.max(0, start - 48), start));
    if (before) start = before.start;
    else if (lowerLast && NAME_PARTICLES.has(lowerLast[2].toLowerCase()))
      // "Le roux, Loïc", "Da silva, Philothée": a capitalised particle and a family name in lower case.
      start -= lowerLast[0].length - lowerLast[1].length;
    else {
      const last = LAST_BEFORE.exec(text.slice(Math.max(0, start - 48), start));
      const lastStart = last ? start - last[0].length + last[1].length : -1;
      // "Di Michele, Ray", "De Angelis, Bill": a capitalised particle and its family name.
      const particle = last
        ? CPARTICLE_BEFORE.exec(text.slice(Math.max(0, lastStart - 16), lastStart))
        : null;
      const particleStart = particle ? lastStart - particle[0].length + particle[1].length : -1;
      const lastKind = last ? classify(last[2], g, false) : undefined;
      if (
        particle &&
        NAME_PARTICLES.has(particle[2].toLowerCase()) &&
        (lastKind === 'unknown' || lastKind === 'weak' || (lastKind !== undefined && isName(lastKind))) &&
        !found.some((o) => o.start < particleStart && o.end > particleStart)
      )
        start = particleStart;
      // Not the family name of the name before ("Anna Keller, Maria Zorbu"): a capitalised word
      // right before it, or a name found over it, makes it that one's.
      else if (
        last &&
        !nameWordBefore(text, lastStart, g) &&
        !found.some((o) => o.start < lastStart && o.end > lastStart)
      ) {
        const sentenceStart = /(?:^|[.!?]\s+|\n)$/.test(
          text.slice(Math.max(0, start - last[0].length - 3), start - last[0].length + last[1].length),
        );
        if (
          lastKind === 'family' ||
          lastKind === 'both' ||
          // "Toni, Zuanba Khắc Việt": a family name that the lists hold as a given name.
          (lastKind === 'given' && !sentenceStart) ||
          lastKind === 'weak' ||
          (lastKind === 'unknown' &&
            last[2] !== last[2].toUpperCase() &&
            (!sentenceStart || span.rule === 'cue'))
        )
          start -= last[0].length - last[1].length;
      }
    }
  }
  // "de la Vương, Nhật Huy": particles in lower case before a family name found last.
  for (let guard = 0; guard < 3; guard++) {
    const m = /(?<![\p{L}\p{M}'’.-])(\p{Ll}{1,5})[ \t]+$/u.exec(text.slice(Math.max(0, start - 16), start));
    if (!m || !NAME_PARTICLES.has(m[1])) break;
    start -= m[0].length;
  }
  // "VAN DER LINDEN Michael": particles in capitals before a family name in capitals.
  for (let guard = 0; guard < 3; guard++) {
    const m = CAPS_PARTICLE_BEFORE.exec(text.slice(Math.max(0, start - 8), start));
    if (!m || !NAME_PARTICLES.has(m[1].toLowerCase()) || !/^\p{Lu}{2}/u.test(text.slice(start, start + 2)))
      break;
    start -= m[0].length;
  }
  return start === span.start && end === span.end ? span : { start, end, rule: span.rule };
}

const LETTER = /[\p{L}\p{M}]/u;
/** A hyphen or apostrophe inside a word: "Bertrand-Sylvestre", "D'AMBROSIO" (not a possessive "'s"). */
const joinsWord = (text: string, at: number): boolean =>
  (text[at] === '-' || text[at] === "'" || text[at] === '’') &&
  LETTER.test(text[at - 1] ?? '') &&
  LETTER.test(text[at + 1] ?? '') &&
  !(text[at] !== '-' && /^s(?![\p{L}\p{M}])/u.test(text.slice(at + 1, at + 3)));

/** A span widened to whole words: a name is never cut inside a word ("Claudia|-Aquilino", "D|'AMBROSIO"). */
function wholeWords(text: string, span: PersonSpan): PersonSpan {
  let { start, end } = span;
  for (;;) {
    while (end < text.length && (LETTER.test(text[end]) || joinsWord(text, end))) end++;
    // "אביתר ח.D.": an initial's full stop, and initials written on after it.
    if (text[end] !== '.' || !LETTER.test(text[end - 1] ?? '') || LETTER.test(text[end - 2] ?? '')) break;
    end++;
    if (!LETTER.test(text[end] ?? '')) break;
  }
  while (start > 0 && (LETTER.test(text[start - 1]) || joinsWord(text, start - 1))) start--;
  return start === span.start && end === span.end ? span : { start, end, rule: span.rule };
}

/** A part of a name in a record that separates them with '^' (HL7's "Family^Given^Middle"). */
const COMPONENT_AFTER = /^\^((?:\p{Lu}[\p{L}\p{M}'’.-]*|[ \t]+){1,8}?)(?=[\^|~\r\n]|$)/u;
const COMPONENT_BEFORE = /(?:^|[|~\r\n^])((?:\p{Lu}[\p{L}\p{M}'’.-]*|[ \t]+){1,8}?)\^$/u;

/** A span grown over the other parts of a name written "Family^Given^Middle". */
function components(text: string, span: PersonSpan): PersonSpan {
  let { start, end } = span;
  for (let n = 0; n < 3 && text[end] === '^'; n++) {
    const m = COMPONENT_AFTER.exec(text.slice(end, end + 64));
    if (!m || m[1].trim() === '') break;
    end += m[0].length;
  }
  for (let n = 0; n < 3 && text[start - 1] === '^'; n++) {
    const m = COMPONENT_BEFORE.exec(text.slice(Math.max(0, start - 64), start));
    if (!m || m[1].trim() === '') break;
    start -= m[1].length + 1;
  }
  return start === span.start && end === span.end ? span : { start, end, rule: span.rule };
}

/** Words of a span without the punctuation around them. */
const bareKinds = (text: string, span: PersonSpan, g: Gazetteer): Kind[] =>
  (text.slice(span.start, span.end).match(/[\p{L}\p{M}][\p{L}\p{M}'’.-]*/gu) ?? []).map((w) =>
    classify(w.replace(/[.'’-]+$/, ''), g),
  );

/**
 * The last step of a name: no part of it is left beside the part hidden. Each span is cut at whole
 * words and grown again until nothing changes (a given name taken after "Last, " may be followed by
 * "del Carmen", a hyphen or a particle and a family name), and two spans with only a comma between
 * them are one name when one of them is half of one ("de la Rico Rosado, Jorge Luis", "Vương, Yến
 * Nhi": one word or family names only before the comma, or given names only after it).
 */
function wholeNames(
  text: string,
  spans: PersonSpan[],
  g: Gazetteer,
  found: readonly PersonSpan[],
): PersonSpan[] {
  const grown = spans.map((span, i) => {
    let cur = span;
    // A span that extendSpan left as it was and that is whole words already is grown as far as it goes.
    if (
      i < found.length &&
      span === found[i] &&
      wholeWords(text, span) === span &&
      text[span.end] !== '^' &&
      text[span.start - 1] !== '^'
    )
      return span;
    for (let round = 0; round < 3; round++) {
      const next = extendSpan(text, components(text, wholeWords(text, cur)), g, found);
      if (next.start === cur.start && next.end === cur.end) break;
      cur = next;
    }
    return cur;
  });
  if (grown.length < 2) return grown;
  grown.sort((a, b) => a.start - b.start || b.end - a.end);
  const out: PersonSpan[] = [grown[0]];
  for (let i = 1; i < grown.length; i++) {
    const prev = out[out.length - 1];
    const cur = grown[i];
    if (cur.start < prev.end) {
      if (cur.end > prev.end) out[out.length - 1] = { ...prev, end: cur.end };
      continue;
    }
    if (/^,[ \t]*$/.test(text.slice(prev.end, cur.start))) {
      const left = bareKinds(text, prev, g);
      const right = bareKinds(text, cur, g);
      if (left.length === 1 || !left.some(isGiven) || right.every((k) => isGiven(k) || k === 'initial')) {
        out[out.length - 1] = { ...prev, end: cur.end };
        continue;
      }
    }
    out.push(cur);
  }
  return out;
}

/** Whether a title stands right before `at` ("M. Pat Bertrand": "Pat" is a given name then). */
function titleBefore(text: string, at: number, g: Gazetteer): boolean {
  const m = WORD_BEFORE.exec(text.slice(Math.max(0, at - 32), at));
  return !!m && (TITLES.has(m[1].toLowerCase().replace(/\.$/, '')) || classify(m[1], g) === 'title');
}

/** Whether a capitalised word that may be part of a name stands right before `at` on its line. */
function nameWordBefore(text: string, at: number, g: Gazetteer): boolean {
  const m = /(\p{Lu}[\p{L}\p{M}'’-]*)\.?[ \t]+$/u.exec(text.slice(Math.max(0, at - 32), at));
  if (!m) return false;
  const lower = m[1].toLowerCase();
  if (STRONG_CUE_1.has(lower) || WEAK_CUE.has(lower)) return false;
  const kind = classify(m[1], g, false);
  return kind !== 'common' && kind !== 'title' && kind !== 'cue' && kind !== 'brand';
}

/** A capitalised word alone at the end of the line before (group 1: what precedes it). */
const PREV_LINE_NAME = /(^|[^\p{L}\p{M}'’-])(\p{Lu}[\p{Ll}\p{M}'’-]+)[ \t]*\r?\n[ \t]*$/u;
/** A generation after a name: "Jr.", ", Sr.", "III". */
const SUFFIX_AFTER = /^,?[ \t]+(?:Jr|Jnr|Sr|Snr|II|III|IV)\b\.?/u;
/** "Word, " right before: a family name in front of the given names (group 1: what precedes it). */
const LAST_BEFORE = /(^|[^\p{L}\p{M}'’-])(\p{Lu}[\p{L}\p{M}'’-]+),[ \t]*$/u;
/** "Da silva, " right before: a capitalised particle, a family name in lower case, a comma. */
const PARTICLE_LAST_BEFORE = /(^|[^\p{L}\p{M}'’-])(\p{Lu}\p{Ll}{0,2})[ \t]+\p{Ll}[\p{Ll}\p{M}'’-]+,[ \t]*$/u;
/** A capitalised particle right before (group 1: what precedes it): "Di ", "De ". */
const CPARTICLE_BEFORE = /(^|[^\p{L}\p{M}'’-])(\p{Lu}\p{Ll}{0,3})[ \t]+$/u;
/** A particle in capitals right before: "VAN ", "DE ". */
const CAPS_PARTICLE_BEFORE = /(?<![\p{L}])(\p{Lu}{1,4})[ \t]+$/u;

/** `otherScripts`: whether the text holds letters of scripts after Latin, if the caller knows. */
export function findPersons(
  text: string,
  detector: PersonDetector,
  otherScripts = holdsOtherScripts(text),
): PersonSpan[] {
  const out: PersonSpan[] = [];
  if (detector === 'off') return out;
  const g = detector === 'rules' ? undefined : gazetteer();
  runSpans(text, g, out, otherScripts);
  const spans = g
    ? out.map((span) => extendSpan(text, span, g, out))
    : out.map((span) => withFirstNames(text, span));
  if (otherScripts) caselessAfterCues(text, spans);
  return g ? wholeNames(text, spans, g, out) : spans;
}

/**
 * A letter of a script without capitals, with its marks: Hebrew, Arabic, Syriac, Thaana, the
 * scripts of India, Thai, Lao, Tibetan, Myanmar, Georgian, Hangul, Ethiopic, Khmer, Mongolian, kana,
 * CJK. As ranges (a set V8 checks at once; a Script= look-ahead at every letter cost ~10 ms per MB).
 */
const CASELESS = String.raw`(?:[\u0590-\u08ff\u0900-\u0dff\u0e00-\u0fff\u1000-\u109f\u10a0-\u10ff\u1100-\u11ff\u1200-\u139f\u1780-\u18af\u1c90-\u1cbf\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af][\p{M}\u200c\u200d]*)`;
/** A part of a name joined to such a word by a hyphen: its script's letters, or a capitalised Latin word. */
const MIXED_PART = String.raw`(?:${CASELESS}{1,16}|\p{Lu}[\p{L}\p{M}]{0,15})`;
/**
 * A word of such letters (up to 16, hyphens and apostrophes inside, parts in Latin letters too:
 * "მოგელი-Orga") or initials ("ე.", "수.윤.").
 */
const CASELESS_WORD = String.raw`(?:(?:${CASELESS}\.){1,3}|${CASELESS}{1,16}(?:[-'’]${MIXED_PART}){0,2})`;
/**
 * A name alone on the next line: "Keller", "de Ruiter", "Carrera Olivares", then the end of the line
 * or a comma, full stop, bracket.
 */
const NEXT_LINE_NAME = new RegExp(
  String.raw`^[ \t]*\r?\n[ \t]*((?:${PARTICLE}[ \t]+){0,3}(?:\p{Lu}[\p{L}\p{M}'’-]+|${CASELESS_WORD})(?:[ \t]+(?:\p{Lu}[\p{L}\p{M}'’-]+|${CASELESS_WORD}))?)(?=[ \t]*(?:$|[\r\n,.;)]))`,
  'u',
);
/**
 * Up to three such words on one line (Hebrew, Arabic, Georgian, Korean, Chinese, Japanese, Thai,
 * Devanagari...).
 */
const CASELESS_RUN = new RegExp(
  String.raw`${CASELESS_WORD}(?:[ \t]${CASELESS_WORD}){0,2}(?![\p{L}\p{M}\p{N}_])`,
  'gu',
);

const WORD_GLUE = /[\p{L}\p{M}\p{N}_'’-]/u;
/** A whole field value that is a name in a script without capitals: one to four such words. */
export const CASELESS_NAME_VALUE = new RegExp(
  String.raw`^${CASELESS_WORD}(?:[ \t,]+${CASELESS_WORD}){0,3}$`,
  'u',
);

/**
 * Names in scripts without capitals cannot be told from other words by their shape: they are taken
 * where a cue stands right before them ("Operator ნინო ბერიძე", "patient: 김민준", "notify דוד כהן"),
 * as the rules detector takes a name after a cue, whatever the language of the cue's sentence.
 */
function caselessAfterCues(text: string, spans: PersonSpan[]): void {
  CASELESS_RUN.lastIndex = 0;
  for (let m = CASELESS_RUN.exec(text); m; m = CASELESS_RUN.exec(text)) {
    const start = m.index;
    // Only at the start of a word (checked here: a look-behind in the pattern was tried at every
    // position of the text).
    if (start > 0 && WORD_GLUE.test(text[start - 1])) {
      CASELESS_RUN.lastIndex = start + 1;
      continue;
    }
    const end = start + m[0].length;
    if (spans.some((s) => s.start < end && start < s.end)) continue;
    // A strong cue, or a weak one ("for", "by", "notify") before two or three words: a name of one
    // word needs the strong cue.
    const cue = contextBefore(text, start).cue;
    if (cue < 1 || (cue < 2 && !/\s/.test(m[0]))) continue;
    spans.push(caselessWhole(text, start, end));
  }
}

/** Stands in CASELESS_MORE for COMMA_GIVEN, defined further down. */
const COMMA_GIVEN_LATE = /(?!)/u;
/** What may follow a name in a script without capitals and still be part of it, tried in turn. */
const CASELESS_MORE = [
  // "აბაზაძე, ნუკა": "Last, First".
  new RegExp(String.raw`^,[ \t]*${CASELESS_WORD}(?:[ \t]${CASELESS_WORD})?(?![\p{L}\p{M}\p{N}_])`, 'u'),
  // A generation ("Sr."), an initial ("F.").
  /^[ \t]+(?:Jr|Jnr|Sr|Snr|II|III|IV|\p{Lu})\.?(?![\p{L}\p{N}])/u,
  // A fourth word, with a Latin prefix on it ("Mc간", "Dell'최").
  new RegExp(String.raw`^[ \t]+(?:\p{Lu}\p{Ll}{0,3}['’]?)?${CASELESS_WORD}(?![\p{L}\p{M}\p{N}_])`, 'u'),
  // Words in Latin capitals or particles between such words ("윤서 Ter 윤", "ויטה da חרובי").
  new RegExp(
    String.raw`^(?:[ \t]+(?:\p{Lu}[\p{L}\p{M}'’]{0,15}(?:-${MIXED_PART}){0,2}|${PARTICLE})){1,3}(?=[ \t]+(?:\p{Lu}\p{Ll}{0,3}['’]?)?${CASELESS_WORD}(?![\p{L}\p{M}\p{N}_]))`,
    'u',
  ),
  // A given name in Latin letters after a comma ("גדות, Grace"), as the rules detector reads one.
  COMMA_GIVEN_LATE,
  // A last word in Latin letters before the end of the clause.
  new RegExp(
    String.raw`^[ \t]+\p{Lu}[\p{Ll}\p{M}'’]{1,15}(?:-${MIXED_PART}){0,2}(?=[ \t]*(?:[,;)\]"\r\n]|\.(?!\p{L})|$))`,
    'u',
  ),
];
/** Particles in Latin letters right before: "van 두". */
const CASELESS_PARTICLE_BEFORE = new RegExp(String.raw`(?:^|[\s"'(:=])((?:${PARTICLE}[ \t]+){1,3})$`, 'u');

/** A name in a script without capitals found from `start` to `end`, grown over what belongs to it. */
function caselessWhole(text: string, start: number, end: number): PersonSpan {
  for (let n = 0; n < 4; n++) {
    // Each of CASELESS_MORE starts with a comma, a space or a tab.
    const c = text[end];
    if (c !== ',' && c !== ' ' && c !== '\t') break;
    let grown = false;
    const rest = text.slice(end, end + 80);
    for (const more of CASELESS_MORE) {
      const m = (more === COMMA_GIVEN_LATE ? COMMA_GIVEN : more).exec(rest);
      if (m) {
        end += m[0].length;
        grown = true;
        break;
      }
    }
    if (!grown) break;
  }
  // A particle before ends in a space or a tab.
  const before =
    text[start - 1] === ' ' || text[start - 1] === '\t'
      ? CASELESS_PARTICLE_BEFORE.exec(text.slice(Math.max(0, start - 24), start))
      : null;
  if (before) start -= before[1].length;
  return { start, end, rule: 'cue' };
}

/**
 * ", Gayle", ", Maria Clara", ", Jerel-Whitney": given names after a comma, up to a comma, a full
 * stop, the line's end or a word in lower case.
 */
const COMMA_GIVEN =
  /^,[ \t]*(?:\p{Lu}[\p{Ll}\p{M}'’]+-?){1,3}(?:[ \t]+(?:\p{Lu}[\p{Ll}\p{M}'’]+-?){1,3}){0,2}(?=[ \t]*(?:[,.;)\]"\r\n]|$)|[ \t]+\p{Ll})/u;

/** The same in capitals, after a family name in capitals: ", VIRIYA", ", JEAN PAUL". */
const COMMA_GIVEN_CAPS =
  /^,[ \t]*\p{Lu}[\p{Lu}\p{M}'’-]+(?:[ \t]+\p{Lu}[\p{Lu}\p{M}'’-]+){0,2}(?=[ \t]*(?:[,.;)\]"\r\n]|$)|[ \t]+\p{Ll})/u;

/**
 * Without the name lists, a name found after a cue ("Assigned to Walter, Gayle") is read as "Last,
 * First" when capitalised words and then a comma or the end of the sentence follow: hiding the given
 * names of two people listed is safe, leaving a given name beside a hidden family name is not.
 */
function withFirstNames(text: string, span: PersonSpan): PersonSpan {
  if (span.rule !== 'cue' || text[span.end] !== ',') return span;
  const m = COMMA_GIVEN.exec(text.slice(span.end, span.end + 64));
  return m ? { ...span, end: span.end + m[0].length } : span;
}

/** Field names whose whole value is a person's name. */
export const KEY_PERSON =
  /^(?:(?:[a-z]+[_-]?)?(?:full_?name|first_?name|last_?name|given_?name|family_?name|middle_?name|display_?name|contact_?name|surname)|name|contact|patient(?:_?name)?|customer(?:_?name)?|operator(?:_?name)?|technician(?:_?name)?|tech|owner|driver|pilot|nurse|doctor|physician|attending|wearer|caller|author|reporter|requester|assignee|actor|inspector|supervisor|manager|escort|visitor|employee(?:_?name)?|user_?name|person|signed_?by|approved_?by|reported_?by|assigned_?to|signedBy|approvedBy|reportedBy|assignedTo|fullName|firstName|lastName|displayName)$/i;

/**
 * Field names that hold a person by their role: `created_by`, `updatedBy`, `nurse_on_duty`,
 * `emergency_contact`, `next_of_kin`, `caregiver`, `crew_member` ... (KEY_PERSON holds the plain ones).
 * Test it on the snake_case form of the name (roleKey).
 */
export const KEY_PERSON_ROLE =
  /(?:^|[_-])(?:(?:creat|updat|modifi|edit|sign|approv|check|verifi|review|handl|perform|enter|record|submitt|request|confirm|acknowledg|clos|open|assign|escalat|complet|inspect|writt|driv|flown|own)(?:ed|en)?[_-]?by|nurse|carer|caregiver|guardian|relative|spouse|partner|next[_-]?of[_-]?kin|emergency[_-]?contact|contact[_-]?person|resident|clinician|surgeon|therapist|midwife|paramedic|pharmacist|staff|worker|reviewer|approver|verifier|witness|signer|signatory|passenger|crew[_-]?member|crew|member|officer|dispatcher|guest|tenant|recipient|sender|addressee)(?:[_-]?(?:name|on[_-]?duty|in[_-]?charge|\d+))?$/i;

/** `updatedBy` → `updated_By`: camelCase field names split as snake_case ones are. */
export const roleKey = (key: string): string => key.replace(/(\p{Ll})(\p{Lu})/gu, '$1_$2');

/** Lower-case particles and prefixes that may start or join a name: "van der Berg", "al-Rashid", "d'Almeida". */
const VALUE_PARTICLE = String.raw`(?:(?:van|von|der|den|de|da|di|du|del|della|le|la|al|el|bin|ibn|ter|ten|y|dos|das|do)\b|(?:al|el|ad|as|ash|bin|ibn|abu|ben|bint)-|d['’]|dell['’]|l['’])`;
/** A whole field value that reads as a name: 1 to 6 words of letters, "Last, First" too. */
export const NAME_VALUE = new RegExp(
  String.raw`^(?:\p{Lu}\.\s*)*(?:${VALUE_PARTICLE}\s*)*\p{Lu}[\p{L}\p{M}'’.-]*(?:,?\s+(?:\p{Lu}\.|(?:${VALUE_PARTICLE}\s*)*\p{Lu}[\p{L}\p{M}'’.-]*|${VALUE_PARTICLE})){0,5}$`,
  'u',
);
