import { createHmac } from 'node:crypto';
import type { EntityType, Finding, Operator } from './types';

/**
 * The pseudonyms issued for one message or session: `<EMAIL_1>` ↔ original. It is the only place
 * the originals are kept, so it must stay on the gateway (msg._privacy or the session store).
 */
export interface PseudonymMap {
  version: 1;
  /** token → original text */
  tokens: Record<string, string>;
}

const TOKEN_IN_TEXT = /<\s*([A-Z][A-Z0-9_]*_\d+)\s*>/g;
const TOKEN_AT = new RegExp(TOKEN_IN_TEXT.source, 'y');

export class Pseudonymizer {
  /** type → original → token (a map per type: no key string built per finding). */
  private readonly byValue = new Map<string, Map<string, string>>();
  private readonly next = new Map<string, number>();
  private readonly reserved = new Set<string>();
  readonly map: PseudonymMap;
  /** The tokens this Pseudonymizer wrote into text: what the request gave the model. */
  readonly used = new Set<string>();

  constructor(existing?: unknown) {
    this.map = { version: 1, tokens: {} };
    if (isPseudonymMap(existing)) {
      for (const [token, value] of Object.entries(existing.tokens)) this.remember(token, value);
    }
  }

  private remember(token: string, value: string): void {
    const m = /^<([A-Z][A-Z0-9_]*)_(\d+)>$/.exec(token);
    if (!m || typeof value !== 'string') return;
    this.store(token, m[1], Number(m[2]), value);
  }

  private store(token: string, type: string, n: number, value: string): void {
    this.map.tokens[token] = value;
    let byValue = this.byValue.get(type);
    if (!byValue) this.byValue.set(type, (byValue = new Map()));
    byValue.set(value, token);
    this.next.set(type, Math.max(this.next.get(type) ?? 1, n + 1));
  }

  /** Tokens that already occur in the input must not be issued, or restore would replace them too. */
  reserveFrom(text: string): void {
    // Tried at each '<' only (TOKEN_IN_TEXT looked at every character of the text).
    for (let at = text.indexOf('<'); at >= 0; at = text.indexOf('<', at + 1)) {
      TOKEN_AT.lastIndex = at;
      const m = TOKEN_AT.exec(text);
      if (!m) continue;
      this.reserved.add(`<${m[1]}>`);
      at = TOKEN_AT.lastIndex - 1;
    }
  }

  /** Same (type, original) → same token, for as long as this map lives. */
  tokenFor(type: EntityType, value: string): string {
    const known = this.byValue.get(type)?.get(value);
    if (known) {
      this.used.add(known);
      return known;
    }
    // Every token in the map has a number below `next` of its type (store keeps it so): only the
    // tokens reserved from the input can stand in the way.
    let n = this.next.get(type) ?? 1;
    let token = `<${type}_${n}>`;
    while (this.reserved.has(token)) token = `<${type}_${++n}>`;
    // The type and number are known here: no need to read them back out of the token.
    this.store(token, type, n, value);
    this.used.add(token);
    return token;
  }

  get size(): number {
    return Object.keys(this.map.tokens).length;
  }
}

export function isPseudonymMap(v: unknown): v is PseudonymMap {
  return (
    typeof v === 'object' &&
    v !== null &&
    (v as PseudonymMap).version === 1 &&
    typeof (v as PseudonymMap).tokens === 'object' &&
    (v as PseudonymMap).tokens !== null
  );
}

/**
 * Puts the originals back. Models sometimes add spaces inside the brackets (`< EMAIL_1 >`); those
 * are accepted. Tokens the map does not know, or that are not in `only` when it is given, are left
 * as they are.
 */
