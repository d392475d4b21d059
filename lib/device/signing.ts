import * as crypto from 'node:crypto';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { types } from 'node:util';
import { isPlainObject } from '../util/plain';

/** One action for an actuator, as a plan step or a single request carries it. */
export interface Action {
  action: string;
  params: Record<string, unknown>;
  device?: string;
  id?: string;
  [k: string]: unknown;
}

export interface ActionSignature {
  alg: 'HMAC-SHA256';
  /** Hash of the guardrail policy that approved the action. */
  policyHash: string;
  /** Epoch milliseconds after which the signature is no longer valid. */
  expires: number;
  /** Random 128-bit value, hex, so that each approval can be executed once. */
  nonce: string;
  /** HMAC-SHA256 over canonicalJson({action, policyHash, expires, nonce}), hex. */
  mac: string;
}

export interface SignedAction {
  action: Action;
  signature: ActionSignature;
}

export type VerifyErrorCode = 'missing_signature' | 'bad_signature' | 'expired' | 'replayed' | 'malformed';

export type VerifyResult = { ok: true } | { ok: false; code: VerifyErrorCode; message: string };

export interface SignOptions {
  key: string | Buffer;
  policyHash: string;
  ttlMs: number;
  now?: number;
}

export interface VerifyOptions {
  key: string | Buffer;
  now?: number;
  /** Returns true if the nonce was already used; records it otherwise. */
  seen?: (nonce: string, expires: number) => boolean;
}

/**
 * The shortest signing key the guardrail and actuator-out nodes accept, in characters: 32 hex
 * digits are 128 bits (`openssl rand -hex 16`). Anyone who can guess the key and reach the broker
 * can sign commands that the devices will run. Their edit dialogs check the same length.
 */
export const MIN_SIGNING_KEY_LENGTH = 32;

const NONCE_RE = /^[0-9a-f]{32}$/;
const MAC_RE = /^[0-9a-f]{64}$/;

/**
 * JSON with object keys sorted by UTF-16 code units and no whitespace: the same bytes as RFC 8785
 * (JCS) for the values JSON can hold. Anything JSON cannot represent exactly (non-finite numbers,
 * undefined, functions, symbols, bigints, class instances, cycles) throws instead of being dropped or
 * turned into null, because a signature over silently altered data would approve something else.
 */
export function canonicalJson(value: unknown): string {
  // The fast writer gives up on the first problem; the careful one below then says where it is.
  try {
    return fastCanonical(value, 0);
  } catch (err) {
    if (err !== NOT_JSON) throw err;
  }
  return describedCanonicalJson(value);
}

const NOT_JSON = Symbol('not JSON');
/** Deeper than any request the guardrail reads (64): a cycle ends here too. */
const MAX_CANONICAL_DEPTH = 256;

/** Printable ASCII without `"` and `\\`: JSON.stringify would return it quoted and unchanged. */
function plainText(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}
const quote = (s: string): string => (s.length < 256 && plainText(s) ? `"${s}"` : JSON.stringify(s));

/**
 * Object keys in the order Array.prototype.sort gives them (UTF-16 code units; keys are distinct):
 * a few keys are put in order in place, more go to sort, which copies them first.
 */
function sortKeys(keys: string[]): string[] {
  const n = keys.length;
  if (n > 12) return keys.sort();
  for (let i = 1; i < n; i++) {
    const k = keys[i];
    let j = i - 1;
    while (j >= 0 && keys[j] > k) {
      keys[j + 1] = keys[j];
      j--;
    }
    keys[j + 1] = k;
  }
  return keys;
}

