import {
  compileCustomPatterns,
  detect,
  detectSteps,
  type CompiledCustomPattern,
  type DetectOptions,
} from './detectors';
import {
  applyOperatorsSteps,
  Pseudonymizer,
  restoreText,
  type OperatorContext,
  type PseudonymMap,
} from './operators';
import type { PersonDetector } from './person';
import {
  ENTITY_TYPES,
  OPERATORS,
  type CustomPattern,
  type EntityType,
  type Finding,
  type Operator,
} from './types';
import { isPlainObject } from '../util/plain';
import { loadGazetteer } from './gazetteer';
import { phoneRegions, warmUpPhoneSteps } from './phone';

/** A value the guard cannot make safe; the caller must not pass the message on. */
export class BlockedError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'BlockedError';
  }
}

export interface GuardLimits {
  /** Nesting depth of objects and arrays. */
  maxDepth: number;
  /** Objects, arrays and leaves visited. */
  maxNodes: number;
  /** Characters of text scanned in one call. */
  maxChars: number;
}

export const DEFAULT_LIMITS: GuardLimits = { maxDepth: 64, maxNodes: 100_000, maxChars: 4_000_000 };

export const DEFAULT_OPERATORS: Readonly<Record<string, Operator>> = Object.freeze(
  Object.fromEntries(
    ENTITY_TYPES.map((t): [string, Operator] => [t, t === 'SECRET' ? 'redact' : 'pseudonym']),
  ),
);

export interface GuardConfig {
  /** Operator per entity type; types left out get DEFAULT_OPERATORS. `off` = not looked for. */
  operators?: Partial<Record<string, Operator>>;
  customPatterns?: CustomPattern[];
  /** Operator for custom pattern types not named in `operators`. */
  customOperator?: Operator;
  /** Region for national phone numbers, tried first (kept for older flows; `regions` is the list). */
  defaultCountry?: string;
  /**
   * Regions (ISO 3166 alpha-2) whose national phone numbers, written without +/00, are recognised.
   * Empty or left out: the gateway's region and a broad default set (DEFAULT_REGIONS).
   */
  regions?: string[];
  person?: PersonDetector;
  /** HMAC key for the hash operator. */
  key?: string | Buffer;
  /** Also protect object keys (maps keyed by e-mail address, for example). Default true. */
  scanKeys?: boolean;
  limits?: Partial<GuardLimits>;
}

export interface ProtectResult<T = unknown> {
  value: T;
  counts: Record<string, number>;
  total: number;
}

interface Slot {
  text: string;
  keyHint?: string;
  assign(text: string): void;
}

/** NUL and the C0 controls other than tab, newlines and form feed mark binary data. */
function hasControlBytes(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 && (c < 0x09 || c > 0x0d)) return true;
  }
  return false;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A few lines with one of each kind of entity, to compile the detectors before the first message. */
const WARM_UP = [
  'Operator Lisa Meyer (lisa.meyer@example.com, tel. 030 12345678, +44 20 7946 0958) reset pump 3 at 10.0.0.7.',
  'Patient: Keller, Maria, geb. 12. März 1961, DOB 1961-03-12; Dr. Ahmed Al-Farsi; GPS N 48°51′24″ E 2°21′03″.',
  'mac=00:1a:2b:3c:4d:5e fe80::1ff:fe23:4567:890a card 4111 1111 1111 1111 IBAN DE89 3704 0044 0532 0130 00',
  'token 3f9a8c7e6d5b4a3928170f1e2d3c4b5a6978 api_key=AKIAIOSFODNN7EXAMPLE March 3, 1985 SSN 536-22-1234',
].join('\n');

/** Short texts that each reach a few of a detector's patterns first: their first uses apart. */
const WARM_UP_FIRST = [
  'a b',
  'Lisa',
  'Keller, Maria',
  'Operator Lisa Meyer',
  'geb. 12. März 1961',
  'DOB 1961-03-12',
];

/** How long protectAsync and restoreAsync work before they let the event loop run. */
export const DEFAULT_SLICE_MS = 10;
const RESTORE_PIECE = 262_144;

