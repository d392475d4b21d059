import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import * as fs from 'node:fs';
import nodeFs = require('node:fs');
import * as os from 'node:os';
import * as path from 'node:path';
import sinon from 'sinon';
import { PendingApprovals, parseApprovalDecision } from '../lib/guardrail/approvals';
import {
  AuditLog,
  GENESIS,
  decisionRecord,
  sha256,
  verifyAuditFile,
  verifyAuditLog,
} from '../lib/guardrail/audit';
import { LimitState } from '../lib/guardrail/state';
import { type Decision, Guardrail, type LiveReader, type ReasonCode } from '../lib/guardrail/evaluate';
import { readPath } from '../lib/guardrail/paths';
import {
  type CompiledPolicy,
  type Policy,
  compilePolicy,
  parsePolicyText,
  policyHash,
} from '../lib/guardrail/policy';
import { main as verifyCli } from '../lib/guardrail/verify-cli';
import { verifySignedAction } from '../lib/device/signing';
import { assemblePlan } from '../lib/llm/plan';

const KEY = 'guardrail-test-key';

export const CELL_POLICY: Policy = {
  name: 'cell 3',
  version: '1',
  actions: {
    set_torque: {
      params: { torque: { type: 'number', min: 0, max: 10, unit: 'Nm', required: true } },
      devices: ['arm-1', 'arm-2'],
      rateOfChange: [{ param: 'torque', maxPerSecond: 2 }],
    },
    move_to: {
      params: {
        zone: { type: 'string', enum: ['A', 'B', 'C'], required: true },
        distance: { type: 'number', min: 0, unit: 'm', required: true },
        speed: { type: 'integer', min: 1, max: 5 },
      },
      classes: ['motion'],
      costs: { travel: { param: 'distance' }, battery: { param: 'distance', factor: 0.5 } },
    },
    open_valve: {
      params: {
        valve: { type: 'string', pattern: '^V[0-9]{1,3}$', required: true },
        percent: { type: 'integer', min: 0, max: 100 },
      },
      rateLimits: [{ per: 'device', capacity: 2, refillPerSecond: 0.5 }],
    },
    wipe_memory: { params: {}, classes: ['destructive'] },
    beep: {
      params: { loud: { type: 'boolean' } },
      rateLimits: [{ per: 'action', capacity: 3, refillPerSecond: 1 }],
      costs: { battery: 6 },
    },
  },
  interlocks: [
    {
      id: 'zone-too-hot',
      when: { action: 'move_to' },
      require: { source: 'msg', path: 'sensors.zones.{params.zone}.temperature', op: '<=', value: 80 },
      message: 'Zone {params.zone} is {value} °C; moving there is allowed only at or below {limit} °C.',
    },
    {
      id: 'line-pressure',
      when: { action: 'open_valve' },
      require: [
        { source: 'flow', path: 'line.pressure', op: '<', value: 6 },
        { source: 'global', path: 'plant.mode', op: 'in', value: ['run', 'maintenance'] },
      ],
    },
  ],
  approval: { classes: ['destructive'], timeoutSeconds: 60 },
  plan: { maxSteps: 20, budgets: { travel: { max: 50, unit: 'm' }, battery: { max: 30, unit: 'min' } } },
  signature: { ttlSeconds: 30 },
};

function compile(policy: unknown = CELL_POLICY): CompiledPolicy {
  const r = compilePolicy(policy);
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return r.policy;
}

interface World {
  msg?: Record<string, unknown>;
  flow?: Record<string, unknown>;
  global?: Record<string, unknown>;
}

const SAFE: World = {
  msg: { sensors: { zones: { A: { temperature: 40 }, B: { temperature: 95 }, C: {} } } },
  flow: { line: { pressure: 3 } },
  global: { plant: { mode: 'run' } },
};

function reader(world: World): LiveReader {
  return (source, segments) => readPath(world[source], segments);
}

function codes(d: Decision): ReasonCode[] {
  return d.reasons.map((r) => r.code);
}

describe('guardrail policy', () => {
  it('compiles the example policy and names it by a hash of its canonical JSON', () => {
    const p = compile();
    assert.match(p.hash, /^[0-9a-f]{64}$/);
    const reordered = JSON.parse(JSON.stringify({ signature: CELL_POLICY.signature, ...CELL_POLICY }));
    assert.equal(policyHash(reordered), p.hash);
    assert.notEqual(policyHash({ ...CELL_POLICY, version: '2' }), p.hash);
    assert.equal(p.signatureTtlMs, 30000);
  });

  const invalid: Array<[string, unknown, RegExp]> = [
    ['no actions', { name: 'x' }, /missing required property "actions"/],
    ['an empty allow-list', { actions: {} }, /policy\.actions: must NOT have fewer than 1 properties/],
    [
      'a misspelt keyword',
      { actions: { a: { params: { x: { type: 'number', maximum: 3 } } } } },
      /policy\.actions\.a\.params\.x: unknown property "maximum"/,
    ],
    [
      'an unknown type',
      { actions: { a: { params: { x: { type: 'float' } } } } },
      /policy\.actions\.a\.params\.x\.type: must be one of/,
    ],
    [
      'a __proto__ parameter',
      JSON.parse('{"actions":{"a":{"params":{"__proto__":{"type":"number"}}}}}'),
      /"__proto__" is not allowed/,
    ],
    [
      'min above max',
      { actions: { a: { params: { x: { type: 'number', min: 5, max: 1 } } } } },
      /min \(5\) is greater than max \(1\)/,
    ],
    [
      'a bad regular expression',
      { actions: { a: { params: { x: { type: 'string', pattern: '(' } } } } },
      /pattern is not a valid regular expression/,
    ],
    [
      'an enum of the wrong type',
      { actions: { a: { params: { x: { type: 'integer', enum: [1, 'two'] } } } } },
      /enum value "two" is not a integer/,
    ],
    [
      'a unit on a string',
      { actions: { a: { params: { x: { type: 'string', unit: 'm' } } } } },
      /min, max and unit apply only to number/,
    ],
    [
      'rate of change on a string',
      {
        actions: {
          a: { params: { x: { type: 'string' } }, rateOfChange: [{ param: 'x', maxPerSecond: 1 }] },
        },
      },
      /"x" is not a numeric parameter of a/,
    ],
    ['a cost for an undeclared budget', { actions: { a: { costs: { travel: 1 } } } }, /no budget "travel"/],
    [
      'an interlock on an unknown action',
      {
        actions: { a: {} },
        interlocks: [
          { id: 'i', when: { action: 'b' }, require: { source: 'msg', path: 'x', op: '==', value: 1 } },
        ],
      },
      /"b" is not an action of this policy/,
    ],
    [
      'an interlock path naming an unknown parameter',
      {
        actions: { a: { params: { z: { type: 'string' } } } },
        interlocks: [
          {
            id: 'i',
            when: { action: 'a' },
            require: { source: 'flow', path: 'zones.{params.zone}.t', op: '<', value: 1 },
          },
        ],
      },
      /\{params\.zone\} is not a parameter of a/,
    ],
    [
      'a numeric comparison with a string',
      {
        actions: { a: {} },
        interlocks: [{ id: 'i', require: { source: 'msg', path: 'x', op: '<', value: 'hot' } }],
      },
      /value must be a number/,
    ],
    [
      '"in" without a list',
      {
        actions: { a: {} },
        interlocks: [{ id: 'i', require: { source: 'msg', path: 'x', op: 'in', value: 1 } }],
      },
      /needs an array value/,
    ],
    [
      'an unknown source',
      {
        actions: { a: {} },
        interlocks: [{ id: 'i', require: { source: 'env', path: 'x', op: '==', value: 1 } }],
      },
      /source: must be one of/,
    ],
    [
      'a duplicate interlock id',
      {
        actions: { a: {} },
        interlocks: [
          { id: 'i', require: { source: 'msg', path: 'x', op: '==', value: 1 } },
          { id: 'i', require: { source: 'msg', path: 'y', op: '==', value: 1 } },
        ],
      },
      /duplicate interlock id "i"/,
    ],
    [
      'an approval class no action has',
      { actions: { a: {} }, approval: { classes: ['danger'] } },
      /no action has the class "danger"/,
    ],
  ];
  for (const [name, policy, expected] of invalid) {
    it(`refuses ${name} with a clear error`, () => {
      const r = compilePolicy(policy);
      assert.equal(r.ok, false);
      assert.match(!r.ok ? r.errors.join('\n') : '', expected);
    });
  }

  it('reports a JSON syntax error with its line and column', () => {
    const r = parsePolicyText('{\n  "actions": {,}\n}');
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.errors[0] : '', /line 2, column 15/);
  });
});

