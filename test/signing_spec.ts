import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import * as vm from 'node:vm';
import sinon from 'sinon';
import {
  type Action,
  type SignedAction,
  canonicalJson,
  createNonceStore,
  hmacSha256Hex,
  signAction,
  snapshotJson,
  verifySignedAction,
} from '../lib/device/signing';

const KEY = 'test-key-0123456789';
const ACTION: Action = {
  action: 'set_torque',
  params: { torque: 7.5, unit: 'Nm' },
  device: 'arm-1',
  id: 's1',
};

describe('canonicalJson', () => {
  it('sorts keys at every depth and leaves no whitespace', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } }),
      '{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });

  it('writes numbers and strings as JSON.stringify does (RFC 8785 for these values)', () => {
    assert.equal(
      canonicalJson([1e21, 0.1, -0, 'é\u2028"', true, null]),
      '[1e+21,0.1,0,"é\u2028\\"",true,null]',
    );
  });

  it('gives the same text for the same data whatever the key order', () => {
    assert.equal(canonicalJson({ x: 1, y: [1, 2] }), canonicalJson({ y: [1, 2], x: 1 }));
  });

  const refused: Array<[string, unknown]> = [
    ['NaN', { a: NaN }],
    ['Infinity', [Infinity]],
    ['-Infinity', -Infinity],
    ['undefined', { a: undefined }],
    ['a function', { f: () => 1 }],
    ['a symbol', [Symbol('s')]],
    ['a bigint', 1n],
    ['a Date', new Date(0)],
    ['a Buffer', Buffer.from('x')],
    ['a sparse array', [1, , 3]], // eslint-disable-line no-sparse-arrays
  ];
  for (const [name, value] of refused) {
    it(`throws on ${name}`, () => {
      assert.throws(() => canonicalJson(value), TypeError);
    });
  }

  it('throws on a cycle but accepts a shared (non-cyclic) object', () => {
    const shared = { v: 1 };
    assert.equal(canonicalJson({ a: shared, b: shared }), '{"a":{"v":1},"b":{"v":1}}');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => canonicalJson(cyclic), /circular/);
  });
});

