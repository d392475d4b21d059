import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Node, NodeMessage, NodeStatus } from 'node-red';
import * as sinon from 'sinon';
import type { SinonSpy } from 'sinon';
import actuatorOutNode from '../nodes/actuator-out';
import guardrailNode from '../nodes/guardrail';
import storeNode, { type KvSessionStoreNode } from '../nodes/kv-session-store';
import brokerNode from '../nodes/edge-mqtt-broker';
import { Outbox } from '../lib/device/outbox';
import { signAction, type Action } from '../lib/device/signing';
import { TestBroker } from './support/broker';
import { SimulatedDevice } from './support/device';
import { callsBy, collect, initHelper, stopServer, until } from './support/flow';

type SpiedNode = Node & { error: SinonSpy; status: SinonSpy; log: SinonSpy; warn: SinonSpy };

const helper = initHelper();

const KEY = 'shared-guardrail-key-0123456789abcdef';
/** The policy the tests' signatures name; trusted as a fixed hash unless a test runs a guardrail. */
const POLICY_HASH = 'a1'.repeat(32);
const NS = 'node-red-contrib-edge-llm/actuator-out:actuator-out';

function sign(action: Partial<Action> = {}, key = KEY) {
  return signAction(
    { action: 'set_valve', params: { open: true }, device: 'valve-1', ...action },
    { key, policyHash: POLICY_HASH, ttlMs: 60_000 },
  );
}