function fastCanonical(v: unknown, depth: number): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return quote(v);
    case 'number':
      if (!Number.isFinite(v)) throw NOT_JSON;
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      break;
    default:
      throw NOT_JSON;
  }
  if (depth > MAX_CANONICAL_DEPTH) throw NOT_JSON;
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      if (!(i in v)) throw NOT_JSON;
      out += (i > 0 ? ',' : '') + fastCanonical(v[i], depth + 1);
    }
    return out + ']';
  }
  // This realm's plain objects (every snapshot is made of them) pass without the longer test.
  if (
    (Object.getPrototypeOf(v) !== Object.prototype ||
      (v as Record<symbol, unknown>)[Symbol.toStringTag] !== undefined) &&
    !isPlainObject(v)
  )
    throw NOT_JSON;
  const obj = v as Record<string, unknown>;
  const keys = sortKeys(Object.keys(obj));
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    out += (i > 0 ? ',' : '') + keyText(k) + fastCanonical(obj[k], depth + 1);
  }
  return out + '}';
}

/** `"key":` for the keys met lately (the same few field names, request after request). */
const keyTexts = new Map<string, string>();
function keyText(k: string): string {
  let text = keyTexts.get(k);
  if (text === undefined) {
    text = quote(k) + ':';
    if (k.length <= 64) {
      if (keyTexts.size >= 512) keyTexts.clear();
      keyTexts.set(k, text);
    }
  }
  return text;
}

function describedCanonicalJson(value: unknown): string {
  const parts: string[] = [];
  const stack = new Set<object>();
  const write = (v: unknown, where: string): void => {
    if (v === null) {
      parts.push('null');
      return;
    }
    switch (typeof v) {
      case 'boolean':
        parts.push(v ? 'true' : 'false');
        return;
      case 'string':
        parts.push(JSON.stringify(v));
        return;
      case 'number':
        if (!Number.isFinite(v)) throw new TypeError(`canonicalJson: non-finite number at ${where}`);
        parts.push(JSON.stringify(v));
        return;
      case 'object':
        break;
      default:
        throw new TypeError(`canonicalJson: ${typeof v} at ${where} has no JSON form`);
    }
    const obj = v as object;
    if (stack.has(obj)) throw new TypeError(`canonicalJson: circular reference at ${where}`);
    if (Array.isArray(obj)) {
      stack.add(obj);
      parts.push('[');
      for (let i = 0; i < obj.length; i++) {
        if (i > 0) parts.push(',');
        if (!(i in obj)) throw new TypeError(`canonicalJson: hole at ${where}[${i}]`);
        write(obj[i], `${where}[${i}]`);
      }
      parts.push(']');
      stack.delete(obj);
      return;
    }
    if (!isPlainObject(obj)) {
      throw new TypeError(
        `canonicalJson: ${obj.constructor?.name ?? 'object'} at ${where} is not plain data`,
      );
    }
    stack.add(obj);
    parts.push('{');
    const keys = Object.keys(obj).sort();
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (i > 0) parts.push(',');
      parts.push(JSON.stringify(k), ':');
      write(obj[k], `${where}.${k}`);
    }
    parts.push('}');
    stack.delete(obj);
  };
  write(value, '$');
  return parts.join('');
}

export type SnapshotProblemCode =
  'not_data' | 'accessor' | 'proxy' | 'non_finite' | 'forbidden_key' | 'too_deep' | 'too_large' | 'too_long';

export interface SnapshotProblem {
  code: SnapshotProblemCode;
  /** Where, as `root.a.b[2]`. */
  at: string;
  message: string;
}

export interface SnapshotOptions {
  /** The name of the root in messages (default `payload`). */
  root?: string;
  maxDepth?: number;
  /** Most values (objects, arrays and scalars together). */
  maxNodes?: number;
  /** Longest string, in UTF-16 code units. */
  maxStringLength?: number;
  /** Keys refused anywhere (e.g. `__proto__`). */
  forbiddenKeys?: readonly string[];
}

export type SnapshotResult = { ok: true; value: unknown } | { ok: false; problem: SnapshotProblem };

/**
 * Whether `proto`, an object's prototype, is some realm's Object.prototype. Reads only own data
 * properties through descriptors, so no getter and no Proxy trap runs.
 */