describe('guardrail evaluation', () => {
  const sandbox = sinon.createSandbox();
  let clock: sinon.SinonFakeTimers;
  let guard: Guardrail;
  beforeEach(() => {
    clock = sandbox.useFakeTimers({ now: 1_700_000_000_000 });
    guard = new Guardrail(compile(), { key: KEY });
  });
  afterEach(() => sandbox.restore());

  type Case = [string, unknown, 'approved' | 'needs_approval' | 'rejected', ReasonCode[], World?];
  const cases: Case[] = [
    ['an allowed action', { action: 'set_torque', params: { torque: 5 }, device: 'arm-1' }, 'approved', []],
    ['the maximum exactly', { action: 'set_torque', params: { torque: 2 }, device: 'arm-2' }, 'approved', []],
    [
      'a value in the declared unit',
      { action: 'set_torque', params: { torque: { value: 2, unit: 'Nm' } }, device: 'arm-1' },
      'approved',
      [],
    ],
    [
      'a value in another unit',
      { action: 'set_torque', params: { torque: { value: 2, unit: 'lbf·ft' } }, device: 'arm-1' },
      'rejected',
      ['unit_mismatch'],
    ],
    [
      'torque above 10 Nm',
      { action: 'set_torque', params: { torque: 10.5 }, device: 'arm-1' },
      'rejected',
      ['param_range'],
    ],
    [
      'a negative torque',
      { action: 'set_torque', params: { torque: -1 }, device: 'arm-1' },
      'rejected',
      ['param_range'],
    ],
    [
      'an action not on the allow-list',
      { action: 'self_destruct', params: {} },
      'rejected',
      ['unknown_action'],
    ],
    [
      'an unknown parameter',
      { action: 'set_torque', params: { torque: 1, boost: true }, device: 'arm-1' },
      'rejected',
      ['unknown_param'],
    ],
    [
      'a missing required parameter',
      { action: 'set_torque', params: {}, device: 'arm-1' },
      'rejected',
      ['missing_param'],
    ],
    [
      'a device not allowed',
      { action: 'set_torque', params: { torque: 1 }, device: 'arm-9' },
      'rejected',
      ['device_not_allowed'],
    ],
    [
      'no device where one is required',
      { action: 'set_torque', params: { torque: 1 } },
      'rejected',
      ['device_not_allowed'],
    ],
    [
      'a value outside the enum',
      { action: 'move_to', params: { zone: 'Z', distance: 1 } },
      'rejected',
      ['param_enum'],
    ],
    [
      'a fractional integer',
      { action: 'move_to', params: { zone: 'A', distance: 1, speed: 2.5 } },
      'rejected',
      ['param_type'],
    ],
    [
      'a string that fails the pattern',
      { action: 'open_valve', params: { valve: 'V1; rm -rf' } },
      'rejected',
      ['param_pattern'],
    ],
    ['a boolean given as a string', { action: 'beep', params: { loud: 'true' } }, 'rejected', ['param_type']],
    ['a move to a cool zone', { action: 'move_to', params: { zone: 'A', distance: 10 } }, 'approved', []],
    [
      'a move to a zone above 80 °C',
      { action: 'move_to', params: { zone: 'B', distance: 10 } },
      'rejected',
      ['interlock'],
    ],
    [
      'a valve opening at low pressure',
      { action: 'open_valve', params: { valve: 'V12', percent: 50 } },
      'approved',
      [],
    ],
    [
      'a valve opening at high pressure',
      { action: 'open_valve', params: { valve: 'V12' } },
      'rejected',
      ['interlock'],
      { ...SAFE, flow: { line: { pressure: 7 } } },
    ],
    [
      'a valve opening in the wrong plant mode',
      { action: 'open_valve', params: { valve: 'V1' } },
      'rejected',
      ['interlock'],
      { ...SAFE, global: { plant: { mode: 'stop' } } },
    ],
    ['a destructive action', { action: 'wipe_memory', params: {} }, 'needs_approval', ['approval_required']],
    [
      'a move that alone exceeds the travel budget',
      { action: 'move_to', params: { zone: 'A', distance: 51 } },
      'rejected',
      ['budget_exceeded'],
    ],
  ];
  for (const [name, payload, outcome, expected, world] of cases) {
    it(`${outcome}: ${name}`, () => {
      const d = guard.decide(payload, reader(world ?? SAFE));
      assert.equal(d.outcome, outcome, d.summary);
      assert.deepEqual(codes(d), expected);
      if (outcome !== 'approved')
        assert.ok(
          d.reasons.every((r) => /[A-Za-z].*\.$|\)$/.test(r.message)),
          d.summary,
        );
      assert.equal(d.policyHash, guard.policy.hash);
    });
  }

  it('explains a rejection in a sentence a person understands', () => {
    const d = guard.decide({ action: 'set_torque', params: { torque: 12 }, device: 'arm-1' }, reader(SAFE));
    assert.equal(d.summary, 'set_torque: torque 12 Nm is above the maximum of 10 Nm.');
    const hot = guard.decide({ action: 'move_to', params: { zone: 'B', distance: 1 } }, reader(SAFE));
    assert.equal(hot.summary, 'Zone B is 95 °C; moving there is allowed only at or below 80 °C.');
    assert.equal(hot.reasons[0].rule, 'zone-too-hot');
  });

  describe('fails closed', () => {
    const failClosed: Array<[string, unknown, ReasonCode, World?]> = [
      [
        'a number given as a string',
        { action: 'set_torque', params: { torque: '5' }, device: 'arm-1' },
        'param_type',
      ],
      ['NaN', { action: 'set_torque', params: { torque: NaN }, device: 'arm-1' }, 'invalid_value'],
      ['Infinity', { action: 'move_to', params: { zone: 'A', distance: Infinity } }, 'invalid_value'],
      [
        'an own __proto__ key',
        JSON.parse('{"action":"beep","params":{"__proto__":{"loud":true}}}'),
        'forbidden_key',
      ],
      [
        'a nested constructor key',
        { steps: [{ action: 'beep', params: {}, reason: 'x' }], meta: { constructor: 1 } },
        'forbidden_key',
      ],
      ['undefined in the action', { action: 'beep', params: {}, device: undefined }, 'invalid_value'],
      ['a function in the action', { action: 'beep', params: { loud: () => true } }, 'invalid_value'],
      ['a Date instead of data', { action: 'beep', params: { loud: new Date() } }, 'invalid_value'],
      ['a payload that is a string', 'set torque to 5', 'malformed_request'],
      ['a payload that is null', null, 'malformed_request'],
      ['both action and steps', { action: 'beep', params: {}, steps: [] }, 'malformed_request'],
      ['an empty plan', { steps: [] }, 'malformed_request'],
      ['params missing', { action: 'beep' }, 'malformed_action'],
      ['an unexpected field on the action', { action: 'beep', params: {}, sudo: true }, 'malformed_action'],
      [
        'a missing interlock value',
        { action: 'move_to', params: { zone: 'C', distance: 1 } },
        'interlock_value_missing',
      ],
      [
        'no sensor data at all',
        { action: 'move_to', params: { zone: 'A', distance: 1 } },
        'interlock_value_missing',
        {},
      ],
      [
        'an interlock value given as a string',
        { action: 'open_valve', params: { valve: 'V1' } },
        'interlock_value_invalid',
        { ...SAFE, flow: { line: { pressure: '3' } } },
      ],
      [
        'an interlock value that is NaN',
        { action: 'open_valve', params: { valve: 'V1' } },
        'interlock_value_invalid',
        { ...SAFE, flow: { line: { pressure: NaN } } },
      ],
      [
        'an interlock value reached through the prototype',
        { action: 'open_valve', params: { valve: 'V1' } },
        'interlock_value_missing',
        { ...SAFE, flow: Object.create({ line: { pressure: 1 } }) },
      ],
    ];
    for (const [name, payload, code, world] of failClosed) {
      it(`rejects ${name} (${code})`, () => {
        const d = guard.decide(payload, reader(world ?? SAFE));
        assert.equal(d.outcome, 'rejected');
        assert.equal(d.signed.length, 0);
        assert.ok(codes(d).includes(code), `${codes(d).join(',')}: ${d.summary}`);
      });
    }

    it('rejects when the live reader throws (evaluation error)', () => {
      const d = guard.decide({ action: 'move_to', params: { zone: 'A', distance: 1 } }, () => {
        throw new Error('context store offline');
      });
      assert.equal(d.outcome, 'rejected');
      assert.deepEqual(codes(d), ['evaluation_error']);
      assert.match(d.summary, /context store offline/);
    });

    it('does not let a template value step out of its path segment', () => {
      const world = { msg: { sensors: { zones: { A: { temperature: 10 } } } } };
      const g = new Guardrail(
        compile({
          actions: { go: { params: { zone: { type: 'string' } } } },
          interlocks: [
            {
              id: 'hot',
              require: { source: 'msg', path: 'sensors.zones.{params.zone}.temperature', op: '<', value: 50 },
            },
          ],
        }),
        { key: KEY },
      );
      assert.equal(g.decide({ action: 'go', params: { zone: 'A' } }, reader(world)).outcome, 'approved');
      for (const zone of ['A.temperature', '__proto__', 'constructor', '']) {
        const d = g.decide({ action: 'go', params: { zone } }, reader(world));
        assert.deepEqual(codes(d), ['interlock_value_missing'], zone);
      }
    });
  });

  describe('one snapshot: what is checked is what is signed (failure 2)', () => {
    it('signs exactly the data it checked, and later changes to the message change nothing', () => {
      const payload = { action: 'set_torque', params: { torque: 5 }, device: 'arm-1' };
      const d = guard.decide(payload, reader(SAFE));
      assert.equal(d.outcome, 'approved');
      payload.params.torque = 50;
      payload.action = 'wipe_memory';
      assert.deepEqual(d.signed[0].action, { action: 'set_torque', params: { torque: 5 }, device: 'arm-1' });
      assert.equal(d.signed[0].action, d.actions[0], 'the action recorded is the action signed');
      assert.deepEqual(verifySignedAction(d.signed[0], { key: KEY }), { ok: true });
    });

    it('signs each step with the MAC createHmac gives over its canonical JSON, which the audit line records', () => {
      // The canonical JSON written here the plain way: keys sorted, JSON.stringify for the rest.
      const canonical = (v: unknown): string =>
        Array.isArray(v)
          ? `[${v.map(canonical).join(',')}]`
          : typeof v === 'object' && v !== null
            ? `{${Object.keys(v)
                .sort()
                .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
                .join(',')}}`
            : JSON.stringify(v);
      const plan = {
        steps: [
          {
            reason: 'inspect zone A: "hot" \\ é 😀',
            params: { distance: 3, zone: 'A' },
            id: 's1',
            action: 'move_to',
          },
          {
            status: 'pending',
            params: { torque: { value: 1.5, unit: 'Nm' } },
            device: 'arm-2',
            action: 'set_torque',
            id: 's2',
          },
          { action: 'open_valve', params: { percent: 40, valve: 'V7' }, reason: 'x'.repeat(256) },
        ],
      };
      const d = guard.decide(plan, reader(SAFE));
      assert.equal(d.outcome, 'approved', d.summary);
      assert.equal(d.signed.length, 3);
      const policyHash = guard.policy.hash;
      for (const [i, s] of d.signed.entries()) {
        const { action, signature } = s;
        assert.equal(action, d.actions[i]);
        const text = canonical({ action, policyHash, expires: signature.expires, nonce: signature.nonce });
        const mac = createHmac('sha256', KEY).update(text, 'utf8').digest('hex');
        assert.equal(signature.mac, mac, `step ${i + 1}`);
      }
      assert.deepEqual(
        d.actions.map((a) => Object.keys(a)),
        [
          ['reason', 'params', 'id', 'action'],
          ['params', 'device', 'action', 'id'],
          ['action', 'params', 'reason'],
        ],
        'the status of a step is not signed, and nothing else is dropped',
      );
      const recorded = () => (decisionRecord('request', d).actions as { text: string }).text;
      assert.equal(recorded(), canonical(d.actions));
      // Long after the signing (other decisions in between), the audit line's text is the same.
      for (let i = 0; i < 300; i++) guard.decide({ action: 'beep', params: {} }, reader(SAFE));
      assert.equal(recorded(), canonical(d.actions));
    });

    it('rejects a parameter getter (checked as 5, signed as 50) without calling it', () => {
      let reads = 0;
      const params = {
        get torque() {
          return ++reads === 1 ? 5 : 50;
        },
      };
      const d = guard.decide({ action: 'set_torque', params, device: 'arm-1' }, reader(SAFE));
      assert.equal(d.outcome, 'rejected');
      assert.deepEqual(codes(d), ['invalid_value']);
      assert.equal(d.summary, 'payload.params.torque is a getter or setter; only plain data is accepted.');
      assert.equal(reads, 0);
      assert.deepEqual(d.signed, []);
    });

    it('rejects an action-name getter (read_sensor, then shutdown_plant) without calling it', () => {
      let reads = 0;
      const payload = {
        get action() {
          return ++reads === 1 ? 'beep' : 'wipe_memory';
        },
        params: {},
      };
      const d = guard.decide(payload, reader(SAFE));
      assert.deepEqual(codes(d), ['invalid_value']);
      assert.equal(reads, 0);
    });

    it('rejects a Proxy (an object from a function node) without running any trap', () => {
      let traps = 0;
      const handler: ProxyHandler<object> = new Proxy(
        {},
        {
          get: () => () => {
            traps++;
            throw new Error('trap ran');
          },
        },
      );
      for (const payload of [
        new Proxy({ action: 'beep', params: {} }, handler),
        { action: 'beep', params: new Proxy({}, handler) },
        { steps: new Proxy([{ action: 'beep', params: {} }], handler) },
        { steps: [{ action: 'beep', params: new Proxy({ loud: true }, handler) }] },
      ]) {
        const d = guard.decide(payload, reader(SAFE));
        assert.deepEqual(codes(d), ['invalid_value'], d.summary);
        assert.match(d.summary, /is a Proxy/);
      }
      assert.equal(traps, 0);
    });

    it('the same request as plain data is approved (the other side of the boundary)', () => {
      const d = guard.decide({ action: 'beep', params: { loud: true } }, reader(SAFE));
      assert.equal(d.outcome, 'approved');
    });

    it('bounds every text of a request: 65,536 characters are read, 65,537 are not', () => {
      const at = (n: number) => guard.decide({ action: 'x'.repeat(n), params: {} }, reader(SAFE));
      assert.deepEqual(codes(at(65536)), ['unknown_action']);
      const long = at(65537);
      assert.deepEqual(codes(long), ['malformed_request']);
      assert.match(long.summary, /payload\.action is a text of 65537 characters; at most 65536 are accepted/);
    });
  });

  describe('signatures on approved actions', () => {
    it('signs each approved action with the policy hash and the policy TTL', () => {
      const d = guard.decide({ action: 'set_torque', params: { torque: 1 }, device: 'arm-1' }, reader(SAFE));
      assert.equal(d.signed.length, 1);
      const [signed] = d.signed;
      assert.equal(signed.signature.policyHash, guard.policy.hash);
      assert.equal(signed.signature.expires, Date.now() + 30000);
      assert.deepEqual(verifySignedAction(signed, { key: KEY }), { ok: true });
      clock.tick(30000);
      const late = verifySignedAction(signed, { key: KEY });
      assert.equal(!late.ok && late.code, 'expired');
    });
  });

  describe('plans', () => {
    const step = (id: string, action: string, params: Record<string, unknown>, device?: string) => ({
      id,
      action,
      params,
      ...(device ? { device } : {}),
      reason: `because ${id}`,
    });

    it('approves a plan within every limit and signs each step in order', () => {
      const plan = {
        goal: 'inspect zone A',
        steps: [
          step('s1', 'move_to', { zone: 'A', distance: 20 }),
          step('s2', 'set_torque', { torque: 1 }, 'arm-1'),
          step('s3', 'beep', { loud: false }),
        ],
      };
      const d = guard.decide(plan, reader(SAFE));
      assert.equal(d.outcome, 'approved', d.summary);
      assert.equal(d.kind, 'plan');
      assert.deepEqual(
        d.signed.map((s) => s.action.id),
        ['s1', 's2', 's3'],
      );
      assert.equal(d.signed[0].action.reason, 'because s1');
    });

    it('rejects the whole plan when one step is out of bounds, naming the step', () => {
      const d = guard.decide(
        { steps: [step('s1', 'beep', {}), step('s2', 'set_torque', { torque: 11 }, 'arm-1')] },
        reader(SAFE),
      );
      assert.equal(d.outcome, 'rejected');
      assert.equal(d.signed.length, 0);
      assert.deepEqual(d.reasons[0], {
        code: 'param_range',
        message: 'Step 2 (s2), set_torque: torque 11 Nm is above the maximum of 10 Nm.',
        step: 1,
        stepId: 's2',
        action: 'set_torque',
        rule: 'torque',
      });
    });

    it('enforces plan budgets over all steps (travel and battery)', () => {
      const moves = [30, 25].map((distance, i) => step(`m${i}`, 'move_to', { zone: 'A', distance }));
      const d = guard.decide({ steps: moves }, reader(SAFE));
      assert.deepEqual(codes(d), ['budget_exceeded']);
      assert.equal(d.summary, 'The plan needs 55 m of travel; the budget is 50 m.');
      const battery = [
        step('m', 'move_to', { zone: 'A', distance: 30 }),
        step('b1', 'beep', {}),
        step('b2', 'beep', {}),
      ];
      assert.equal(guard.decide({ steps: battery }, reader(SAFE)).outcome, 'approved');
      const over = guard.decide({ steps: [...battery, step('b3', 'beep', {})] }, reader(SAFE));
      assert.equal(over.summary, 'The plan needs 33 min of battery; the budget is 30 min.');
    });

    it('limits the number of steps', () => {
      const steps = Array.from({ length: 21 }, (_, i) => step(`s${i}`, 'beep', {}));
      const d = guard.decide({ steps }, reader(SAFE));
      assert.deepEqual(codes(d), ['too_many_steps']);
    });

    it('rejects repeated step ids and a malformed step', () => {
      assert.deepEqual(
        codes(guard.decide({ steps: [step('a', 'beep', {}), step('a', 'beep', {})] }, reader(SAFE))),
        ['malformed_action'],
      );
      assert.deepEqual(codes(guard.decide({ steps: [step('a', 'beep', {}), 'beep'] }, reader(SAFE))), [
        'malformed_action',
      ]);
    });

    it("accepts llm-plan's plan as it is: judges and signs only the pending steps, without their status", () => {
      // The plan shape llm-plan sends: the steps a replan kept are done, the new ones pending.
      const kept = [{ ...step('s1', 'beep', {}), status: 'done' as const }];
      const plan = assemblePlan(
        'inspect zone A',
        kept,
        [
          { action: 'move_to', params: { zone: 'A', distance: 20 }, reason: 'go' },
          { action: 'beep', params: { loud: true }, reason: 'tell' },
        ],
        'cat',
        { steps: kept },
      );
      assert.deepEqual(
        plan.steps.map((s) => [s.id, s.status]),
        [
          ['s1', 'done'],
          ['s2', 'pending'],
          ['s3', 'pending'],
        ],
      );
      const d = guard.decide(plan, reader(SAFE));
      assert.equal(d.outcome, 'approved', d.summary);
      assert.deepEqual(
        d.signed.map((s) => s.action),
        [
          { id: 's2', action: 'move_to', params: { zone: 'A', distance: 20 }, reason: 'go' },
          { id: 's3', action: 'beep', params: { loud: true }, reason: 'tell' },
        ],
      );
      // A done step outside the policy is history, not a request; a pending one is still judged.
      const history = {
        steps: [{ ...step('s0', 'wipe_memory', { x: 1 }), status: 'failed' }, plan.steps[1]],
      };
      assert.equal(guard.decide(history, reader(SAFE)).outcome, 'approved');
      const bad = { steps: [{ ...step('s4', 'set_torque', { torque: 11 }, 'arm-1'), status: 'pending' }] };
      assert.deepEqual(codes(guard.decide(bad, reader(SAFE))), ['param_range']);
    });

    it('refuses a step status other than pending, done, failed or skipped, and a plan with nothing pending', () => {
      const odd = { steps: [{ ...step('a', 'beep', {}), status: 'approved' }] };
      assert.deepEqual(codes(guard.decide(odd, reader(SAFE))), ['malformed_action']);
      const none = { steps: [{ ...step('a', 'beep', {}), status: 'done' }] };
      const d = guard.decide(none, reader(SAFE));
      assert.deepEqual(codes(d), ['malformed_request']);
      assert.equal(d.summary, 'The plan has no pending steps.');
      // A single action has no status: the field is still unexpected there.
      assert.deepEqual(codes(guard.decide({ ...step('a', 'beep', {}), status: 'pending' }, reader(SAFE))), [
        'malformed_action',
      ]);
    });

    it('sends a plan with one step needing approval to approval as a whole', () => {
      const d = guard.decide({ steps: [step('a', 'beep', {}), step('b', 'wipe_memory', {})] }, reader(SAFE));
      assert.equal(d.outcome, 'needs_approval');
      assert.deepEqual(
        d.reasons.map((r) => [r.code, r.step]),
        [['approval_required', 1]],
      );
      assert.equal(
        d.reasons[0].message,
        "Step 2 (b), wipe_memory needs a person's approval (class destructive).",
      );
      const granted = guard.decide(
        { steps: [step('a', 'beep', {}), step('b', 'wipe_memory', {})] },
        reader(SAFE),
        {
          approvalGranted: true,
        },
      );
      assert.equal(granted.outcome, 'approved');
      assert.equal(granted.signed.length, 2);
    });
  });

  describe('rate limits (token buckets, fake timers)', () => {
    it('allows a burst up to capacity, then refills at the configured rate', () => {
      const beep = { action: 'beep', params: {} };
      for (let i = 0; i < 3; i++) assert.equal(guard.decide(beep, reader(SAFE)).outcome, 'approved');
      const limited = guard.decide(beep, reader(SAFE));
      assert.deepEqual(codes(limited), ['rate_limited']);
      assert.match(limited.summary, /try again in 1 s/);
      clock.tick(999);
      assert.equal(guard.decide(beep, reader(SAFE)).outcome, 'rejected');
      clock.tick(1);
      assert.equal(guard.decide(beep, reader(SAFE)).outcome, 'approved');
      assert.equal(guard.decide(beep, reader(SAFE)).outcome, 'rejected');
    });

    it('keeps one bucket per device for per-device limits', () => {
      const valve = (device: string) => ({ action: 'open_valve', params: { valve: 'V1' }, device });
      assert.equal(guard.decide(valve('d1'), reader(SAFE)).outcome, 'approved');
      assert.equal(guard.decide(valve('d1'), reader(SAFE)).outcome, 'approved');
      assert.deepEqual(codes(guard.decide(valve('d1'), reader(SAFE))), ['rate_limited']);
      assert.equal(guard.decide(valve('d2'), reader(SAFE)).outcome, 'approved');
      clock.tick(2000);
      assert.equal(guard.decide(valve('d1'), reader(SAFE)).outcome, 'approved');
    });

    it('counts every step of a plan, and a rejected request uses no tokens', () => {
      const beeps = (n: number) => ({
        steps: Array.from({ length: n }, (_, i) => ({ action: 'beep', params: {}, id: `b${i}` })),
      });
      assert.deepEqual(codes(guard.decide(beeps(4), reader(SAFE))), ['rate_limited']);
      assert.equal(
        guard.decide({ steps: [...beeps(2).steps, { action: 'nope', params: {} }] }, reader(SAFE)).outcome,
        'rejected',
      );
      assert.equal(guard.decide(beeps(3), reader(SAFE)).outcome, 'approved');
      assert.deepEqual(codes(guard.decide(beeps(1), reader(SAFE))), ['rate_limited']);
    });

    it('rejects a request over a rate limit instead of asking a person to approve it (failure 3)', () => {
      const g = new Guardrail(
        compile({
          actions: {
            flush_line: {
              classes: ['destructive'],
              rateLimits: [{ per: 'action', capacity: 1, refillPerSecond: 0.1 }],
            },
          },
          approval: { classes: ['destructive'] },
        }),
        { key: KEY },
      );
      const flush = { action: 'flush_line', params: {} };
      assert.equal(g.decide(flush, reader({})).outcome, 'needs_approval', 'within the limit: to a person');
      assert.equal(g.decide(flush, reader({}), { approvalGranted: true }).outcome, 'approved');
      const over = g.decide(flush, reader({}));
      assert.equal(over.outcome, 'rejected', 'over the limit: never to a person');
      assert.deepEqual(codes(over), ['rate_limited']);
      clock.tick(9999);
      assert.equal(g.decide(flush, reader({})).outcome, 'rejected');
      clock.tick(1);
      assert.equal(g.decide(flush, reader({})).outcome, 'needs_approval', 'refilled: to a person again');
    });

    it('rejects a set-point jump that needs approval rather than asking for it', () => {
      const g = new Guardrail(
        compile({
          actions: {
            set_pressure: {
              params: { bar: { type: 'number', required: true } },
              requiresApproval: true,
              rateOfChange: [{ param: 'bar', maxPerSecond: 1 }],
            },
          },
        }),
        { key: KEY },
      );
      const set = (bar: number) => ({ action: 'set_pressure', params: { bar } });
      assert.equal(g.decide(set(2), reader({}), { approvalGranted: true }).outcome, 'approved');
      clock.tick(1000);
      assert.deepEqual(codes(g.decide(set(3.5), reader({}))), ['rate_of_change']);
      assert.equal(g.decide(set(3), reader({})).outcome, 'needs_approval');
    });

    it('applies policy-wide limits per device and for all actions', () => {
      const g = new Guardrail(
        compile({
          actions: { a: {}, b: {} },
          rateLimits: [
            { per: 'device', capacity: 1, refillPerSecond: 1 },
            { per: 'all', capacity: 3, refillPerSecond: 1 },
          ],
        }),
        { key: KEY },
      );
      const run = (action: string, device: string) =>
        g.decide({ action, params: {}, device }, reader({})).outcome;
      assert.equal(run('a', 'x'), 'approved');
      assert.equal(run('b', 'x'), 'rejected');
      assert.equal(run('b', 'y'), 'approved');
      assert.equal(run('a', 'z'), 'approved');
      assert.equal(run('a', 'w'), 'rejected');
    });
  });

  describe('rate of change (fake timers)', () => {
    const torque = (t: number, device = 'arm-1') => ({ action: 'set_torque', params: { torque: t }, device });

    it('lets a set-point move at most maxPerSecond per elapsed second', () => {
      assert.equal(guard.decide(torque(2), reader(SAFE)).outcome, 'approved');
      clock.tick(1000);
      const jump = guard.decide(torque(5), reader(SAFE));
      assert.deepEqual(codes(jump), ['rate_of_change']);
      assert.equal(
        jump.summary,
        'set_torque: torque would move by 3 Nm (from 2 to 5) in 1 s; the limit is 2 Nm per second.',
      );
      assert.equal(guard.decide(torque(4), reader(SAFE)).outcome, 'approved');
      clock.tick(500);
      assert.equal(guard.decide(torque(3), reader(SAFE)).outcome, 'approved');
      assert.equal(
        guard.decide(torque(3, 'arm-2'), reader(SAFE)).outcome,
        'approved',
        'devices are tracked apart',
      );
    });

    it('counts steps of one plan as happening at once', () => {
      const d = guard.decide(
        {
          steps: [
            { ...torque(1), id: 'a' },
            { ...torque(1.5), id: 'b' },
          ],
        },
        reader(SAFE),
      );
      assert.deepEqual(codes(d), ['rate_of_change']);
      assert.equal(d.reasons[0].step, 1);
    });

    it('reads the present set-point from live state when there is no history, failing closed without it', () => {
      const g = new Guardrail(
        compile({
          actions: {
            setpoint: {
              params: { temp: { type: 'number', required: true } },
              rateOfChange: [
                { param: 'temp', maxPerSecond: 1, initial: { source: 'global', path: 'oven.temp' } },
              ],
            },
          },
        }),
        { key: KEY },
      );
      const set = (temp: number) => ({ action: 'setpoint', params: { temp } });
      assert.deepEqual(codes(g.decide(set(20), reader({}))), ['interlock_value_missing']);
      assert.deepEqual(codes(g.decide(set(22), reader({ global: { oven: { temp: 20 } } }))), [
        'rate_of_change',
      ]);
      assert.equal(g.decide(set(21), reader({ global: { oven: { temp: 20 } } })).outcome, 'approved');
    });
  });
});