describe('signAction / verifySignedAction', () => {
  const sandbox = sinon.createSandbox();
  afterEach(() => sandbox.restore());

  function sign(overrides: Partial<Parameters<typeof signAction>[1]> = {}): SignedAction {
    return signAction(ACTION, { key: KEY, policyHash: 'p1', ttlMs: 5000, now: 1_000_000, ...overrides });
  }

  it('computes the same HMAC-SHA256 bytes as createHmac, for any key length and text', () => {
    const keys: Array<string | Buffer> = [
      'k',
      KEY,
      'x'.repeat(64),
      'y'.repeat(65),
      'ключ-é',
      Buffer.from([0, 1, 2, 255]),
      Buffer.alloc(200, 7),
    ];
    const texts = ['', 'a', '{"action":"é😀"}', 'z'.repeat(1023), 'w'.repeat(5000), '€'.repeat(3000)];
    for (const key of keys) {
      // Twice in each order: the buffers kept per key must not carry one text into the next.
      for (const text of [...texts, ...texts.slice().reverse()]) {
        const expected = createHmac('sha256', key).update(text, 'utf8').digest('hex');
        assert.equal(
          hmacSha256Hex(key, text),
          expected,
          `key ${String(key).slice(0, 8)}, ${text.length} chars`,
        );
      }
    }
  });

  it('produces the documented MAC over {action, policyHash, expires, nonce}', () => {
    const signed = sign();
    const { signature } = signed;
    assert.equal(signature.alg, 'HMAC-SHA256');
    assert.equal(signature.expires, 1_005_000);
    assert.match(signature.nonce, /^[0-9a-f]{32}$/);
    const mac = createHmac('sha256', KEY)
      .update(
        canonicalJson({
          action: ACTION,
          policyHash: 'p1',
          expires: signature.expires,
          nonce: signature.nonce,
        }),
      )
      .digest('hex');
    assert.equal(signature.mac, mac);
    assert.deepEqual(verifySignedAction(signed, { key: KEY, now: 1_000_001 }), { ok: true });
  });

  it('signs a copy, so later changes to the input do not change what was signed', () => {
    const input: Action = { action: 'a', params: { x: 1 } };
    const signed = signAction(input, { key: KEY, policyHash: 'p', ttlMs: 1000 });
    input.params.x = 2;
    assert.equal(signed.action.params.x, 1);
  });

  it('uses a fresh nonce each time', () => {
    assert.notEqual(sign().signature.nonce, sign().signature.nonce);
  });

  it('accepts a Buffer key and rejects the same signature under another key', () => {
    const signed = signAction(ACTION, { key: Buffer.from(KEY), policyHash: 'p', ttlMs: 1000, now: 0 });
    assert.deepEqual(verifySignedAction(signed, { key: KEY, now: 1 }), { ok: true });
    const other = verifySignedAction(signed, { key: 'another-key', now: 1 });
    assert.equal(other.ok, false);
    assert.equal(!other.ok && other.code, 'bad_signature');
  });

  it('refuses to sign a malformed action or with a bad key / ttl', () => {
    assert.throws(() => signAction({ action: '', params: {} }, { key: KEY, policyHash: 'p', ttlMs: 1 }));
    assert.throws(() =>
      signAction({ action: 'a', params: { x: NaN } }, { key: KEY, policyHash: 'p', ttlMs: 1 }),
    );
    assert.throws(() => signAction(ACTION, { key: '', policyHash: 'p', ttlMs: 1 }));
    assert.throws(() => signAction(ACTION, { key: KEY, policyHash: 'p', ttlMs: 0 }));
    assert.throws(() => signAction(ACTION, { key: KEY, policyHash: '', ttlMs: 1 }));
  });

  type Tamper = [string, (s: SignedAction) => unknown, string];
  const tampered: Tamper[] = [
    [
      'a changed parameter',
      (s) => ({ ...s, action: { ...s.action, params: { torque: 70, unit: 'Nm' } } }),
      'bad_signature',
    ],
    ['a changed device', (s) => ({ ...s, action: { ...s.action, device: 'arm-2' } }), 'bad_signature'],
    ['an added field', (s) => ({ ...s, action: { ...s.action, extra: true } }), 'bad_signature'],
    [
      'a later expiry',
      (s) => ({ ...s, signature: { ...s.signature, expires: s.signature.expires + 1 } }),
      'bad_signature',
    ],
    [
      'another policy hash',
      (s) => ({ ...s, signature: { ...s.signature, policyHash: 'p2' } }),
      'bad_signature',
    ],
    [
      'another nonce',
      (s) => ({ ...s, signature: { ...s.signature, nonce: 'a'.repeat(32) } }),
      'bad_signature',
    ],
    [
      'a flipped MAC digit',
      (s) => ({ ...s, signature: { ...s.signature, mac: flip(s.signature.mac) } }),
      'bad_signature',
    ],
    ['no signature', (s) => ({ action: s.action }), 'missing_signature'],
    ['a null signature', (s) => ({ action: s.action, signature: null }), 'missing_signature'],
    ['nothing at all', () => undefined, 'missing_signature'],
    ['a string', () => 'signed', 'malformed'],
    [
      'an upper-case MAC',
      (s) => ({ ...s, signature: { ...s.signature, mac: s.signature.mac.toUpperCase() } }),
      'malformed',
    ],
    [
      'a short MAC',
      (s) => ({ ...s, signature: { ...s.signature, mac: s.signature.mac.slice(2) } }),
      'malformed',
    ],
    ['another algorithm', (s) => ({ ...s, signature: { ...s.signature, alg: 'none' } }), 'malformed'],
    [
      'expiry as a string',
      (s) => ({ ...s, signature: { ...s.signature, expires: String(s.signature.expires) } }),
      'malformed',
    ],
    ['a NaN parameter', (s) => ({ ...s, action: { ...s.action, params: { torque: NaN } } }), 'malformed'],
    ['params missing', (s) => ({ ...s, action: { action: 'set_torque' } }), 'malformed'],
  ];
  for (const [name, change, code] of tampered) {
    it(`rejects ${name} as ${code}`, () => {
      const result = verifySignedAction(change(sign()), { key: KEY, now: 1_000_001 });
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.code, code);
      assert.ok(!result.ok && result.message.length > 0);
    });
  }

  it('expires at the expiry instant, measured on the clock (fake timers)', () => {
    const clock = sandbox.useFakeTimers({ now: 50_000 });
    const signed = signAction(ACTION, { key: KEY, policyHash: 'p', ttlMs: 2000 });
    assert.deepEqual(verifySignedAction(signed, { key: KEY }), { ok: true });
    clock.tick(1999);
    assert.deepEqual(verifySignedAction(signed, { key: KEY }), { ok: true });
    clock.tick(1);
    const result = verifySignedAction(signed, { key: KEY });
    assert.equal(!result.ok && result.code, 'expired');
  });

  it('reports a replay through the seen callback, and consults it only for authentic signatures', () => {
    const calls: string[] = [];
    const store = createNonceStore();
    const seen = (nonce: string, expires: number) => {
      calls.push(nonce);
      return store(nonce, expires);
    };
    const signed = sign();
    assert.deepEqual(verifySignedAction(signed, { key: KEY, now: 1_000_001, seen }), { ok: true });
    const again = verifySignedAction(signed, { key: KEY, now: 1_000_002, seen });
    assert.equal(!again.ok && again.code, 'replayed');
    const forged = { ...signed, signature: { ...signed.signature, mac: flip(signed.signature.mac) } };
    verifySignedAction(forged, { key: KEY, now: 1_000_003, seen });
    verifySignedAction(signed, { key: KEY, now: 2_000_000, seen });
    assert.equal(calls.length, 2);
  });

  it('nonce store forgets expired nonces and refuses when full of live ones', () => {
    let now = 0;
    const store = createNonceStore({ maxEntries: 2, now: () => now });
    assert.equal(store('a', 10), false);
    assert.equal(store('b', 20), false);
    assert.equal(store('c', 30), true);
    now = 15;
    assert.equal(store('c', 30), false);
    assert.equal(store('b', 20), true);
  });
});