describe('actuator-out node', function () {
  let dir: string;
  let broker: TestBroker;
  const devices: SimulatedDevice[] = [];
  const sandbox = sinon.createSandbox();

  beforeEach(async function () {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'actuator-node-'));
    broker = await TestBroker.start();
    await new Promise<void>((resolve) => helper.startServer(() => resolve()));
  });
  afterEach(async function () {
    sandbox.restore();
    await helper.unload();
    await stopServer();
    for (const d of devices.splice(0)) await d.close();
    await broker.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function device(options: Partial<ConstructorParameters<typeof SimulatedDevice>[0]> = {}) {
    const d = await SimulatedDevice.connect({ url: broker.url, topic: 'plant/#', ...options });
    devices.push(d);
    return d;
  }

  function flow(overrides: Record<string, unknown> = {}) {
    return [
      {
        id: 'b1',
        type: 'edge-mqtt-broker',
        url: broker.url,
        protocolVersion: '4',
        reconnectPeriod: '0.1',
      },
      {
        id: 'a1',
        type: 'actuator-out',
        broker: 'b1',
        topic: 'plant/{{device}}/{{action}}',
        ackTimeout: '1',
        retries: '5',
        deadline: '60',
        outboxDir: path.join(dir, 'outbox'),
        trustedPolicies: POLICY_HASH,
        wires: [['acked'], ['failed']],
        ...overrides,
      },
      { id: 'acked', type: 'helper' },
      { id: 'failed', type: 'helper' },
    ];
  }
  const credentials = { a1: { signingKey: KEY } };

  async function load(overrides: Record<string, unknown> = {}, creds: object = credentials) {
    await helper.load([brokerNode, actuatorOutNode], flow(overrides) as never, creds as never);
    return {
      node: (helper.getNode as (id: string) => SpiedNode)('a1'),
      acked: collect((helper.getNode as (id: string) => SpiedNode)('acked')),
      failed: collect((helper.getNode as (id: string) => SpiedNode)('failed')),
    };
  }

  async function connected(node: SpiedNode) {
    while (!callsBy(node.status, node).some((c) => (c.args[0] as NodeStatus).fill === 'green')) {
      await once(node, 'call:status');
    }
  }

  it('stops cleanly when closed while its outbox is still opening', async function () {
    // A slow disk: the outbox opens only once the flows are being stopped and the broker node
    // has ended its connection.
    const flows: { broker?: { connection?: unknown } } = {};
    const open = Outbox.open.bind(Outbox);
    const opening = sandbox.stub(Outbox, 'open').callsFake(async (options) => {
      await until(() => flows.broker?.connection === undefined, 10_000, 'the broker closed');
      return open(options);
    });
    const { node } = await load();
    flows.broker = helper.getNode('b1') as unknown as { connection?: unknown };
    const errors = node.error; // unload restores the helper's spies; their calls stay
    await helper.unload();
    assert.equal(opening.callCount, 1);
    assert.deepEqual(
      callsBy(errors, node).map((c) => String(c.args[0])),
      [],
    );
  });

  it('sends a signed action and outputs the device reply on the first output, on the same message', async function () {
    const d = await device();
    const { node, acked, failed } = await load();
    const signed = sign();
    node.receive({ payload: signed, _msgid: 'm1' } as NodeMessage);
    await acked.until(1);

    const msg = acked.messages[0];
    assert.equal(msg._msgid, 'm1');
    assert.deepEqual(msg.payload, {
      idempotencyKey: d.executions[0].idempotencyKey,
      ok: true,
      result: { done: 'set_valve' },
    });
    assert.deepEqual((msg.command as { action: unknown }).action, signed.action);
    assert.equal((msg.command as { topic: string }).topic, 'plant/valve-1/set_valve');
    assert.equal(failed.messages.length, 0);
    assert.equal(d.executions.length, 1);
    await connected(node);
    assert.match(
      String(callsBy(node.status, node).at(-1)?.args[0].text),
      new RegExp(`${NS}.status.connected`),
    );
  });

  for (const [name, make, code] of [
    [
      'altered after signing',
      () => ({ ...sign(), action: { ...sign().action, params: { open: false } } }),
      'bad_signature',
    ],
    ['signed with another key', () => sign({}, 'not-the-key'), 'bad_signature'],
    ['without a signature', () => ({ action: sign().action }), 'missing_signature'],
  ] as const) {
    it(`refuses an action ${name}: the failed output only (no error to Catch), nothing sent`, async function () {
      const d = await device();
      const { node, acked, failed } = await load();
      const msg = { payload: make(), _msgid: 'bad' } as NodeMessage;
      node.receive(msg);
      await failed.until(1);

      assert.equal(failed.messages[0]._msgid, 'bad');
      assert.equal((failed.messages[0].failure as { code: string }).code, code);
      assert.deepEqual(callsBy(node.error, node), [], 'a refusal is not also an error');
      assert.equal(acked.messages.length, 0);
      assert.equal(d.deliveries.length, 0);
    });
  }

  it('gives each malformed input one outcome: the failed output, never also Catch', async function () {
    await device();
    const { node, failed } = await load();
    const inputs = [undefined, 'set the valve', 42, { action: { action: 'set_valve', params: {} } }];
    for (const [i, payload] of inputs.entries()) node.receive({ payload, _msgid: `m${i}` } as NodeMessage);
    await failed.until(inputs.length);
    assert.deepEqual(
      failed.messages.map((m) => [m._msgid, (m.failure as { code: string }).code]),
      [
        ['m0', 'missing_signature'],
        ['m1', 'malformed'],
        ['m2', 'malformed'],
        ['m3', 'missing_signature'],
      ],
    );
    assert.deepEqual(callsBy(node.error, node), []);
  });

  it('refuses commands beyond a full outbox on the failed output only (outbox_full)', async function () {
    await device();
    const { node, failed } = await load({ outboxSize: '1' });
    await connected(node);
    await broker.stop();
    for (let i = 0; i < 11; i++)
      node.receive({ payload: sign({ params: { step: i } }), _msgid: `m${i}` } as NodeMessage);
    await failed.until(10);
    assert.deepEqual(
      failed.messages.map((m) => (m.failure as { code: string }).code),
      Array(10).fill('outbox_full'),
    );
    assert.deepEqual(callsBy(node.error, node), []);
    await broker.start();
  });

  it('records the outcome as the mission feedback and moves the session from Execute to Monitor', async function () {
    await device();
    helper.settings({ userDir: dir });
    try {
      await helper.load(
        [brokerNode, actuatorOutNode, storeNode],
        [...flow({ sessions: 'store' }), { id: 'store', type: 'kv-session-store' }] as never,
        credentials as never,
      );
      const node = (helper.getNode as (id: string) => SpiedNode)('a1');
      const acked = collect((helper.getNode as (id: string) => SpiedNode)('acked'));
      const store = (helper.getNode('store') as unknown as KvSessionStoreNode).store!;
      for (const state of ['ReceiveCmd', 'Parse', 'Execute'] as const) store.transition('mission-3', state);
      node.receive({ payload: sign(), session: 'mission-3' } as NodeMessage);
      await acked.until(1);
      const mission = store.get('mission-3').mission;
      assert.equal(mission.state, 'Monitor');
      assert.deepEqual(mission.feedback, {
        action: 'set_valve',
        id: undefined,
        ok: true,
        reply: acked.messages[0].payload,
      });
    } finally {
      helper.settings({ userDir: undefined });
    }
  });

  it('refuses a replayed signature and one that has expired', async function () {
    const d = await device();
    const { node, acked, failed } = await load();
    const signed = sign();
    node.receive({ payload: signed } as NodeMessage);
    await acked.until(1);
    node.receive({ payload: structuredClone(signed) } as NodeMessage);
    node.receive({
      payload: signAction(signed.action, {
        key: KEY,
        policyHash: POLICY_HASH,
        ttlMs: 1,
        now: Date.now() - 1000,
      }),
    } as NodeMessage);
    await failed.until(2);
    assert.deepEqual(
      failed.messages.map((m) => (m.failure as { code: string }).code),
      ['replayed', 'expired'],
    );
    assert.equal(d.executions.length, 1);
  });

  it('holds 100 commands while the broker is down and delivers each once, in order, when it is back', async function () {
    this.timeout(60_000);
    const d = await device();
    const { node, acked, failed } = await load();
    await connected(node);
    await broker.stop();
    for (let i = 0; i < 100; i++)
      node.receive({ payload: sign({ params: { step: i } }), _msgid: `m${i}` } as NodeMessage);

    const back = d.resubscribed();
    await broker.start();
    await back;
    await acked.until(100);

    assert.equal(failed.messages.length, 0);
    assert.deepEqual(
      acked.messages.map((m) => m._msgid),
      Array.from({ length: 100 }, (_, i) => `m${i}`),
    );
    assert.deepEqual(
      d.executions.map((e) => e.action.params.step),
      Array.from({ length: 100 }, (_, i) => i),
    );
  });

  it('loses no command when its flows stop with a non-empty outbox and start again from the journal', async function () {
    const d = await device();
    await broker.stop();
    const first = await load();
    for (let i = 0; i < 3; i++)
      first.node.receive({ payload: sign({ params: { step: i } }), _msgid: `m${i}` } as NodeMessage);
    // Stopped once all three are in the outbox journal.
    const journal = path.join(dir, 'outbox', 'outbox.jsonl');
    const lines = async () =>
      (await fs.readFile(journal, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    while ((await lines()).length < 3) await new Promise((r) => setTimeout(r, 20));
    await helper.unload();

    const back = d.resubscribed();
    await broker.start();
    await back;
    const second = await load();
    await second.acked.until(3);
    assert.deepEqual(
      second.acked.messages.map((m) => [m._msgid, m.recovered]),
      [
        ['m0', true],
        ['m1', true],
        ['m2', true],
      ],
    );
    assert.deepEqual(
      d.executions.map((e) => e.action.params.step),
      [0, 1, 2],
    );
  });

  describe('trusts only the policy its guardrail holds now (stale_policy)', function () {
    const policy = (max: number) =>
      JSON.stringify({
        actions: { set_valve: { params: { nm: { type: 'number', min: 0, max, unit: 'Nm' } } } },
      });
    /** A guardrail and an actuator-out with one key; approved actions go to 'signed', not to the actuator. */
    async function loadWithGuardrail(max: number, overrides: Record<string, unknown> = {}) {
      helper.settings({ userDir: dir });
      const nodes = [
        ...flow({ trustedPolicies: '', ...overrides }),
        {
          id: 'g',
          type: 'guardrail',
          policySource: 'inline',
          policy: policy(max),
          auditLog: 'audit.jsonl',
          wires: [['signed'], [], ['refused']],
        },
        { id: 'signed', type: 'helper' },
        { id: 'refused', type: 'helper' },
      ];
      await helper.load(
        [brokerNode, actuatorOutNode, guardrailNode],
        nodes as never,
        {
          a1: { signingKey: KEY },
          g: { signingKey: KEY },
        } as never,
      );
      const get = (id: string) => helper.getNode(id) as unknown as SpiedNode;
      return {
        node: get('a1'),
        guardrail: get('g'),
        acked: collect(get('acked')),
        failed: collect(get('failed')),
        signed: collect(get('signed')),
      };
    }
    afterEach(() => helper.settings({ userDir: undefined }));
    const torque = (nm: number) => ({ payload: { action: 'set_valve', params: { nm }, device: 'valve-1' } });
    /** `set_valve nm 9` signed by a guardrail whose policy allows nm <= 10, then that flow stopped. */
    async function signedUnderTen(): Promise<unknown> {
      const before = await loadWithGuardrail(10);
      before.guardrail.receive(torque(9) as NodeMessage);
      await before.signed.until(1);
      const old = before.signed.messages[0].payload;
      await helper.unload();
      return old;
    }

    it('refuses nm 9 signed under nm <= 10 once the policy says nm <= 8, and executes what the new one signs', async function () {
      const d = await device();
      const old = await signedUnderTen();

      const after = await loadWithGuardrail(8);
      after.node.receive({ payload: old, _msgid: 'old' } as NodeMessage);
      await after.failed.until(1);
      const failure = after.failed.messages[0].failure as { code: string; message: string };
      assert.equal(failure.code, 'stale_policy');
      assert.match(failure.message, /no longer holds/);
      assert.equal(d.deliveries.length, 0);

      after.guardrail.receive(torque(7) as NodeMessage);
      await after.signed.until(1);
      after.node.receive({ payload: after.signed.messages[0].payload } as NodeMessage);
      await after.acked.until(1);
      assert.deepEqual(
        d.executions.map((e) => e.action.params.nm),
        [7],
      );
    });

    it('accepts the previous policy within the grace period the actuator is given', async function () {
      const d = await device();
      const old = await signedUnderTen();
      const after = await loadWithGuardrail(8, { policyGrace: '60' });
      after.node.receive({ payload: old } as NodeMessage);
      await after.acked.until(1);
      assert.deepEqual(
        d.executions.map((e) => e.action.params.nm),
        [9],
      );
    });

    it('accepts the same policy again after a redeploy that did not change it', async function () {
      const d = await device();
      const old = await signedUnderTen();
      const after = await loadWithGuardrail(10);
      after.node.receive({ payload: old } as NodeMessage);
      await after.acked.until(1);
      assert.equal(d.executions.length, 1);
    });

    it('trusts no policy while no guardrail with its key is running', async function () {
      const d = await device();
      const { node, failed } = await load({ trustedPolicies: '' });
      node.receive({ payload: sign() } as NodeMessage);
      await failed.until(1);
      assert.equal((failed.messages[0].failure as { code: string }).code, 'stale_policy');
      assert.match((failed.messages[0].failure as { message: string }).message, /no guardrail/);
      assert.equal(d.deliveries.length, 0);
    });

    it('refuses a policy that is not in its fixed list', async function () {
      await device();
      const { node, failed } = await load({ trustedPolicies: 'b2'.repeat(32) });
      node.receive({ payload: sign() } as NodeMessage);
      await failed.until(1);
      assert.equal((failed.messages[0].failure as { code: string }).code, 'stale_policy');
    });
  });

  it('in dry run logs what it would send and sends nothing', async function () {
    const d = await device();
    const { node, acked } = await load({ dryRun: true, broker: '' });
    node.receive({ payload: sign() } as NodeMessage);
    await acked.until(1);
    assert.equal((acked.messages[0].command as { dryRun: boolean }).dryRun, true);
    assert.ok(callsBy(node.log, node).some((c) => c.args[0] === `${NS}.log.dry-run`));
    assert.equal(d.deliveries.length, 0);
  });

  it('refuses a signing key shorter than 32 characters, as its dialog does', async function () {
    const { node } = await load({}, { a1: { signingKey: 'k'.repeat(31) } });
    assert.deepEqual(
      callsBy(node.error, node).map((c) => c.args[0]),
      [`${NS}.errors.short-key`],
    );
    assert.equal(callsBy(node.status, node)[0].args[0].fill, 'red');
  });

  it('shows a configuration error without throwing when the signing key is missing', async function () {
    const { node } = await load({}, {});
    assert.deepEqual(
      callsBy(node.error, node).map((c) => c.args[0]),
      [`${NS}.errors.no-key`],
    );
    assert.equal(callsBy(node.status, node)[0].args[0].fill, 'red');
    const failed = collect((helper.getNode as (id: string) => SpiedNode)('failed'));
    node.receive({ payload: sign(), _msgid: 'unconfigured' } as NodeMessage);
    while (callsBy(node.error, node).length < 2) await once(node, 'call:error');
    const call = callsBy(node.error, node)[1];
    assert.equal(
      (call.args[1] as NodeMessage)._msgid,
      'unconfigured',
      'the error reaches Catch with the original message',
    );
    assert.equal(failed.messages.length, 0, 'an error is not also a failed command');
  });
});