describe('pending approvals', () => {
  it('hands an approval out once, and refuses after its expiry', () => {
    const store = new PendingApprovals(2);
    const entry = store.add({
      payload: { action: 'a', params: {} },
      kind: 'action',
      created: 0,
      expires: 100,
      reasons: [],
    })!;
    assert.match(entry.id, /^[0-9a-f]{32}$/);
    assert.equal(store.take(entry.id, 50).status, 'found');
    assert.equal(store.take(entry.id, 50).status, 'unknown');
    const late = store.add({ payload: {}, kind: 'action', created: 0, expires: 100, reasons: [] })!;
    assert.equal(store.take(late.id, 100).status, 'expired');
  });

  it('is bounded and expires entries in a sweep', () => {
    const store = new PendingApprovals(1);
    assert.ok(store.add({ payload: {}, kind: 'action', created: 0, expires: 10, reasons: [] }));
    assert.equal(store.add({ payload: {}, kind: 'action', created: 0, expires: 10, reasons: [] }), undefined);
    assert.equal(store.expire(9).length, 0);
    assert.equal(store.expire(10).length, 1);
    assert.equal(store.size, 0);
  });

  it('reads decisions and refuses malformed ones', () => {
    const id = 'ab'.repeat(16);
    assert.equal(parseApprovalDecision(undefined), undefined);
    assert.equal(parseApprovalDecision({ id, expires: 1 }), undefined);
    assert.deepEqual(parseApprovalDecision({ id, decision: 'approve', approver: 'ana' }), {
      id,
      decision: 'approve',
      approver: 'ana',
    });
    assert.ok('error' in (parseApprovalDecision({ id, decision: 'yes' }) as object));
    assert.ok('error' in (parseApprovalDecision({ id: 'x', decision: 'approve' }) as object));
  });
});