function flip(hex: string): string {
  return (hex[0] === '0' ? '1' : '0') + hex.slice(1);
}

describe('snapshotJson', () => {
  /** A Proxy whose every trap counts its calls (and then does what the target would). */
  function countingProxy<T extends object>(target: T) {
    const calls: string[] = [];
    const handler: ProxyHandler<T> = {};
    for (const trap of [
      'get',
      'set',
      'has',
      'ownKeys',
      'getOwnPropertyDescriptor',
      'getPrototypeOf',
      'defineProperty',
      'deleteProperty',
      'isExtensible',
      'preventExtensions',
      'setPrototypeOf',
    ] as const) {
      (handler as Record<string, unknown>)[trap] = (...args: unknown[]) => {
        calls.push(trap);
        return (Reflect[trap] as (...a: unknown[]) => unknown)(...args);
      };
    }
    return { proxy: new Proxy(target, handler), calls };
  }

  it('copies plain JSON data into fresh objects that nothing else holds', () => {
    const input = { a: [1, { b: 'x' }], c: null, d: true };
    const r = snapshotJson(input);
    assert.ok(r.ok);
    assert.deepEqual(r.value, input);
    assert.notEqual(r.value, input);
    assert.notEqual((r.value as typeof input).a, input.a);
  });

  it('accepts objects and arrays from another realm (a function node sandbox)', () => {
    const foreign = vm.runInNewContext('({ action: "beep", params: { n: [1, 2] } })');
    const r = snapshotJson(foreign);
    assert.ok(r.ok);
    assert.deepEqual(r.value, { action: 'beep', params: { n: [1, 2] } });
    assert.equal(Object.getPrototypeOf(r.value), Object.prototype);
  });

  it('refuses a getter without calling it', () => {
    let reads = 0;
    const params = {
      get nm() {
        return ++reads === 1 ? 5 : 50;
      },
    };
    const r = snapshotJson({ action: 'set_torque', params });
    assert.equal(!r.ok && r.problem.code, 'accessor');
    assert.equal(!r.ok && r.problem.at, 'payload.params.nm');
    assert.equal(reads, 0);
  });

  it('refuses a getter on an array element and a setter-only property', () => {
    const arr = [1];
    Object.defineProperty(arr, 0, { get: () => 2, enumerable: true });
    assert.equal((snapshotJson({ arr }) as { problem: { code: string } }).problem.code, 'accessor');
    const setter = {};
    Object.defineProperty(setter, 'x', { set: () => undefined, enumerable: true });
    assert.equal((snapshotJson(setter) as { problem: { code: string } }).problem.code, 'accessor');
  });

  it('refuses a Proxy anywhere without running any of its traps', () => {
    for (const make of [
      (p: object) => p,
      (p: object) => ({ params: p }),
      (p: object) => ({ steps: [{ params: p }] }),
    ]) {
      const { proxy, calls } = countingProxy({ nm: 5 });
      const r = snapshotJson(make(proxy));
      assert.equal(!r.ok && r.problem.code, 'proxy');
      assert.deepEqual(calls, []);
    }
    const { proxy, calls } = countingProxy([1, 2]);
    assert.equal((snapshotJson({ steps: proxy }) as { problem: { code: string } }).problem.code, 'proxy');
    assert.deepEqual(calls, []);
  });

  it('refuses a prototype that is a Proxy or has a getter for constructor, without calling either', () => {
    const { proxy, calls } = countingProxy({});
    assert.equal(snapshotJson(Object.create(proxy)).ok, false);
    assert.deepEqual(calls, []);
    let reads = 0;
    const proto = Object.create(null, {
      constructor: {
        get() {
          reads++;
          return Object;
        },
      },
    });
    assert.equal(snapshotJson(Object.create(proto)).ok, false);
    assert.equal(reads, 0);
  });

  const refused: Array<[string, unknown, string]> = [
    ['a class instance', { d: new Date(0) }, 'not_data'],
    ['a Map', new Map(), 'not_data'],
    ['a function', { f: () => 1 }, 'not_data'],
    ['undefined', { u: undefined }, 'not_data'],
    ['a bigint', [1n], 'not_data'],
    ['NaN', { n: NaN }, 'non_finite'],
    ['a hole', [1, , 2], 'not_data'], // eslint-disable-line no-sparse-arrays
  ];
  for (const [name, value, code] of refused) {
    it(`refuses ${name} (${code})`, () => {
      const r = snapshotJson(value);
      assert.equal(!r.ok && r.problem.code, code);
    });
  }

  it('holds its limits on both sides: depth, values, text length and forbidden keys', () => {
    const nest = (n: number): unknown => (n === 0 ? 1 : { a: nest(n - 1) });
    assert.equal(snapshotJson(nest(3), { maxDepth: 3 }).ok, true);
    assert.equal(
      (snapshotJson(nest(4), { maxDepth: 3 }) as { problem: { code: string } }).problem.code,
      'too_deep',
    );
    assert.equal(snapshotJson([1, 2], { maxNodes: 3 }).ok, true);
    assert.equal(
      (snapshotJson([1, 2, 3], { maxNodes: 3 }) as { problem: { code: string } }).problem.code,
      'too_large',
    );
    assert.equal(snapshotJson('x'.repeat(10), { maxStringLength: 10 }).ok, true);
    assert.equal(
      (snapshotJson('x'.repeat(11), { maxStringLength: 10 }) as { problem: { code: string } }).problem.code,
      'too_long',
    );
    const proto = JSON.parse('{"__proto__": {"a": 1}}');
    const kept = snapshotJson(proto);
    assert.ok(kept.ok);
    assert.equal(Object.getPrototypeOf(kept.value), Object.prototype, 'an own __proto__ key stays a key');
    assert.deepEqual(Object.keys(kept.value as object), ['__proto__']);
    assert.equal(
      (snapshotJson(proto, { forbiddenKeys: ['__proto__'] }) as { problem: { code: string } }).problem.code,
      'forbidden_key',
    );
  });
});