function isObjectPrototype(proto: object): boolean {
  if (types.isProxy(proto) || Object.getPrototypeOf(proto) !== null) return false;
  const ctor = Object.getOwnPropertyDescriptor(proto, 'constructor');
  if (!ctor || !('value' in ctor) || typeof ctor.value !== 'function' || types.isProxy(ctor.value))
    return false;
  const name = Object.getOwnPropertyDescriptor(ctor.value, 'name');
  const protoOf = Object.getOwnPropertyDescriptor(ctor.value, 'prototype');
  return name?.value === 'Object' && protoOf?.value === proto;
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'object') return 'not plain data';
  return `a ${typeof v}`;
}

/**
 * One deep copy of plain JSON data, taken without running any code of the value's own: a Proxy
 * (anywhere) and an accessor property (a getter or setter) are refused without being called, as are
 * class instances, functions, undefined, symbols, bigints, non-finite numbers and array holes. What
 * comes back is made of fresh objects and arrays that nothing else holds, so whatever is checked,
 * signed, recorded and sent is the same data: a value read twice cannot change in between.
 */
export function snapshotJson(value: unknown, opts: SnapshotOptions = {}): SnapshotResult {
  // No code of the value's own runs during a walk, so no other walk can start meanwhile; `busy` is
  // there in case one ever did.
  const s = walker.busy ? new SnapshotWalk() : walker;
  s.start(opts);
  try {
    const result = s.copy(value, 0);
    return s.problem ? { ok: false, problem: s.problem } : { ok: true, value: result };
  } finally {
    s.end();
  }
}

/**
 * The state of one snapshot walk. One is kept and reused (a walk allocates only what it returns):
 * the guardrail snapshots every request.
 */
class SnapshotWalk {
  busy = false;
  maxDepth = 64;
  maxNodes = 1_000_000;
  maxString = Number.MAX_SAFE_INTEGER;
  forbidden: readonly string[] = [];
  root = 'payload';
  /** Where the walk is, as keys; turned into text only when something is refused. */
  readonly trail: Array<string | number> = [];
  nodes = 0;
  problem: SnapshotProblem | undefined = undefined;

  start(opts: SnapshotOptions): void {
    this.busy = true;
    this.maxDepth = opts.maxDepth ?? 64;
    this.maxNodes = opts.maxNodes ?? 1_000_000;
    this.maxString = opts.maxStringLength ?? Number.MAX_SAFE_INTEGER;
    this.forbidden = opts.forbiddenKeys ?? [];
    this.root = opts.root ?? 'payload';
    if (this.trail.length > 0) this.trail.length = 0;
    this.nodes = 0;
    this.problem = undefined;
  }

  end(): void {
    if (this.trail.length > 0) this.trail.length = 0;
    this.problem = undefined;
    this.forbidden = [];
    this.busy = false;
  }

  private here(): string {
    return this.root + this.trail.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('');
  }

  private fail(code: SnapshotProblemCode, message: (at: string) => string): undefined {
    const at = this.here();
    this.problem = { code, at, message: message(at) };
    return undefined;
  }