describe('audit log', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardrail-audit-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function writeLog(n: number, signingKey?: string): string {
    const file = path.join(dir, 'sub', 'audit.jsonl');
    const log = AuditLog.open(file, { signingKey });
    for (let i = 0; i < n; i++)
      log.append({ event: 'decision', decision: i % 2 ? 'rejected' : 'approved', n: i }, 1000 * i);
    log.close();
    return file;
  }

  const lines = (file: string) => fs.readFileSync(file, 'utf8').split('\n').slice(0, -1);
  const save = (file: string, ls: string[]) => fs.writeFileSync(file, ls.map((l) => l + '\n').join(''));
  // A line that correctly follows line 3 but takes its successor's place.
  const forgeAfter = (line: string) => {
    const prev = JSON.parse(line);
    return JSON.stringify({ ...prev, seq: prev.seq + 1, prev: sha256(line), decision: 'approved' });
  };
  const problemCodes = (file: string, signingKey?: string) =>
    verifyAuditFile(file, { signingKey }).problems.map((p) => p.code);

  it('writes one canonical JSON line per decision, chained by hash, and verifies intact', () => {
    const file = writeLog(5);
    const ls = lines(file);
    assert.equal(ls.length, 5);
    const first = JSON.parse(ls[0]);
    assert.equal(first.prev, GENESIS);
    assert.equal(first.seq, 0);
    assert.equal(first.ts, '1970-01-01T00:00:00.000Z');
    const result = verifyAuditFile(file);
    assert.deepEqual(result, { ok: true, entries: 5, lastSeq: 4, problems: [] });
  });

  it('resumes the chain when reopened', () => {
    const file = writeLog(3);
    const log = AuditLog.open(file);
    assert.equal(log.lastSeq, 2);
    log.append({ event: 'decision' });
    log.close();
    assert.equal(verifyAuditFile(file).ok, true);
    assert.equal(verifyAuditFile(file).entries, 4);
  });

  const tampering: Array<[string, (ls: string[]) => string[], string[]]> = [
    [
      'an edited line',
      (ls) => ls.map((l, i) => (i === 2 ? l.replace('"approved"', '"rejected"') : l)),
      ['bad_prev'],
    ],
    [
      'an edited last line',
      (ls) => ls.map((l, i) => (i === ls.length - 1 ? l.replace('"n":5', '"n":6') : l)),
      ['head_mismatch'],
    ],
    ['a removed line', (ls) => ls.filter((_, i) => i !== 2), ['bad_seq', 'bad_prev']],
    ['a removed first line', (ls) => ls.slice(1), ['bad_seq', 'bad_prev']],
    [
      'two lines swapped',
      (ls) => [ls[0], ls[2], ls[1], ...ls.slice(3)],
      ['bad_seq', 'bad_prev', 'bad_seq', 'bad_prev', 'bad_seq', 'bad_prev'],
    ],
    ['lines removed from the end', (ls) => ls.slice(0, 4), ['truncated']],
    ['a duplicated line', (ls) => [...ls.slice(0, 3), ls[2], ...ls.slice(3)], ['bad_seq', 'bad_prev']],
    [
      'an inserted forged line',
      (ls) => [...ls.slice(0, 3), forgeAfter(ls[2]), ...ls.slice(3)],
      ['bad_seq', 'bad_prev'],
    ],
    ['an appended copy of a line', (ls) => [...ls, ls[0]], ['bad_seq', 'bad_prev', 'head_mismatch']],
    [
      'a line that is not JSON',
      (ls) => ls.map((l, i) => (i === 1 ? 'oops' : l)),
      ['unparseable', 'bad_prev'],
    ],
  ];
  for (const [name, change, expected] of tampering) {
    it(`detects ${name}`, () => {
      const file = writeLog(6);
      save(file, change(lines(file)));
      assert.deepEqual(problemCodes(file), expected);
      assert.deepEqual(
        verifyCli([file], {}, () => undefined),
        1,
      );
    });
  }

  it('detects truncation in the middle of a line', () => {
    const file = writeLog(4);
    const text = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, text.slice(0, text.length - 20));
    assert.deepEqual(problemCodes(file), ['torn_line', 'truncated']);
  });

  it('detects a removed head file, and an empty log whose head records entries', () => {
    const file = writeLog(2);
    const head = fs.readFileSync(`${file}.head`, 'utf8');
    fs.rmSync(`${file}.head`);
    assert.deepEqual(problemCodes(file), ['head_missing']);
    fs.writeFileSync(`${file}.head`, head);
    fs.writeFileSync(file, '');
    assert.deepEqual(problemCodes(file), ['truncated']);
  });

  it('with the key, detects a rewritten chain whose hashes were recomputed', () => {
    const file = writeLog(3, KEY);
    assert.equal(verifyAuditFile(file, { signingKey: KEY }).ok, true);
    // A forger without the key rebuilds the chain after editing line 1.
    const forged = AuditLog.open(path.join(dir, 'forged.jsonl'));
    for (const l of lines(file)) {
      const entry = JSON.parse(l);
      for (const k of ['seq', 'ts', 'prev', 'mac']) delete entry[k];
      forged.append({ ...entry, decision: 'approved' });
    }
    forged.close();
    fs.copyFileSync(path.join(dir, 'forged.jsonl'), file);
    fs.copyFileSync(path.join(dir, 'forged.jsonl.head'), `${file}.head`);
    assert.equal(verifyAuditFile(file).ok, true, 'without the key a consistent rewrite passes');
    assert.deepEqual(problemCodes(file, KEY), ['bad_mac', 'bad_mac', 'bad_mac', 'bad_head']);
  });

  it('refuses to open a log that does not match its head, or ends in a torn line', () => {
    const file = writeLog(3);
    save(file, lines(file).slice(0, 2));
    assert.throws(() => AuditLog.open(file), /does not match its head/);
    fs.appendFileSync(file, '{"seq":');
    assert.throws(() => AuditLog.open(file), /incomplete line/);
    fs.rmSync(`${file}.head`);
    save(file, lines(file).slice(0, 2));
    assert.throws(() => AuditLog.open(file), /no head file/);
  });

  it('refuses records that would overwrite the chain fields', () => {
    const log = AuditLog.open(path.join(dir, 'a.jsonl'));
    assert.throws(() => log.append({ prev: GENESIS }), /may not set "prev"/);
    log.close();
  });

  it('verify CLI reports OK, tampering and usage errors by exit status', () => {
    const file = writeLog(3, KEY);
    const out: string[] = [];
    assert.equal(
      verifyCli([file, '--key-env', 'K'], { K: KEY }, (l) => out.push(l)),
      0,
    );
    assert.match(out.join('\n'), /OK: .*3 entries, chain intact, head matches, MACs valid/);
    assert.equal(
      verifyCli([file, '--key-env', 'K'], { K: 'wrong' }, () => undefined),
      1,
    );
    assert.equal(
      verifyCli([file, '--key-env', 'K'], {}, () => undefined),
      2,
    );
    assert.equal(
      verifyCli([], {}, () => undefined),
      2,
    );
    assert.equal(
      verifyCli([path.join(dir, 'missing.jsonl')], {}, () => undefined),
      2,
    );
    assert.equal(verifyAuditLog('').ok, true);
  });
});