function runSteps<R>(steps: Generator<void, R, void>): R {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Runs the steps, yielding to the event loop (setImmediate) once a slice of `sliceMs` is used up. */
async function runStepsAsync<R>(steps: Generator<void, R, void>, sliceMs: number): Promise<R> {
  let sliceStart = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() - sliceStart >= sliceMs) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
}

/**
 * Finds and replaces personal and secret data in strings and deep in JSON-like values. The input
 * is never modified: protect() builds a copy, so a value that turns out to be unsafe halfway
 * through is still intact for the caller to block.
 */
export class PrivacyGuard {
  readonly operators: Readonly<Record<string, Operator>>;
  private readonly custom: CompiledCustomPattern[];
  private readonly detectOptions: DetectOptions;
  private readonly key?: Buffer;
  private readonly limits: GuardLimits;
  private readonly scanKeys: boolean;
  private readonly customOperator: Operator;

  /** Throws an Error with a message fit for the user when the configuration is unusable. */
  constructor(config: GuardConfig = {}) {
    const operators: Record<string, Operator> = { ...DEFAULT_OPERATORS };
    for (const [type, op] of Object.entries(config.operators ?? {})) {
      if (op === undefined) continue;
      if (!OPERATORS.includes(op)) throw new Error(`unknown operator "${String(op)}" for ${type}`);
      operators[type] = op;
    }
    this.customOperator = config.customOperator ?? 'redact';
    if (!OPERATORS.includes(this.customOperator))
      throw new Error(`unknown operator "${String(this.customOperator)}"`);
    this.custom = compileCustomPatterns(config.customPatterns ?? []).filter(
      (p) => (operators[p.name] ?? this.customOperator) !== 'off',
    );
    this.operators = Object.freeze(operators);
    if (config.key !== undefined && config.key !== '') {
      this.key = Buffer.isBuffer(config.key) ? config.key : Buffer.from(config.key, 'utf8');
    }
    const usesHash =
      Object.values(operators).includes('hash') || (this.custom.length > 0 && this.customOperator === 'hash');
    if (usesHash && !this.key) throw new Error('the hash operator needs a key (credentials)');
    if (config.defaultCountry && !/^[A-Z]{2}$/.test(config.defaultCountry)) {
      throw new Error(
        `default country must be two upper-case letters (ISO 3166), not "${config.defaultCountry}"`,
      );
    }
    for (const r of config.regions ?? []) {
      if (!/^[A-Z]{2}$/.test(r))
        throw new Error(`phone regions must be two upper-case letters (ISO 3166), not "${r}"`);
    }
    const types = new Set<EntityType>(ENTITY_TYPES.filter((t) => operators[t] !== 'off'));
    this.detectOptions = {
      types,
      regions: phoneRegions(config.regions, config.defaultCountry || undefined),
      person: config.person ?? 'names',
      custom: this.custom,
    };
    this.limits = { ...DEFAULT_LIMITS, ...config.limits };
    this.scanKeys = config.scanKeys ?? true;
  }

