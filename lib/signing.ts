import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { types } from 'node:util';
import { isPlainObject } from './plain';

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

const NONCE_RE = /^[0-9a-f]{32}$/;
const MAC_RE = /^[0-9a-f]{64}$/;

/**
 * JSON with object keys sorted by UTF-16 code units and no whitespace: the same bytes as RFC 8785
 * (JCS) for the values JSON can hold. Anything JSON cannot represent exactly (non-finite numbers,
 * undefined, functions, symbols, bigints, class instances, cycles) throws instead of being dropped or
 * turned into null, because a signature over silently altered data would approve something else.
 */
export function canonicalJson(value: unknown): string {
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
  const maxDepth = opts.maxDepth ?? 64;
  const maxNodes = opts.maxNodes ?? 1_000_000;
  const maxString = opts.maxStringLength ?? Number.MAX_SAFE_INTEGER;
  const forbidden = opts.forbiddenKeys ?? [];
  let nodes = 0;
  let problem: SnapshotProblem | undefined;
  const fail = (code: SnapshotProblemCode, at: string, message: string): undefined => {
    problem = { code, at, message };
    return undefined;
  };
  const copy = (v: unknown, at: string, depth: number): unknown => {
    if (++nodes > maxNodes) return fail('too_large', at, `the request has more than ${maxNodes} values`);
    switch (typeof v) {
      case 'string':
        return v.length > maxString
          ? fail(
              'too_long',
              at,
              `${at} is a text of ${v.length} characters; at most ${maxString} are accepted`,
            )
          : v;
      case 'number':
        return Number.isFinite(v)
          ? v
          : fail('non_finite', at, `${at} is ${v}; only finite numbers are accepted`);
      case 'boolean':
        return v;
      case 'object':
        break;
      default:
        return fail('not_data', at, `${at} is ${describeValue(v)}; only JSON data is accepted`);
    }
    if (v === null) return null;
    if (types.isProxy(v)) return fail('proxy', at, `${at} is a Proxy; only plain JSON data is accepted`);
    if (depth >= maxDepth) return fail('too_deep', at, `the request is nested too deeply at ${at}`);
    if (Array.isArray(v)) {
      const n = v.length;
      const out = new Array<unknown>(n);
      for (let i = 0; i < n; i++) {
        const where = `${at}[${i}]`;
        const d = Object.getOwnPropertyDescriptor(v, i);
        if (!d) return fail('not_data', where, `${where} is a hole; only JSON data is accepted`);
        if (!('value' in d))
          return fail('accessor', where, `${where} is a getter or setter; only plain data is accepted`);
        const c = copy(d.value, where, depth + 1);
        if (problem) return undefined;
        out[i] = c;
      }
      return out;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== null && !isObjectPrototype(proto)) {
      return fail('not_data', at, `${at} is not plain data; only JSON data is accepted`);
    }
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) {
      const where = `${at}.${k}`;
      if (forbidden.includes(k))
        return fail('forbidden_key', where, `${at} has the key "${k}", which is never accepted`);
      const d = Object.getOwnPropertyDescriptor(v, k)!;
      if (!('value' in d))
        return fail('accessor', where, `${where} is a getter or setter; only plain data is accepted`);
      const c = copy(d.value, where, depth + 1);
      if (problem) return undefined;
      if (k === '__proto__')
        Object.defineProperty(out, k, { value: c, enumerable: true, writable: true, configurable: true });
      else out[k] = c;
    }
    return out;
  };
  const value2 = copy(value, opts.root ?? 'payload', 0);
  return problem ? { ok: false, problem } : { ok: true, value: value2 };
}

function checkKey(key: string | Buffer): void {
  if (!(typeof key === 'string' || Buffer.isBuffer(key)) || key.length === 0) {
    throw new TypeError('signing key must be a non-empty string or Buffer');
  }
}

function computeMac(
  key: string | Buffer,
  action: unknown,
  policyHash: string,
  expires: number,
  nonce: string,
) {
  return createHmac('sha256', key)
    .update(canonicalJson({ action, policyHash, expires, nonce }))
    .digest('hex');
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
  const nonce = randomBytes(16).toString('hex');
  return {
    action,
    signature: {
      alg: 'HMAC-SHA256',
      policyHash: opts.policyHash,
      expires,
      nonce,
      mac: computeMac(opts.key, action, opts.policyHash, expires, nonce),
    },
  };
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
    expected = computeMac(opts.key, signed.action, sig.policyHash, sig.expires, sig.nonce);
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