describe('limits kept on disk (failure 4)', () => {
  const sandbox = sinon.createSandbox();
  let dir: string;
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardrail-state-'));
    clock = sandbox.useFakeTimers({ now: 1_700_000_000_000, toFake: ['Date'] });
  });
  afterEach(() => {
    sandbox.restore();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const VALVES = compile({
    actions: {
      set_valve: {
        params: { id: { type: 'string', required: true }, position: { type: 'integer', min: 0, max: 100 } },
        rateLimits: [{ per: 'action', by: ['id'], max: 5, windowSeconds: 60 }],
        rateOfChange: [{ param: 'position', by: ['id'], maxPerSecond: 10 }],
      },
    },
  });
  const valve = (id: string, position = 10) => ({ action: 'set_valve', params: { id, position } });

  it('stores its limits under the same keys as journals already on disk hold', () => {
    // The journal's keys are `b:`/`w:`/`s:` and the JSON of an array; a change of that text would
    // forget every limit kept across the upgrade.
    const g = new Guardrail(
      compile({
        actions: {
          set_valve: {
            params: {
              id: { type: 'string', required: true },
              position: { type: 'integer', min: 0, max: 100 },
            },
            rateLimits: [
              { per: 'action', by: ['id'], max: 5, windowSeconds: 60 },
              { per: 'device', capacity: 5, refillPerSecond: 1 },
            ],
            rateOfChange: [{ param: 'position', by: ['id'], maxPerSecond: 10 }],
          },
          ping: { params: {}, rateLimits: [{ per: 'action', capacity: 3, refillPerSecond: 1 }] },
        },
        rateLimits: [
          { per: 'all', max: 100, windowSeconds: 60 },
          { per: 'device', capacity: 50, refillPerSecond: 5 },
        ],
      }),
      { key: KEY },
    );
    const live = reader({});
    const approved = [
      { action: 'set_valve', params: { id: 'V"1', position: 10 }, device: 'pump-é' },
      { action: 'set_valve', params: { id: 'V2', position: 10 } },
      { action: 'set_valve', params: { id: 'V2', position: 10 } },
      { action: 'ping', params: {}, device: 'd1' },
    ];
    for (const a of approved) assert.equal(g.decide(a, live).outcome, 'approved');
    const expected = [
      `w:${JSON.stringify(['action', 'set_valve', 0, 'V"1'])}`,
      `b:${JSON.stringify(['action-device', 'set_valve', 1, 'pump-é'])}`,
      `w:${JSON.stringify(['all', 0])}`,
      `b:${JSON.stringify(['device', 1, 'pump-é'])}`,
      `s:${JSON.stringify(['set_valve', 'pump-é', 'position', 'V"1'])}`,
      `w:${JSON.stringify(['action', 'set_valve', 0, 'V2'])}`,
      `b:${JSON.stringify(['action-device', 'set_valve', 1, null])}`,
      `b:${JSON.stringify(['device', 1, null])}`,
      `s:${JSON.stringify(['set_valve', null, 'position', 'V2'])}`,
      `b:${JSON.stringify(['action', 'ping', 0])}`,
      `b:${JSON.stringify(['device', 1, 'd1'])}`,
    ];
    assert.deepEqual([...g.limits.state.keys()].sort(), expected.sort());
  });

  it('refuses the 6th valve command within a minute after a redeploy, and allows it a minute later', async () => {
    const file = path.join(dir, 'g.state.jsonl');
    const first = new Guardrail(VALVES, { key: KEY, state: LimitState.open(file) });
    for (let i = 0; i < 5; i++) assert.equal(first.decide(valve('V1'), reader({})).outcome, 'approved');
    await first.limits.state.close();

    const second = new Guardrail(VALVES, { key: KEY, state: LimitState.open(file) });
    const sixth = second.decide(valve('V1'), reader({}));
    assert.deepEqual(codes(sixth), ['rate_limited']);
    assert.match(sixth.summary, /at most 5 in any 60 s/);
    assert.equal(
      second.decide(valve('V2'), reader({})).outcome,
      'approved',
      'another valve has its own window',
    );
    clock.tick(60_000);
    assert.equal(second.decide(valve('V1'), reader({})).outcome, 'approved');
    await second.limits.state.close();
  });

  it('keeps set-points across a restart: a jump is still a jump', async () => {
    const file = path.join(dir, 'g.state.jsonl');
    const first = new Guardrail(VALVES, { key: KEY, state: LimitState.open(file) });
    assert.equal(first.decide(valve('V1', 10), reader({})).outcome, 'approved');
    await first.limits.state.sync();
    clock.tick(1000);
    const second = new Guardrail(VALVES, { key: KEY, state: LimitState.open(file) });
    assert.deepEqual(codes(second.decide(valve('V1', 21), reader({}))), ['rate_of_change']);
    assert.equal(second.decide(valve('V1', 20), reader({})).outcome, 'approved');
  });

  it('ignores a torn last line (a crash mid-append) and refuses a journal damaged before it', () => {
    const file = path.join(dir, 'g.state.jsonl');
    fs.writeFileSync(file, '{"k":"s:x","v":{"value":1,"at":0}}\n{"k":"s:y","v":');
    const state = LimitState.open(file);
    assert.deepEqual(state.get('s:x'), { value: 1, at: 0 });
    assert.equal(state.has('s:y'), false);
    fs.writeFileSync(file, 'oops\n{"k":"s:x","v":1}\n{"k":"s:y","v":2}\n');
    assert.throws(() => LimitState.open(file), /damaged at line 1/);
  });

  it('rewrites the journal atomically, leaving only live keys', async () => {
    const file = path.join(dir, 'g.state.jsonl');
    const state = LimitState.open(file);
    for (let i = 0; i < 3000; i++) {
      state.set('s:x', { value: i, at: 0 });
      await state.sync();
    }
    await state.close();
    assert.ok(fs.readFileSync(file, 'utf8').split('\n').length < 1100);
    assert.equal(fs.existsSync(`${file}.tmp`), false);
    assert.deepEqual(LimitState.open(file).get('s:x'), { value: 2999, at: 0 });
  });
});