  /**
   * Loads what detection needs before the first message: the name lists (built in a worker thread)
   * and V8's machine code for the large regular expressions (tens of milliseconds each on first
   * use), one at a time between turns of the event loop. Idempotent.
   */
  async prepare(): Promise<void> {
    if (this.detectOptions.types.has('PERSON') && (this.detectOptions.person ?? 'names') !== 'off') {
      if (this.detectOptions.person !== 'rules') await loadGazetteer();
    }
    // libphonenumber builds each region's patterns on first use: one region per step, before the
    // detectors below ask sixty regions about the numbers of the warm-up text.
    if (this.detectOptions.types.has('PHONE')) {
      const phones = warmUpPhoneSteps();
      while (!phones.next().done) await new Promise((resolve) => setImmediate(resolve));
    }
    // V8 compiles a regular expression to bytecode on first use and to machine code on its second
    // use, or at once on a subject of 1000 characters or more: each detector is run alone on short
    // texts first, then on each line (the first uses, spread over steps: the first run of the names
    // or the phone detector on the whole warm-up text held the loop 50-60 ms), then twice on a long
    // text, so that each compile is a short block here rather than one long block on the first
    // message.
    const long = (WARM_UP + '\n').repeat(4);
    const one = (type: EntityType): DetectOptions => ({
      ...this.detectOptions,
      types: new Set([type]),
      custom: [],
    });
    for (const type of this.detectOptions.types) {
      for (const text of [...WARM_UP_FIRST, ...WARM_UP.split('\n'), long, long]) {
        detect(text, one(type));
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    for (const keyHint of [undefined, 'name']) {
      detect(long, keyHint === undefined ? this.detectOptions : { ...this.detectOptions, keyHint });
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Entities in one string, without replacing anything. */
  detect(text: string, keyHint?: string): Finding[] {
    return detect(text, keyHint === undefined ? this.detectOptions : { ...this.detectOptions, keyHint });
  }

  /**
   * Returns a protected copy of `value` and the entity counts. Throws BlockedError for what cannot
   * be made safe (binary data, unsupported objects, limits exceeded). Runs to the end in one go:
   * for large input on the event loop, use protectAsync.
   */
  protect<T>(value: T, pseudonyms: Pseudonymizer = new Pseudonymizer()): ProtectResult<T> {
    return runSteps(this.protectSteps(value, pseudonyms));
  }

  /** protect(), giving the event loop back whenever it has worked for `sliceMs`. */
  protectAsync<T>(
    value: T,
    pseudonyms: Pseudonymizer = new Pseudonymizer(),
    sliceMs = DEFAULT_SLICE_MS,
  ): Promise<ProtectResult<T>> {
    return runStepsAsync(this.protectSteps(value, pseudonyms), sliceMs);
  }

  private *protectSteps<T>(value: T, pseudonyms: Pseudonymizer): Generator<void, ProtectResult<T>, void> {
    const slots: Slot[] = [];
    const box = { value: value as unknown };
    this.collect(value, 0, undefined, slots, new Map(), { nodes: 0, chars: 0 }, (v) => (box.value = v));
    for (const s of slots) pseudonyms.reserveFrom(s.text);
    yield;
    const ctx: OperatorContext = {
      operators: this.operators,
      fallback: this.customOperator,
      key: this.key,
      pseudonyms,
    };
    const counts: Record<string, number> = {};
    let total = 0;
    for (const slot of slots) {
      let findings: Finding[];
      try {
        const steps = detectSteps(
          slot.text,
          slot.keyHint === undefined ? this.detectOptions : { ...this.detectOptions, keyHint: slot.keyHint },
        );
        for (;;) {
          const r = steps.next();
          if (r.done) {
            findings = r.value;
            break;
          }
          yield;
        }
      } catch (err) {
        // A detector failing on some input must not let that input through unscanned.
        throw new BlockedError(`detector failed: ${(err as Error).message}`);
      }
      yield;
      if (findings.length === 0) continue;
      for (const f of findings) {
        counts[f.type] = (counts[f.type] ?? 0) + 1;
        total++;
      }
      const applying = applyOperatorsSteps(slot.text, findings, ctx);
      for (;;) {
        const r = applying.next();
        if (r.done) {
          slot.assign(r.value);
          break;
        }
        yield;
      }
    }
    return { value: box.value as T, counts, total };
  }

  /** Returns a copy of `value` with the pseudonyms of `map` replaced by their originals. */
  restore<T>(value: T, map: PseudonymMap, only?: ReadonlySet<string>): { value: T; restored: number } {
    return runSteps(this.restoreSteps(value, map, only));
  }

  /** restore(), giving the event loop back whenever it has worked for `sliceMs`. */
  restoreAsync<T>(
    value: T,
    map: PseudonymMap,
    only?: ReadonlySet<string>,
    sliceMs = DEFAULT_SLICE_MS,
  ): Promise<{ value: T; restored: number }> {
    return runStepsAsync(this.restoreSteps(value, map, only), sliceMs);
  }

  private *restoreSteps<T>(
    value: T,
    map: PseudonymMap,
    only?: ReadonlySet<string>,
  ): Generator<void, { value: T; restored: number }, void> {
    const slots: Slot[] = [];
    const box = { value: value as unknown };
    this.collect(value, 0, undefined, slots, new Map(), { nodes: 0, chars: 0 }, (v) => (box.value = v));
    yield;
    let restored = 0;
    for (const slot of slots) {
      let text = '';
      // Piece by piece, cut where no token can straddle (a token has no line break).
      for (let at = 0; at < slot.text.length;) {
        let end = Math.min(slot.text.length, at + RESTORE_PIECE);
        if (end < slot.text.length) {
          const nl = slot.text.indexOf('\n', end);
          const gt = slot.text.indexOf('>', end);
          end = Math.min(nl < 0 ? slot.text.length : nl + 1, gt < 0 ? slot.text.length : gt + 1);
        }
        const r = restoreText(slot.text.slice(at, end), map, only);
        restored += r.restored;
        text += r.text;
        at = end;
        yield;
      }
      if (text !== slot.text) slot.assign(text);
    }
    return { value: box.value as T, restored };
  }

  /** Copies containers (keeping shared references and cycles) and lists every text leaf as a slot. */
  private collect(
    v: unknown,
    depth: number,
    keyHint: string | undefined,
    slots: Slot[],
    seen: Map<object, unknown>,
    budget: { nodes: number; chars: number },
    set: (v: unknown) => void,
  ): void {
    if (++budget.nodes > this.limits.maxNodes)
      throw new BlockedError(`more than ${this.limits.maxNodes} values`);
    set(v); // containers replace this with their copy below
    const text = (s: string, assign: (t: string) => void): void => {
      budget.chars += s.length;
      if (budget.chars > this.limits.maxChars)
        throw new BlockedError(`more than ${this.limits.maxChars} characters`);
      slots.push({ text: s, keyHint, assign });
    };
    switch (typeof v) {
      case 'string':
        text(v, (t) => set(t));
        return;
      case 'number':
      case 'bigint':
        // Phone and card numbers arrive as numbers too; a replaced number becomes a string.
        if (typeof v === 'number' && !Number.isFinite(v)) return;
        text(String(v), (t) => set(t));
        return;
      case 'boolean':
      case 'undefined':
        return;
      case 'function':
      case 'symbol':
        throw new BlockedError(`cannot scan a ${typeof v}`);
    }
    if (v === null) return;
    const obj = v as object;
    if (seen.has(obj)) {
      set(seen.get(obj));
      return;
    }
    if (depth >= this.limits.maxDepth) throw new BlockedError(`nested deeper than ${this.limits.maxDepth}`);
    if (obj instanceof Date) return;
    if (Buffer.isBuffer(obj) || obj instanceof Uint8Array) {
      let decoded: string;
      try {
        decoded = strictUtf8.decode(obj);
      } catch {
        throw new BlockedError('binary data (not UTF-8 text)');
      }
      if (hasControlBytes(decoded)) throw new BlockedError('binary data (control bytes)');
      seen.set(obj, obj);
      text(decoded, (t) => set(Buffer.from(t, 'utf8')));
      return;
    }
    if (Array.isArray(obj)) {
      const copy: unknown[] = new Array(obj.length);
      seen.set(obj, copy);
      set(copy);
      for (let i = 0; i < obj.length; i++) {
        this.collect(obj[i], depth + 1, keyHint, slots, seen, budget, (x) => (copy[i] = x));
      }
      return;
    }
    if (!isPlainObject(obj)) {
      throw new BlockedError(`cannot scan a ${obj.constructor?.name ?? 'non-plain object'}`);
    }
    const copy: Record<string, unknown> = Object.create(Object.getPrototypeOf(obj));
    seen.set(obj, copy);
    set(copy);
    const source = obj as Record<string, unknown>;
    for (const k of Object.keys(source)) {
      let key = k;
      this.collect(source[k], depth + 1, k, slots, seen, budget, (x) => (copy[key] = x));
      if (this.scanKeys && k.length > 3) {
        // Renaming happens after the values' slots, so their setters follow the new key.
        budget.chars += k.length;
        slots.push({
          text: k,
          assign: (t) => {
            if (t === key) return;
            if (Object.prototype.hasOwnProperty.call(copy, t))
              throw new BlockedError('two keys collide once protected');
            copy[t] = copy[key];
            delete copy[key];
            key = t;
          },
        });
      }
    }
  }
}