  copy(v: unknown, depth: number): unknown {
    if (++this.nodes > this.maxNodes) {
      const max = this.maxNodes;
      return this.fail('too_large', () => `the request has more than ${max} values`);
    }
    switch (typeof v) {
      case 'string': {
        if (v.length <= this.maxString) return v;
        const max = this.maxString;
        return this.fail(
          'too_long',
          (at) => `${at} is a text of ${v.length} characters; at most ${max} are accepted`,
        );
      }
      case 'number':
        return Number.isFinite(v)
          ? v
          : this.fail('non_finite', (at) => `${at} is ${v}; only finite numbers are accepted`);
      case 'boolean':
        return v;
      case 'object':
        break;
      default:
        return this.fail('not_data', (at) => `${at} is ${describeValue(v)}; only JSON data is accepted`);
    }
    if (v === null) return null;
    if (types.isProxy(v))
      return this.fail('proxy', (at) => `${at} is a Proxy; only plain JSON data is accepted`);
    if (depth >= this.maxDepth)
      return this.fail('too_deep', (at) => `the request is nested too deeply at ${at}`);
    const trail = this.trail;
    if (Array.isArray(v)) {
      const n = v.length;
      const out = new Array<unknown>(n);
      for (let i = 0; i < n; i++) {
        trail.push(i);
        const d = Object.getOwnPropertyDescriptor(v, i);
        if (!d) return this.fail('not_data', (at) => `${at} is a hole; only JSON data is accepted`);
        if (!('value' in d))
          return this.fail('accessor', (at) => `${at} is a getter or setter; only plain data is accepted`);
        const c = this.copy(d.value, depth + 1);
        if (this.problem) return undefined;
        out[i] = c;
        trail.pop();
      }
      return out;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== null && proto !== Object.prototype && !isObjectPrototype(proto)) {
      return this.fail('not_data', (at) => `${at} is not plain data; only JSON data is accepted`);
    }
    const out: Record<string, unknown> = {};
    const keys = Object.keys(v);
    const forbidden = this.forbidden;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (forbidden.includes(k))
        return this.fail('forbidden_key', (at) => `${at} has the key "${k}", which is never accepted`);
      trail.push(k);
      const d = Object.getOwnPropertyDescriptor(v, k)!;
      if (!('value' in d))
        return this.fail('accessor', (at) => `${at} is a getter or setter; only plain data is accepted`);
      const c = this.copy(d.value, depth + 1);
      if (this.problem) return undefined;
      if (k === '__proto__')
        Object.defineProperty(out, k, { value: c, enumerable: true, writable: true, configurable: true });
      else out[k] = c;
      trail.pop();
    }
    return out;
  }
}
const walker = new SnapshotWalk();

function checkKey(key: string | Buffer): void {
  if (!(typeof key === 'string' || Buffer.isBuffer(key)) || key.length === 0) {
    throw new TypeError('signing key must be a non-empty string or Buffer');
  }
}

/**
 * HMAC-SHA256 (RFC 2104) from the key's inner and outer pads, prepared once per key, and two
 * one-shot hashes (crypto.hash) into buffers kept for the purpose: the same bytes as createHmac,
 * without building a Hash or Hmac object for every MAC.
 */
interface Pads {
  /** The inner pad, then room for the message. */
  inner: Buffer;
  /** The outer pad, then the inner digest. */
  outer: Buffer;
}
const padCache = new Map<string | Buffer, Pads>();
type OneShot = (algorithm: string, data: Buffer, encoding: 'hex' | 'latin1') => string;
/** crypto.hash (Node 20.12 and later); createHash where it is missing. */
const oneShot = (crypto as unknown as { hash?: OneShot }).hash;

function padsFor(key: string | Buffer): Pads {
  let pads = padCache.get(key);
  if (pads) return pads;
  let k = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  if (k.length > 64) k = createHash('sha256').update(k).digest();
  pads = { inner: Buffer.alloc(64 + 1024, 0x36), outer: Buffer.alloc(64 + 32, 0x5c) };
  for (let i = 0; i < k.length; i++) {
    pads.inner[i] ^= k[i];
    pads.outer[i] ^= k[i];
  }
  // A handful of keys per process; a Buffer key is kept by identity, so bound the cache.
  if (padCache.size >= 32) padCache.clear();
  padCache.set(key, pads);
  return pads;
}

export function hmacSha256Hex(key: string | Buffer, text: string): string {
  const pads = padsFor(key);
  // Room for the text in UTF-8 (at most 3 bytes per UTF-16 code unit) after the pad.
  if (64 + text.length * 3 > pads.inner.length) {
    const inner = Buffer.alloc(64 + text.length * 3 + 1024);
    pads.inner.copy(inner, 0, 0, 64);
    pads.inner = inner;
  }
  const n = pads.inner.write(text, 64, 'utf8');
  if (!oneShot) {
    const inner = createHash('sha256')
      .update(pads.inner.subarray(0, 64 + n))
      .digest();
    inner.copy(pads.outer, 64);
    return createHash('sha256').update(pads.outer).digest('hex');
  }
  // The inner digest as latin1 text (one byte a character) goes straight into the outer buffer:
  // no Buffer is made for it.
  pads.outer.write(oneShot('sha256', pads.inner.subarray(0, 64 + n), 'latin1'), 64, 32, 'latin1');
  return oneShot('sha256', pads.outer, 'hex');
}