describe('audit log: bounded lines, group commit, anchors (failures 5, 6, 7)', () => {
  const sandbox = sinon.createSandbox();
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardrail-audit2-'));
  });
  afterEach(() => {
    sandbox.restore();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('records a long action name as a prefix, its length and its sha256, in a short line', async () => {
    const guard = new Guardrail(compile(), { key: KEY });
    const file = path.join(dir, 'a.jsonl');
    const log = AuditLog.open(file, { signingKey: KEY });
    for (const n of [256, 65536, 10 * 1024 * 1024]) {
      const name = 'x'.repeat(n);
      const d = guard.decide({ action: name, params: {} }, reader(SAFE));
      assert.equal(d.outcome, 'rejected');
      assert.ok(d.summary.length < 400, `the reason is short (${d.summary.length})`);
      await log.append(decisionRecord('request', d)).durable;
    }
    await log.close();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    assert.ok(
      lines.every((l) => l.length < 2048),
      lines.map((l) => l.length).join(', '),
    );
    assert.equal(
      JSON.parse(lines[0]).actions[0].action,
      'x'.repeat(256),
      'up to 256 characters are kept whole',
    );
    assert.equal(
      JSON.parse(lines[1]).actions[0].action,
      `${'x'.repeat(64)}… [65536 characters, sha256 ${sha256('x'.repeat(65536))}]`,
    );
    assert.deepEqual(JSON.parse(lines[2]).actions, [], 'refused before it was read as an action');
    assert.equal(verifyAuditFile(file, { signingKey: KEY }).ok, true);
  });

  it('writes a burst of decisions with one fsync, each durable before it resolves', async () => {
    const file = path.join(dir, 'a.jsonl');
    const log = AuditLog.open(file, { signingKey: KEY });
    // The real module object (the namespace import above is a copy of getters).
    const fsyncs = sandbox.spy(nodeFs, 'fdatasync');
    const written = Array.from({ length: 1000 }, (_, i) => log.append({ event: 'decision', n: i }));
    assert.equal(fs.readFileSync(file, 'utf8'), '', 'nothing is durable, so nothing may be sent yet');
    let durableLines = -1;
    await written[0].durable.then(() => {
      durableLines = fs.readFileSync(file, 'utf8').trim().split('\n').length;
    });
    await Promise.all(written.map((w) => w.durable));
    assert.equal(durableLines, 1000);
    assert.equal(fsyncs.callCount, 1);
    await log.close();
    assert.equal(verifyAuditFile(file, { signingKey: KEY }).entries, 1000);
  });

  it('fails every decision of a batch that cannot be written, and every one after it', async () => {
    const file = path.join(dir, 'a.jsonl');
    const log = AuditLog.open(file, { signingKey: KEY });
    fs.mkdirSync(`${file}.head.tmp`);
    const a = log.append({ event: 'decision' });
    const b = log.append({ event: 'decision' });
    await assert.rejects(a.durable, /could not be written/);
    await assert.rejects(b.durable, /could not be written/);
    assert.throws(() => log.append({ event: 'decision' }), /could not be written/);
    await log.close();
  });

  function anchoredLog(n: number, signingKey?: string) {
    const file = path.join(dir, 'a.jsonl');
    const anchor = path.join(dir, 'elsewhere', 'a.anchor.jsonl');
    fs.mkdirSync(path.dirname(anchor));
    const log = AuditLog.open(file, { signingKey, anchor: { file: anchor, intervalMs: 0 } });
    return (async () => {
      for (let i = 0; i < n; i++) await log.append({ event: 'decision', decision: 'rejected', n: i }).durable;
      await log.close();
      return { file, anchor };
    })();
  }

  it('without the key, detects a rewritten chain (head recomputed) by its anchors', async () => {
    const { file, anchor } = await anchoredLog(4);
    assert.equal(verifyAuditFile(file, { anchor }).ok, true);
    const forged = AuditLog.open(path.join(dir, 'forged.jsonl'));
    for (const l of fs.readFileSync(file, 'utf8').trim().split('\n')) {
      const entry = JSON.parse(l);
      for (const k of ['seq', 'ts', 'prev', 'mac']) delete entry[k];
      forged.append({ ...entry, decision: 'approved' });
    }
    await forged.close();
    fs.copyFileSync(path.join(dir, 'forged.jsonl'), file);
    fs.copyFileSync(path.join(dir, 'forged.jsonl.head'), `${file}.head`);
    assert.equal(verifyAuditFile(file).ok, true, 'the chain and head alone are consistent');
    const codesOf = verifyAuditFile(file, { anchor }).problems.map((p) => p.code);
    assert.ok(codesOf.length > 0 && codesOf.every((c) => c === 'anchor_mismatch'), codesOf.join());
    const out: string[] = [];
    assert.equal(
      verifyCli([file, '--anchor', anchor], {}, (l) => out.push(l)),
      1,
    );
    assert.match(out.join('\n'), /anchor_mismatch/);
  });

  it('without the key, detects a dropped last line (head recomputed) by its anchors', async () => {
    const { file, anchor } = await anchoredLog(4);
    const lines = fs.readFileSync(file, 'utf8').split('\n').slice(0, 3);
    fs.writeFileSync(file, lines.map((l) => l + '\n').join(''));
    fs.writeFileSync(`${file}.head`, JSON.stringify({ seq: 2, hash: sha256(lines[2]) }));
    assert.equal(verifyAuditFile(file).ok, true, 'the head alone is fooled');
    assert.deepEqual(
      verifyAuditFile(file, { anchor }).problems.map((p) => p.code),
      ['anchor_truncated'],
    );
    const out: string[] = [];
    assert.equal(
      verifyCli([file, '--anchor', anchor], {}, (l) => out.push(l)),
      1,
    );
  });

  it('with the key, refuses an anchor file that was edited', async () => {
    const { file, anchor } = await anchoredLog(2, KEY);
    assert.equal(
      verifyCli([file, '--key-env', 'K', '--anchor', anchor], { K: KEY }, () => undefined),
      0,
    );
    const a = JSON.parse(fs.readFileSync(anchor, 'utf8').trim().split('\n')[0]);
    fs.writeFileSync(anchor, JSON.stringify({ ...a, seq: 0, hash: sha256('x') }) + '\n');
    assert.deepEqual(
      verifyAuditFile(file, { signingKey: KEY, anchor }).problems.map((p) => p.code),
      ['bad_anchor'],
    );
  });
});

