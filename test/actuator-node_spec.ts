import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Node, NodeMessage, NodeStatus } from 'node-red';
import type { SinonSpy } from 'sinon';
import actuatorOutNode from '../nodes/actuator-out';
import storeNode, { type KvSessionStoreNode } from '../nodes/kv-session-store';
import brokerNode from '../nodes/edge-mqtt-broker';
import { signAction, type Action } from '../lib/signing';
import { TestBroker } from './support/broker';
import { SimulatedDevice } from './support/device';
import { callsBy, collect, initHelper, stopServer } from './support/flow';

type SpiedNode = Node & { error: SinonSpy; status: SinonSpy; log: SinonSpy; warn: SinonSpy };

const helper = initHelper();

const KEY = 'shared-guardrail-key';
const NS = 'node-red-contrib-edge-llm/actuator-out:actuator-out';

function sign(action: Partial<Action> = {}, key = KEY) {
  return signAction(
    { action: 'set_valve', params: { open: true }, device: 'valve-1', ...action },
    { key, policyHash: 'policy-1', ttlMs: 60_000 },
  );
}

describe('actuator-out node', function () {
  let dir: string;
  let broker: TestBroker;
  const devices: SimulatedDevice[] = [];

  beforeEach(async function () {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'actuator-node-'));
    broker = await TestBroker.start();
    await new Promise<void>((resolve) => helper.startServer(() => resolve()));
  });
  afterEach(async function () {
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
    it(`refuses an action ${name}: failed output and an error to Catch, nothing sent`, async function () {
      const d = await device();
      const { node, acked, failed } = await load();
      const msg = { payload: make(), _msgid: 'bad' } as NodeMessage;
      const errored = once(node, 'call:error');
      node.receive(msg);
      await failed.until(1);
      await errored;

      assert.equal((failed.messages[0].failure as { code: string }).code, code);
      const [call] = callsBy(node.error, node);
      assert.equal((call.args[1] as NodeMessage)._msgid, 'bad');
      assert.equal(acked.messages.length, 0);
      assert.equal(d.deliveries.length, 0);
    });
  }

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
      payload: signAction(signed.action, { key: KEY, policyHash: 'p', ttlMs: 1, now: Date.now() - 1000 }),
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

  it('loses no command across a restart of Node-RED with a non-empty outbox', async function () {
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

  it('in dry run logs what it would send and sends nothing', async function () {
    const d = await device();
    const { node, acked } = await load({ dryRun: true, broker: '' });
    node.receive({ payload: sign() } as NodeMessage);
    await acked.until(1);
    assert.equal((acked.messages[0].command as { dryRun: boolean }).dryRun, true);
    assert.ok(callsBy(node.log, node).some((c) => c.args[0] === `${NS}.log.dry-run`));
    assert.equal(d.deliveries.length, 0);
  });

  it('shows a configuration error without throwing when the signing key is missing', async function () {
    const { node } = await load({}, {});
    assert.deepEqual(
      callsBy(node.error, node).map((c) => c.args[0]),
      [`${NS}.errors.no-key`],
    );
    assert.equal(callsBy(node.status, node)[0].args[0].fill, 'red');
    const errored = once(node, 'call:error');
    node.receive({ payload: sign() } as NodeMessage);
    await errored;
  });
});