/** `actionText` is canonicalJson(action). */
function computeMac(
  key: string | Buffer,
  actionText: string,
  policyHash: string,
  expires: number,
  nonce: string,
) {
  // canonicalJson({ action, policyHash, expires, nonce }), written with its keys already in order.
  if (!Number.isFinite(expires)) throw new TypeError('canonicalJson: non-finite number at $.expires');
  const text = `{"action":${actionText},"expires":${JSON.stringify(expires)},"nonce":${quote(nonce)},"policyHash":${quote(policyHash)}}`;
  return hmacSha256Hex(key, text);
}

/**
 * The canonical JSON of the last actions signSnapshot signed, as they were signed: the audit log
 * records a decision's signed actions right after the decision, and takes their text from here
 * rather than writing it a second time. A ring of the latest ones, found by identity: a WeakMap
 * (or a hidden property on each signed action) costs the garbage collector more than the text
 * saves. An action no longer here is written again, to the same text.
 */
const RING = 256;
const ringActions: Array<object | undefined> = new Array<object | undefined>(RING).fill(undefined);
const ringTexts: string[] = new Array<string>(RING).fill('');
let ringAt = 0;

/**
 * canonicalJson(action), taken from the signing when `action` is one signSnapshot signed lately (a
 * snapshot is not changed after it is signed: the signature covers this text).
 */
export function canonicalSignedJson(action: unknown): string {
  if (typeof action === 'object' && action !== null) {
    // Newest first: the actions of the decision just made.
    for (let n = 0, i = ringAt; n < RING; n++) {
      i = i === 0 ? RING - 1 : i - 1;
      const a = ringActions[i];
      if (a === action) return ringTexts[i];
      if (a === undefined) break;
    }
  }
  return canonicalJson(action);
}

/** Nonces come from one CSPRNG read per 256 of them: the same randomness, fewer calls. */
let noncePool = Buffer.alloc(0);
let nonceAt = 0;
function newNonce(): string {
  if (nonceAt + 16 > noncePool.length) {
    noncePool = randomBytes(4096);
    nonceAt = 0;
  }
  const nonce = noncePool.toString('hex', nonceAt, nonceAt + 16);
  nonceAt += 16;
  return nonce;
}

function checkActionShape(action: unknown): string | undefined {
  if (!isPlainObject(action)) return 'action must be an object';
  if (typeof action.action !== 'string' || action.action.length === 0)
    return 'action.action must be a string';
  if (!isPlainObject(action.params)) return 'action.params must be an object';
  if (action.device !== undefined && typeof action.device !== 'string')
    return 'action.device must be a string';
  if (action.id !== undefined && typeof action.id !== 'string') return 'action.id must be a string';
  return undefined;
}

/**
 * Signs an approved action. The returned action is a deep copy, so that changing the caller's object
 * afterwards cannot change what was signed.
 */
export function signAction(action: Action, opts: SignOptions): SignedAction {
  const shapeError = checkActionShape(action);
  if (shapeError) throw new TypeError(`signAction: ${shapeError}`);
  return signSnapshot(JSON.parse(canonicalJson(action)) as Action, opts);
}

/**
 * Signs an action that is already a private copy (from `snapshotJson`, held by nobody else), without
 * copying it again: the signed action is that object.
 */