describe('policy v2 rules, each at its boundary', () => {
  const sandbox = sinon.createSandbox();
  let clock: sinon.SinonFakeTimers;
  const T0 = 1_700_000_000_000;
  beforeEach(() => {
    clock = sandbox.useFakeTimers({ now: T0, toFake: ['Date'] });
  });
  afterEach(() => sandbox.restore());
  const g = (policy: Policy) => new Guardrail(compile(policy), { key: KEY });

  describe('approval by a condition on parameters', () => {
    const guard = () =>
      g({
        actions: {
          set_valve: {
            params: {
              id: { type: 'string', required: true },
              position: { type: 'integer', min: 0, max: 100 },
            },
            approvalWhen: [{ param: 'position', op: '>', value: 90 }],
          },
        },
      });
    const valve = (params: Record<string, unknown>) => ({
      action: 'set_valve',
      params: { id: 'V1', ...params },
    });

    it('asks a person only when position > 90', () => {
      const gr = guard();
      assert.equal(gr.decide(valve({ position: 90 }), reader({})).outcome, 'approved');
      const d = gr.decide(valve({ position: 91 }), reader({}));
      assert.equal(d.outcome, 'needs_approval');
      assert.equal(d.summary, "set_valve needs a person's approval when position is above 90.");
      assert.equal(
        gr.decide(valve({ position: 91 }), reader({}), { approvalGranted: true }).outcome,
        'approved',
      );
    });

    it('asks a person when the parameter the condition reads is not given', () => {
      assert.equal(guard().decide(valve({}), reader({})).outcome, 'needs_approval');
    });
  });

  describe('rate limits keyed by a parameter, and sliding windows', () => {
    const guard = (limit: Record<string, unknown>) =>
      g({
        actions: {
          set_valve: {
            params: { id: { type: 'string', required: true } },
            rateLimits: [{ per: 'action', by: ['id'], ...limit } as never],
          },
        },
      });
    const valve = (id: string) => ({ action: 'set_valve', params: { id } });

    it('a window lets at most 5 through in any 60 s, where a 5/60 s bucket let 9 through in a minute', () => {
      const bucket = guard({ capacity: 5, refillPerSecond: 5 / 60 });
      const window = guard({ max: 5, windowSeconds: 60 });
      const count = (gr: Guardrail) => {
        let n = 0;
        for (let s = 0; s < 60; s++) {
          clock.setSystemTime(T0 + s * 1000);
          if (gr.decide(valve('V1'), reader({})).outcome === 'approved') n++;
        }
        return n;
      };
      const throughBucket = count(bucket);
      clock.setSystemTime(T0);
      const throughWindow = count(window);
      assert.ok(throughBucket > 5, `the bucket let ${throughBucket} through`);
      assert.equal(throughWindow, 5);
    });

    it('slides: each approval leaves the window exactly windowSeconds later', () => {
      const gr = guard({ max: 5, windowSeconds: 60 });
      for (let i = 0; i < 3; i++) assert.equal(gr.decide(valve('V1'), reader({})).outcome, 'approved');
      clock.tick(30_000);
      for (let i = 0; i < 2; i++) assert.equal(gr.decide(valve('V1'), reader({})).outcome, 'approved');
      const limited = gr.decide(valve('V1'), reader({}));
      assert.deepEqual(codes(limited), ['rate_limited']);
      assert.match(
        limited.summary,
        /set_valve for id "V1" reached \(at most 5 in any 60 s\); try again in 30 s/,
      );
      clock.tick(29_999);
      assert.equal(gr.decide(valve('V1'), reader({})).outcome, 'rejected');
      clock.tick(1);
      for (let i = 0; i < 3; i++) assert.equal(gr.decide(valve('V1'), reader({})).outcome, 'approved');
      assert.equal(gr.decide(valve('V1'), reader({})).outcome, 'rejected');
    });

    it('keeps one limit per valve id, and one per device', () => {
      const gr = guard({ max: 1, windowSeconds: 60 });
      assert.equal(gr.decide(valve('V1'), reader({})).outcome, 'approved');
      assert.equal(gr.decide(valve('V1'), reader({})).outcome, 'rejected');
      assert.equal(gr.decide(valve('V2'), reader({})).outcome, 'approved');
      const perDevice = g({
        actions: { beep: { rateLimits: [{ per: 'device', max: 1, windowSeconds: 10 }] } },
      });
      const beep = (device: string) => ({ action: 'beep', params: {}, device });
      assert.equal(perDevice.decide(beep('d1'), reader({})).outcome, 'approved');
      assert.equal(perDevice.decide(beep('d1'), reader({})).outcome, 'rejected');
      assert.equal(perDevice.decide(beep('d2'), reader({})).outcome, 'approved');
    });
  });

  describe('rate of change per key, and a bound for the first command after a deploy', () => {
    const policy: Policy = {
      actions: {
        set_joint: {
          params: {
            joint: { type: 'string', required: true },
            angle: { type: 'number', unit: 'deg', required: true },
          },
          rateOfChange: [{ param: 'angle', by: ['joint'], maxPerSecond: 10, first: { min: -5, max: 5 } }],
        },
      },
    };
    const joint = (j: string, angle: number) => ({ action: 'set_joint', params: { joint: j, angle } });

    it('bounds the first value after a deploy, then the change per joint', () => {
      const gr = g(policy);
      const first = gr.decide(joint('j1', 5.5), reader({}));
      assert.deepEqual(codes(first), ['rate_of_change']);
      assert.equal(
        first.summary,
        'set_joint: the first angle after a deploy must be between -5 and 5 deg, not 5.5 deg.',
      );
      assert.equal(gr.decide(joint('j1', 5), reader({})).outcome, 'approved');
      assert.equal(
        gr.decide(joint('j2', -5), reader({})).outcome,
        'approved',
        'each joint has its own first',
      );
      clock.tick(1000);
      assert.deepEqual(codes(gr.decide(joint('j1', 15.5), reader({}))), ['rate_of_change']);
      assert.equal(gr.decide(joint('j1', 15), reader({})).outcome, 'approved', 'j1 moves 10 in 1 s');
      assert.equal(gr.decide(joint('j2', 5), reader({})).outcome, 'approved', 'j2 is tracked apart');
    });

    it('applies the first-command bound again after a redeploy, whatever the saved history says', async () => {
      const state = LimitState.memory();
      const before = new Guardrail(compile(policy), { key: KEY, state });
      assert.equal(before.decide(joint('j1', 5), reader({})).outcome, 'approved');
      clock.tick(3_600_000);
      const after = new Guardrail(compile(policy), { key: KEY, state });
      assert.deepEqual(codes(after.decide(joint('j1', 40), reader({}))), ['rate_of_change']);
      assert.equal(after.decide(joint('j1', 4), reader({})).outcome, 'approved');
    });
  });

  describe('interlock readings with a time and a maximum age', () => {
    const guard = () =>
      g({
        actions: { move_to: { params: { zone: { type: 'string', required: true } } } },
        interlocks: [
          {
            id: 'zone-too-hot',
            require: {
              source: 'flow',
              path: 'zones.{params.zone}.temperature',
              op: '<=',
              value: 80,
              maxAgeSeconds: 60,
              timestampPath: 'zones.{params.zone}.ts',
            },
          },
        ],
      });
    const move = { action: 'move_to', params: { zone: 'A' } };
    const at = (ts: unknown, temperature = 40) => reader({ flow: { zones: { A: { temperature, ts } } } });

    it('accepts a reading 60 s old and refuses one older', () => {
      assert.equal(guard().decide(move, at(T0 - 60_000)).outcome, 'approved');
      const old = guard().decide(move, at(T0 - 60_001));
      assert.deepEqual(codes(old), ['interlock_stale']);
      assert.match(old.summary, /60\.001 s old; at most 60 s is accepted/);
      assert.deepEqual(codes(guard().decide(move, at(T0 - 3_600_000))), ['interlock_stale'], 'an hour old');
    });

    it('takes ISO times, refuses a reading with no time, and one dated more than 5 s ahead', () => {
      assert.equal(guard().decide(move, at(new Date(T0 - 1000).toISOString())).outcome, 'approved');
      assert.deepEqual(codes(guard().decide(move, at(undefined))), ['interlock_value_missing']);
      assert.deepEqual(codes(guard().decide(move, at('yesterday'))), ['interlock_value_invalid']);
      assert.equal(guard().decide(move, at(T0 + 5000)).outcome, 'approved');
      assert.deepEqual(codes(guard().decide(move, at(T0 + 5001))), ['interlock_value_invalid']);
    });

    it('still compares the value of a fresh reading', () => {
      assert.deepEqual(codes(guard().decide(move, at(T0, 81))), ['interlock']);
    });
  });

  describe('travel from the site map, and budgets over a mission', () => {
    const base = (extra: Partial<Policy> = {}): Policy => ({
      actions: {
        move_to: {
          params: { zone: { type: 'string', required: true } },
          moves: { to: 'zone' },
          costs: { travel: { travel: true } },
        },
      },
      siteMap: {
        unit: 'm',
        home: 'dock',
        zones: { dock: { x: 0, y: 0 }, A: { x: 30, y: 0 }, B: { x: 30, y: 40 } },
      },
      plan: { budgets: { travel: { max: 45, unit: 'm' } } },
      ...extra,
    });
    const move = (zone: string, extra: Record<string, unknown> = {}) => ({
      action: 'move_to',
      params: { zone },
      ...extra,
    });
    const plan = (...zones: string[]) => ({ steps: zones.map((z, i) => ({ id: `s${i}`, ...move(z) })) });

    it('measures travel between zones itself: 20 moves that would each declare 0 m are counted', () => {
      const gr = g(base({ plan: { maxSteps: 20, budgets: { travel: { max: 45, unit: 'm' } } } }));
      assert.equal(gr.decide(plan('A'), reader({})).outcome, 'approved', 'dock → A is 30 m');
      const gr2 = g(base({ plan: { maxSteps: 20, budgets: { travel: { max: 45, unit: 'm' } } } }));
      const back = gr2.decide(plan('A', 'dock'), reader({}));
      assert.equal(back.summary, 'The plan needs 60 m of travel; the budget is 45 m.');
      const zigzag = Array.from({ length: 20 }, (_, i) => (i % 2 ? 'dock' : 'A'));
      assert.deepEqual(codes(gr2.decide(plan(...zigzag), reader({}))), ['budget_exceeded']);
    });

    it('counts 45 m exactly as within a 45 m budget, and 50 m as over it', () => {
      const gr = g(
        base({
          siteMap: { home: 'dock', zones: { dock: { x: 0, y: 0 }, E: { x: 45, y: 0 }, F: { x: 0, y: 50 } } },
        }),
      );
      assert.equal(gr.decide(move('E'), reader({})).outcome, 'approved');
      const gr2 = g(
        base({
          siteMap: { home: 'dock', zones: { dock: { x: 0, y: 0 }, E: { x: 45, y: 0 }, F: { x: 0, y: 50 } } },
        }),
      );
      assert.deepEqual(codes(gr2.decide(move('F'), reader({}))), ['budget_exceeded']);
    });

    it('starts from where its last approved move took the device, or reads where it is', () => {
      const gr = g(base());
      assert.equal(gr.decide(move('A'), reader({})).outcome, 'approved');
      assert.deepEqual(codes(gr.decide(move('dock'), reader({}))), [], 'A → dock is 30 m');
      const live = g(
        base({ siteMap: { ...base().siteMap!, position: { source: 'msg', path: 'robot.zone' } } }),
      );
      assert.equal(
        live.decide(move('B'), reader({ msg: { robot: { zone: 'A' } } })).outcome,
        'approved',
        '40 m',
      );
      assert.deepEqual(codes(live.decide(move('B'), reader({ msg: { robot: { zone: 'dock' } } }))), [
        'budget_exceeded',
      ]);
      assert.deepEqual(codes(live.decide(move('B'), reader({}))), ['position_unknown']);
    });

    it('finds the shortest path on a graph, and refuses a zone the map does not have', () => {
      const gr = g(
        base({
          siteMap: {
            home: 'dock',
            paths: [
              { from: 'dock', to: 'A', distance: 20 },
              { from: 'A', to: 'B', distance: 20 },
              { from: 'dock', to: 'B', distance: 50 },
            ],
          },
        }),
      );
      assert.equal(gr.decide(plan('B'), reader({})).outcome, 'approved', 'dock → A → B is 40 m, not 50');
      assert.deepEqual(codes(gr.decide(move('Z'), reader({}))), ['travel_unknown']);
    });

    it('sums a mission budget over requests: three 40 m moves do not pass a 45 m budget', () => {
      const missionPolicy = base({
        siteMap: { home: 'dock', zones: { dock: { x: 0, y: 0 }, A: { x: 40, y: 0 } } },
        plan: { budgets: { travel: { max: 85, unit: 'm', per: 'mission' } } },
        mission: { source: 'msg', path: 'missionId' },
      });
      const gr = g(missionPolicy);
      const m1 = reader({ msg: { missionId: 'm-1' } });
      assert.equal(gr.decide(move('A'), m1).outcome, 'approved', '40 of 85 m');
      assert.equal(gr.decide(move('dock'), m1).outcome, 'approved', '80 of 85 m');
      const third = gr.decide(move('A'), m1);
      assert.deepEqual(codes(third), ['budget_exceeded']);
      assert.equal(
        third.summary,
        'The action needs 40 m of travel; mission "m-1" has used 80 m of its 85 m.',
      );
      assert.equal(
        gr.decide(move('A'), reader({ msg: { missionId: 'm-2' } })).outcome,
        'approved',
        'a new mission',
      );
      assert.deepEqual(codes(gr.decide(move('dock'), reader({}))), ['mission_unknown']);
    });

    it('does not charge a mission for a request it rejects or one waiting for a person', () => {
      const gr = g({
        ...base({
          plan: { budgets: { travel: { max: 45, unit: 'm', per: 'mission' } } },
          mission: { source: 'msg', path: 'missionId' },
        }),
        approval: { classes: ['motion'] },
        actions: {
          move_to: { ...base().actions.move_to, classes: ['motion'] },
        },
      });
      const m = reader({ msg: { missionId: 'm' } });
      assert.equal(gr.decide(move('A'), m).outcome, 'needs_approval');
      assert.equal(
        gr.decide(move('A'), m, { approvalGranted: true }).outcome,
        'approved',
        'still 30 of 45 m',
      );
    });
  });

  describe('the schema and the deploy check', () => {
    const invalid: Array<[string, unknown, RegExp]> = [
      [
        'a limit that is both a bucket and a window',
        {
          actions: {
            a: { rateLimits: [{ per: 'action', capacity: 1, refillPerSecond: 1, max: 1, windowSeconds: 1 }] },
          },
        },
        /rateLimits\[0\]: must match exactly one schema/,
      ],
      [
        'a limit keyed by a parameter the action lacks',
        { actions: { a: { rateLimits: [{ per: 'action', by: ['id'], max: 1, windowSeconds: 1 }] } } },
        /rateLimits\[0\]\.by: "id" is not a parameter of a/,
      ],
      [
        'an approval condition on an unknown parameter',
        { actions: { a: { approvalWhen: [{ param: 'p', op: '>', value: 1 }] } } },
        /approvalWhen\[0\]: "p" is not a parameter of a/,
      ],
      [
        'a move without a site map',
        { actions: { a: { params: { z: { type: 'string' } }, moves: { to: 'z' } } } },
        /no policy\.siteMap/,
      ],
      [
        'travel cost on an action that does not move',
        { actions: { a: { costs: { t: { travel: true } } } }, plan: { budgets: { t: { max: 1 } } } },
        /travel is counted only for an action with "moves"/,
      ],
      [
        'a mission budget without a mission',
        { actions: { a: {} }, plan: { budgets: { t: { max: 1, per: 'mission' } } } },
        /no policy\.mission/,
      ],
      [
        'a site map with zones and paths',
        {
          actions: { a: {} },
          siteMap: { zones: { A: { x: 0, y: 0 } }, paths: [{ from: 'A', to: 'B', distance: 1 }] },
        },
        /not both or neither/,
      ],
      [
        'a maximum age without the time path',
        {
          actions: { a: {} },
          interlocks: [
            { id: 'i', require: { source: 'msg', path: 'x', op: '<', value: 1, maxAgeSeconds: 5 } },
          ],
        },
        /must have property timestampPath when property maxAgeSeconds is present/,
      ],
      [
        'a first-command bound upside down',
        {
          actions: {
            a: {
              params: { v: { type: 'number' } },
              rateOfChange: [{ param: 'v', maxPerSecond: 1, first: { min: 2, max: 1 } }],
            },
          },
        },
        /first: min \(2\) is greater than max \(1\)/,
      ],
    ];
    for (const [name, policy, expected] of invalid) {
      it(`refuses ${name} with a clear error`, () => {
        const r = compilePolicy(policy);
        assert.equal(r.ok, false);
        assert.match(!r.ok ? r.errors.join('\n') : '', expected);
      });
    }

    it('still accepts a v1 policy as it was', () => {
      assert.equal(compilePolicy(CELL_POLICY).ok, true);
    });
  });
});

