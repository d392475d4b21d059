import assert from 'node:assert/strict';
import { runInNewContext } from 'node:vm';
import { isPlainObject } from '../lib/util/plain';
import { signAction, verifySignedAction, type Action } from '../lib/device/signing';

describe('isPlainObject', () => {
  it('accepts {...} and Object.create(null), also from another realm (a function node)', () => {
    assert.ok(isPlainObject({ a: 1 }));
    assert.ok(isPlainObject(Object.create(null)));
    const foreign = runInNewContext('({ action: "move_to", params: { zone: "A" } })');
    assert.notEqual(Object.getPrototypeOf(foreign), Object.prototype);
    assert.ok(isPlainObject(foreign));
    const signed = signAction(foreign as Action, { key: 'k', policyHash: 'p', ttlMs: 1000 });
    assert.deepEqual(verifySignedAction(signed, { key: 'k' }), { ok: true });
  });

  it('refuses arrays, class instances, dates, buffers and maps, from any realm', () => {
    class Action {
      action = 'x';
    }
    for (const value of [[], new Action(), new Date(), Buffer.from('x'), new Map(), null, 'x', 1]) {
      assert.equal(isPlainObject(value), false, String(value));
    }
    for (const code of ['[]', 'new Date()', 'new Map()', '(class A {}, new (class A {})())']) {
      assert.equal(isPlainObject(runInNewContext(code)), false, code);
    }
  });
});