export function signSnapshot(action: Action, opts: SignOptions): SignedAction {
  checkKey(opts.key);
  const shapeError = checkActionShape(action);
  if (shapeError) throw new TypeError(`signAction: ${shapeError}`);
  if (typeof opts.policyHash !== 'string' || opts.policyHash.length === 0) {
    throw new TypeError('signAction: policyHash must be a non-empty string');
  }
  if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) throw new TypeError('signAction: ttlMs must be > 0');
  const now = opts.now ?? Date.now();
  const expires = Math.floor(now + opts.ttlMs);
  const nonce = newNonce();
  const actionText = canonicalJson(action);
  const signed: SignedAction = {
    action,
    signature: {
      alg: 'HMAC-SHA256',
      policyHash: opts.policyHash,
      expires,
      nonce,
      mac: computeMac(opts.key, actionText, opts.policyHash, expires, nonce),
    },
  };
  ringActions[ringAt] = action;
  ringTexts[ringAt] = actionText;
  ringAt = ringAt === RING - 1 ? 0 : ringAt + 1;
  return signed;
}

function fail(code: VerifyErrorCode, message: string): VerifyResult {
  return { ok: false, code, message };
}

/**
 * Checks a SignedAction before execution: shape, MAC (constant-time), expiry, then the replay check.
 * `seen` is consulted only for authentic, unexpired signatures, so forged messages cannot fill the
 * nonce store.
 */
export function verifySignedAction(signed: unknown, opts: VerifyOptions): VerifyResult {
  checkKey(opts.key);
  if (signed === undefined || signed === null) return fail('missing_signature', 'no signed action');
  if (!isPlainObject(signed)) return fail('malformed', 'signed action must be an object');
  if (signed.signature === undefined || signed.signature === null) {
    return fail('missing_signature', 'the action carries no signature');
  }
  const sig = signed.signature;
  if (!isPlainObject(sig)) return fail('malformed', 'signature must be an object');
  if (sig.alg !== 'HMAC-SHA256') return fail('malformed', 'signature.alg must be HMAC-SHA256');
  if (typeof sig.policyHash !== 'string' || sig.policyHash.length === 0) {
    return fail('malformed', 'signature.policyHash must be a string');
  }
  if (typeof sig.expires !== 'number' || !Number.isSafeInteger(sig.expires)) {
    return fail('malformed', 'signature.expires must be an integer (epoch ms)');
  }
  if (typeof sig.nonce !== 'string' || !NONCE_RE.test(sig.nonce)) {
    return fail('malformed', 'signature.nonce must be 32 lowercase hex digits');
  }
  if (typeof sig.mac !== 'string' || !MAC_RE.test(sig.mac)) {
    return fail('malformed', 'signature.mac must be 64 lowercase hex digits');
  }
  const shapeError = checkActionShape(signed.action);
  if (shapeError) return fail('malformed', shapeError);
  let expected: string;
  try {
    expected = computeMac(opts.key, canonicalJson(signed.action), sig.policyHash, sig.expires, sig.nonce);
  } catch (err) {
    return fail('malformed', `action is not plain JSON data: ${(err as Error).message}`);
  }
  if (!timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(sig.mac, 'hex'))) {
    return fail(
      'bad_signature',
      'the signature does not match the action (altered, or signed with another key)',
    );
  }
  const now = opts.now ?? Date.now();
  if (now >= sig.expires) {
    return fail('expired', `the signature expired ${now - sig.expires} ms ago`);
  }
  if (opts.seen && opts.seen(sig.nonce, sig.expires)) {
    return fail('replayed', 'this signed action was already used');
  }
  return { ok: true };
}

/**
 * A bounded in-memory nonce store for `verifySignedAction({seen})`. Nonces are forgotten once their
 * signature has expired (an expired signature is refused anyway). When full of unexpired nonces it
 * answers "seen", refusing rather than forgetting a nonce that could then be replayed.
 */
export function createNonceStore(opts: { maxEntries?: number; now?: () => number } = {}) {
  const maxEntries = opts.maxEntries ?? 10000;
  const clock = opts.now ?? Date.now;
  const nonces = new Map<string, number>();
  return (nonce: string, expires: number): boolean => {
    if (nonces.has(nonce)) return true;
    if (nonces.size >= maxEntries) {
      const now = clock();
      for (const [n, exp] of nonces) if (exp <= now) nonces.delete(n);
      if (nonces.size >= maxEntries) return true;
    }
    nonces.set(nonce, expires);
    return false;
  };
}