describe("example 02's policy: the robot's four limits", () => {
  const sandbox = sinon.createSandbox();
  beforeEach(() => sandbox.useFakeTimers({ now: 1_700_000_000_000, toFake: ['Date'] }));
  afterEach(() => sandbox.restore());

  const example = JSON.parse(
    fs.readFileSync(
      path.join(__dirname, '..', '..', 'examples', '02 - Inspection robot mission.json'),
      'utf8',
    ),
  ) as Array<{ type: string; policy?: string }>;
  const policy = compile(JSON.parse(example.find((n) => n.type === 'guardrail')!.policy!));
  const zones = { dock: 24, A: 46, B: 52, C: 86, D: 49 };
  const world = (robotZone = 'dock', missionId = 'm-1'): World => ({
    msg: { missionId, state: { robot: { zone: robotZone } } },
    flow: { zones: Object.fromEntries(Object.entries(zones).map(([z, t]) => [z, { temperature: t }])) },
  });
  const step = (id: string, action: string, params: Record<string, unknown>) => ({
    id,
    action,
    params,
    device: 'robot-1',
    reason: id,
  });
  const decide = (steps: unknown[], w = world()) =>
    new Guardrail(policy, { key: KEY }).decide({ steps }, reader(w));

  it('approves a plan within all four', () => {
    const d = decide([
      step('s1', 'move_to', { zone: 'A', speed: 1.5 }),
      step('s2', 'read_sensor', { sensor: 'temperature' }),
      step('s3', 'set_valve', { id: 'V1', position: 40, torque: 10 }),
      step('s4', 'move_to', { zone: 'B' }),
      step('s5', 'report', { summary: 'ok' }),
    ]);
    assert.equal(d.outcome, 'approved', d.summary);
  });

  it('rejects a move faster than 1.5 m/min', () => {
    const d = decide([step('s1', 'move_to', { zone: 'A', speed: 1.6 })]);
    assert.deepEqual(codes(d), ['param_range']);
    assert.match(d.summary, /speed 1\.6 m\/min is above the maximum of 1\.5 m\/min/);
  });

  it('rejects a plan that needs more than 30 min of battery, measured on the site map', () => {
    // dock → D → dock → B: 24 + 24 + 12 m at 1.5 m/min is 40 min.
    const d = decide([
      step('s1', 'move_to', { zone: 'D' }),
      step('s2', 'move_to', { zone: 'dock' }),
      step('s3', 'move_to', { zone: 'B' }),
    ]);
    assert.deepEqual(codes(d), ['budget_exceeded']);
    assert.match(d.summary, /needs 40\.00\d min of battery; mission "m-1" has used 0 min of its 30 min/);
  });

  it('counts the battery over the whole mission, not per plan', () => {
    const guard = new Guardrail(policy, { key: KEY });
    const first = guard.decide(
      { steps: [step('s1', 'move_to', { zone: 'D' }), step('s2', 'read_sensor', { sensor: 'gas' })] },
      reader(world()),
    );
    assert.equal(first.outcome, 'approved', '16.5 of 30 min');
    const back = guard.decide({ steps: [step('s3', 'move_to', { zone: 'dock' })] }, reader(world('D')));
    assert.deepEqual(codes(back), ['budget_exceeded'], '16.5 + 16 min is over 30');
    assert.match(back.summary, /mission "m-1" has used 16\.50\d min of its 30 min/);
    const nearer = guard.decide({ steps: [step('s3', 'move_to', { zone: 'B' })] }, reader(world('D')));
    assert.equal(nearer.outcome, 'approved', '16.5 + 8 min');
    const other = guard.decide(
      { steps: [step('s1', 'move_to', { zone: 'D' })] },
      reader(world('dock', 'm-2')),
    );
    assert.equal(other.outcome, 'approved', 'another mission has its own battery');
  });

  it('rejects a move into a zone above 80 °C', () => {
    const d = decide([step('s1', 'move_to', { zone: 'C' })]);
    assert.deepEqual(codes(d), ['interlock']);
    assert.equal(d.reasons[0].message, 'Zone C is 86 °C; the robot may not enter a zone above 80 °C.');
  });

  it('rejects a valve turned with more than 10 Nm', () => {
    const d = decide([step('s1', 'set_valve', { id: 'V2', position: 50, torque: 10.5 })]);
    assert.deepEqual(codes(d), ['param_range']);
    assert.match(d.summary, /torque 10\.5 Nm is above the maximum of 10 Nm/);
  });

  it('asks a person before a valve is opened past 90 %', () => {
    assert.equal(decide([step('s1', 'set_valve', { id: 'V2', position: 95 })]).outcome, 'needs_approval');
  });
});

describe("the node help's example policy", () => {
  it('is a valid policy that uses every v2 rule', () => {
    const help = fs.readFileSync(
      path.join(__dirname, '..', '..', 'nodes', 'locales', 'en-US', 'guardrail.html'),
      'utf8',
    );
    // The help's one whole policy (its other <pre> blocks are fragments, e.g. the form's JSON view).
    const policies = [...help.matchAll(/<pre>([\s\S]*?)<\/pre/g)].flatMap(([, text]) => {
      const pre = text.replace(/&lt;/g, '<').replace(/&gt;/g, '>');
      try {
        return [{ pre, policy: JSON.parse(pre) as unknown }];
      } catch {
        return [];
      }
    });
    assert.equal(policies.length, 1, 'one whole example policy in the help');
    const [{ pre, policy }] = policies;
    const r = compilePolicy(policy);
    assert.equal(r.ok, true, r.ok ? '' : r.errors.join('\n'));
    for (const rule of [
      'approvalWhen',
      '"by"',
      'windowSeconds',
      '"first"',
      'maxAgeSeconds',
      'siteMap',
      '"moves"',
      '"per": "mission"',
    ])
      assert.ok(pre.includes(rule), rule);
  });
});