export function restoreText(
  text: string,
  map: PseudonymMap,
  only?: ReadonlySet<string>,
): { text: string; restored: number } {
  let restored = 0;
  const out = text.replace(TOKEN_IN_TEXT, (whole, name: string) => {
    const token = `<${name}>`;
    if (only && !only.has(token)) return whole;
    const original = Object.prototype.hasOwnProperty.call(map.tokens, token) ? map.tokens[token] : undefined;
    if (typeof original !== 'string') return whole;
    restored++;
    return original;
  });
  return { text: out, restored };
}

/** Canonical form for keyed hashes, so `+44 20 7946 0958` and `+442079460958` hash alike. */
export function normalizeForHash(type: EntityType, value: string): string {
  switch (type) {
    case 'EMAIL':
      return value.toLowerCase();
    case 'PHONE':
      return value.replace(/^00/, '+').replace(/[^\d+]/g, '');
    case 'CARD':
    case 'NATIONAL_ID':
      return value.replace(/\D/g, '');
    case 'IBAN':
      return value.replace(/\s/g, '').toUpperCase();
    case 'MAC':
    case 'IPV6':
      return value.toLowerCase().replace(/[-.]/g, ':');
    default:
      return value;
  }
}

export function keyedHash(key: Buffer | string, data: string): string {
  return createHmac('sha256', key).update(data, 'utf8').digest('hex');
}

/** Last characters left visible by `mask`, per type; the rest become `*`, separators stay. */
const MASK_KEEP: Record<string, number> = { CARD: 4, IBAN: 4, PHONE: 2, NATIONAL_ID: 4 };

export function maskValue(type: EntityType, value: string): string {
  if (type === 'EMAIL') {
    const at = value.lastIndexOf('@');
    return value[0] + '***' + value.slice(at);
  }
  if (type === 'PERSON')
    return value.replace(
      /(\p{L})([\p{L}'’]*)/gu,
      (_w, first: string, rest: string) => first + '*'.repeat(rest.length),
    );
  const keep = MASK_KEEP[type] ?? 0;
  let seen = 0;
  const total = (value.match(/[\p{L}\p{N}]/gu) ?? []).length;
  return value.replace(/[\p{L}\p{N}]/gu, (ch) => (++seen > total - keep ? ch : '*'));
}

export interface OperatorContext {
  operators: Readonly<Record<string, Operator>>;
  /** Operator for types missing from `operators` (custom patterns). */
  fallback: Operator;
  key?: Buffer;
  pseudonyms: Pseudonymizer;
}

export function operatorFor(type: EntityType, ctx: OperatorContext): Operator {
  return ctx.operators[type] ?? ctx.fallback;
}

/** Applies each finding's operator; findings must be non-overlapping and sorted (as `detect` returns them). */
export function applyOperators(text: string, findings: readonly Finding[], ctx: OperatorContext): string {
  const steps = applyOperatorsSteps(text, findings, ctx);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** applyOperators in steps of 1,000 findings, for callers that let the event loop run between. */
export function* applyOperatorsSteps(
  text: string,
  findings: readonly Finding[],
  ctx: OperatorContext,
): Generator<void, string, void> {
  if (findings.length === 0) return text;
  const parts: string[] = [];
  let at = 0;
  for (let i = 0; i < findings.length; i++) {
    const f = findings[i];
    parts.push(text.slice(at, f.start), replacement(f, ctx));
    at = f.end;
    if (i % 1000 === 999) yield;
  }
  parts.push(text.slice(at));
  return parts.join('');
}

function replacement(f: Finding, ctx: OperatorContext): string {
  switch (operatorFor(f.type, ctx)) {
    case 'off':
      return f.value;
    case 'redact':
      return `[${f.type}]`;
    case 'mask':
      return maskValue(f.type, f.value);
    case 'hash':
      if (!ctx.key) throw new Error('hash operator needs a key');
      return `[${f.type}:${keyedHash(ctx.key, normalizeForHash(f.type, f.value)).slice(0, 16)}]`;
    case 'pseudonym':
      return ctx.pseudonyms.tokenFor(f.type, f.value);
  }
}
