import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
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
  checkKey(opts.key);
  const shapeError = checkActionShape(action);
  if (shapeError) throw new TypeError(`signAction: ${shapeError}`);
  if (typeof opts.policyHash !== 'string' || opts.policyHash.length === 0) {
    throw new TypeError('signAction: policyHash must be a non-empty string');
  }
  if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) throw new TypeError('signAction: ttlMs must be > 0');
  const copy = JSON.parse(canonicalJson(action)) as Action;
  const now = opts.now ?? Date.now();
  const expires = Math.floor(now + opts.ttlMs);
  const nonce = randomBytes(16).toString('hex');
  return {
    action: copy,
    signature: {
      alg: 'HMAC-SHA256',
      policyHash: opts.policyHash,
      expires,
      nonce,
      mac: computeMac(opts.key, copy, opts.policyHash, expires, nonce),
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
