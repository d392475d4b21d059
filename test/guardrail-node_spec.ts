import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Node, NodeMessage } from 'node-red';
import sinon, { type SinonSpy } from 'sinon';
import guardrailNode from '../nodes/guardrail';
import brokerNode from '../nodes/edge-mqtt-broker';
import { run as verifyRun } from '../lib/guardrail/verify-cli';
import { sha256 } from '../lib/guardrail/audit';
import { TestBroker } from './support/broker';
import { verifyAuditFile } from '../lib/guardrail/audit';
import { type SignedAction, verifySignedAction } from '../lib/device/signing';
import { callsBy, collect, coreNode, initHelper, stopServer } from './support/flow';

type SpiedNode = Node & { error: SinonSpy; status: SinonSpy; warn: SinonSpy; send: SinonSpy };
type Msg = NodeMessage & Record<string, unknown>;

const helper = initHelper();
const catchNode = coreNode('common/25-catch.js');
const getNode = (id: string) => helper.getNode(id) as unknown as SpiedNode;

const NS = 'node-red-contrib-edge-llm/guardrail:guardrail';
const KEY = 'guardrail-node-test-key-0123456789';

const POLICY = {
  name: 'node test',
  actions: {
    set_torque: { params: { torque: { type: 'number', min: 0, max: 10, unit: 'Nm', required: true } } },
    open_valve: { params: { valve: { type: 'string', required: true } } },
    wipe_memory: { params: {}, classes: ['destructive'] },
  },
  interlocks: [
    {
      id: 'line-pressure',
      when: { action: 'open_valve' },
      require: { source: 'flow', path: 'line.pressure', op: '<', value: 6 },
    },
  ],
  approval: { classes: ['destructive'], timeoutSeconds: 60 },
};

describe('guardrail node', function () {
  const sandbox = sinon.createSandbox();
  let dir: string;

  beforeEach(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardrail-node-'));
    // The node keeps its limits and policy history in the user folder: a fresh one per test.
    helper.settings({ userDir: dir });
    await helper.startServer();
  });
  afterEach(async function () {
    sandbox.restore();
    await helper.unload();
    await stopServer();
    helper.settings({ userDir: undefined });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function flow(config: Record<string, unknown> = {}) {
    return [
      { id: 'f1', type: 'tab' },
      {
        id: 'g',
        z: 'f1',
        type: 'guardrail',
        name: 'guard',
        policySource: 'inline',
        policy: JSON.stringify(POLICY),
        policyFile: '',
        auditLog: path.join(dir, 'audit.jsonl'),
        wires: [['ok'], ['wait'], ['no']],
        ...config,
      },
      { id: 'ok', z: 'f1', type: 'helper' },
      { id: 'wait', z: 'f1', type: 'helper' },
      { id: 'no', z: 'f1', type: 'helper' },
      { id: 'c', z: 'f1', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', z: 'f1', type: 'helper' },
    ];
  }

  async function start(
    config: Record<string, unknown> = {},
    credentials: object = { g: { signingKey: KEY } },
  ) {
    await helper.load([guardrailNode, catchNode], flow(config), credentials);
    const g = getNode('g');
    return {
      g,
      ok: collect(getNode('ok')),
      wait: collect(getNode('wait')),
      no: collect(getNode('no')),
      caught: collect(getNode('caught')),
    };
  }

  it('approves an allowed action and sends it signed on the first output', async function () {
    const { g, ok } = await start();
    g.receive({
      payload: { action: 'set_torque', params: { torque: 4 }, device: 'arm-1' },
      topic: 'cell-3',
    } as Msg);
    await ok.until(1);
    const msg = ok.messages[0];
    assert.equal(msg.topic, 'cell-3', 'the message is reused');
    const signed = msg.payload as SignedAction;
    assert.deepEqual(signed.action, { action: 'set_torque', params: { torque: 4 }, device: 'arm-1' });
    assert.deepEqual(verifySignedAction(signed, { key: KEY }), { ok: true });
    const info = msg.guardrail as { decision: string; policyHash: string; auditSeq: number };
    assert.equal(info.decision, 'approved');
    assert.equal(info.policyHash, signed.signature.policyHash);
    assert.equal(info.auditSeq, 0);
    const status = callsBy(g.status, g).at(-1)!.args[0];
    assert.equal(status.fill, 'green');
    assert.equal(status.text, `${NS}.status.summary`);
    assert.equal(verifyAuditFile(path.join(dir, 'audit.jsonl'), { signingKey: KEY }).entries, 1);
  });

  it('approves an action built in a function node (objects from its own vm context)', async function () {
    await helper.load(
      [guardrailNode, catchNode, coreNode('function/10-function.js')],
      [
        ...flow(),
        {
          id: 'fn',
          z: 'f1',
          type: 'function',
          // Sent without Node-RED's clone (as a second message would be), the objects keep the sandbox's prototypes.
          func: "msg.payload = { action: 'set_torque', params: { torque: 2 } };\nnode.send(msg, false);\nreturn null;",
          outputs: 1,
          wires: [['g']],
        },
      ] as never,
      { g: { signingKey: KEY } },
    );
    const ok = collect(getNode('ok'));
    const no = collect(getNode('no'));
    getNode('fn').receive({ payload: 'go' } as Msg);
    await Promise.race([ok.until(1), no.until(1)]);
    assert.deepEqual(no.messages, [], JSON.stringify(no.messages[0]?.guardrail));
    const signed = ok.messages[0].payload as SignedAction;
    assert.deepEqual(verifySignedAction(signed, { key: KEY }), { ok: true });
  });

  it('sends each step of an approved plan as its own message, in sequence', async function () {
    const { g, ok } = await start();
    const steps = [1, 2, 3].map((torque) => ({
      id: `s${torque}`,
      action: 'set_torque',
      params: { torque },
      reason: 'ramp',
    }));
    g.receive({ payload: { goal: 'ramp up', steps } } as Msg);
    await ok.until(3);
    const parts = ok.messages.map(
      (m) => m.parts as { id: string; index: number; count: number; type: string },
    );
    assert.deepEqual(
      parts.map((p) => [p.index, p.count, p.type]),
      [
        [0, 3, 'array'],
        [1, 3, 'array'],
        [2, 3, 'array'],
      ],
    );
    assert.equal(new Set(parts.map((p) => p.id)).size, 1);
    assert.deepEqual(
      ok.messages.map((m) => (m.payload as SignedAction).action.id),
      ['s1', 's2', 's3'],
    );
    for (const m of ok.messages) assert.deepEqual(verifySignedAction(m.payload, { key: KEY }), { ok: true });
  });

  it('rejects on the third output with reason codes and a sentence, the payload unchanged', async function () {
    const { g, no, ok } = await start();
    const payload = { action: 'set_torque', params: { torque: '40' } };
    g.receive({ payload } as Msg);
    await no.until(1);
    const msg = no.messages[0];
    assert.deepEqual(msg.payload, payload);
    const info = msg.guardrail as { reasons: Array<{ code: string }>; message: string };
    assert.deepEqual(
      info.reasons.map((r) => r.code),
      ['param_type'],
    );
    assert.match(info.message, /torque must be a number/);
    assert.equal(ok.messages.length, 0);
    assert.equal(callsBy(g.status, g).at(-1)!.args[0].fill, 'red');
  });

  it('reads interlock values from flow context, failing closed when they are missing', async function () {
    const { g, ok, no } = await start();
    const open = { action: 'open_valve', params: { valve: 'V1' } };
    g.receive({ payload: open } as Msg);
    await no.until(1);
    assert.equal(
      (no.messages[0].guardrail as { reasons: Array<{ code: string }> }).reasons[0].code,
      'interlock_value_missing',
    );
    g.context().flow.set('line', { pressure: 7 });
    g.receive({ payload: open } as Msg);
    await no.until(2);
    assert.equal(
      (no.messages[1].guardrail as { reasons: Array<{ code: string }> }).reasons[0].code,
      'interlock',
    );
    g.context().flow.set('line', { pressure: 2 });
    g.receive({ payload: open } as Msg);
    await ok.until(1);
  });

  it('holds an action that needs approval until an approver approves it', async function () {
    const { g, ok, wait } = await start();
    g.receive({ payload: { action: 'wipe_memory', params: {} } } as Msg);
    await wait.until(1);
    const approval = wait.messages[0].approval as { id: string; expires: number };
    assert.match(approval.id, /^[0-9a-f]{32}$/);
    assert.equal(ok.messages.length, 0);
    g.receive({ approval: { id: approval.id, decision: 'approve', approver: 'ana' } } as unknown as Msg);
    await ok.until(1);
    const signed = ok.messages[0].payload as SignedAction;
    assert.equal(signed.action.action, 'wipe_memory');
    assert.deepEqual(verifySignedAction(signed, { key: KEY }), { ok: true });
    const lines = fs
      .readFileSync(path.join(dir, 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => [l.event, l.decision, l.approver]),
      [
        ['request', 'needs_approval', undefined],
        ['approval', 'approved', 'ana'],
      ],
    );
  });

  it('rejects a denied approval, an expired one and one used twice', async function () {
    const { g, wait, no, ok } = await start();
    const clock = sandbox.useFakeTimers({ now: Date.now(), toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    g.receive({ payload: { action: 'wipe_memory', params: {} } } as Msg);
    g.receive({ payload: { action: 'wipe_memory', params: {} } } as Msg);
    await wait.until(2);
    const [first, second] = wait.messages.map((m) => (m.approval as { id: string }).id);
    g.receive({ approval: { id: first, decision: 'reject', approver: 'ben' } } as unknown as Msg);
    await no.until(1);
    assert.equal((no.messages[0].guardrail as { message: string }).message, `${NS}.reasons.approval-denied`);
    assert.deepEqual(no.messages[0].payload, { action: 'wipe_memory', params: {} });

    clock.tick(60_000);
    await no.until(2);
    const expired = no.messages[1];
    assert.equal((expired.approval as { id: string }).id, second);
    assert.equal(
      (expired.guardrail as { reasons: Array<{ code: string }> }).reasons[0].code,
      'approval_expired',
    );

    g.receive({ approval: { id: second, decision: 'approve' } } as unknown as Msg);
    g.receive({ approval: { id: first, decision: 'approve' } } as unknown as Msg);
    await no.until(4);
    assert.deepEqual(
      no.messages.slice(2).map((m) => (m.guardrail as { reasons: Array<{ code: string }> }).reasons[0].code),
      ['approval_unknown', 'approval_unknown'],
    );
    assert.equal(ok.messages.length, 0);
    assert.equal(verifyAuditFile(path.join(dir, 'audit.jsonl'), { signingKey: KEY }).ok, true);
  });

  it('shows a red status and an error for a bad policy, and sends messages to Catch with the original msg', async function () {
    const { g, caught, ok, no } = await start({
      policy: '{"actions": {"a": {"params": {"x": {"type": "float"}}}}}',
    });
    assert.equal(callsBy(g.status, g).at(-1)!.args[0].fill, 'red');
    assert.deepEqual(
      callsBy(g.error, g).map((c) => c.args[0]),
      [`${NS}.errors.bad-policy`],
    );
    g.receive({ payload: { action: 'a', params: {} }, topic: 'original' } as Msg);
    await caught.until(1);
    assert.equal(caught.messages[0].topic, 'original');
    assert.match((caught.messages[0].error as { message: string }).message, /guardrail\.errors\.bad-policy$/);
    assert.equal(ok.messages.length + no.messages.length, 0);
  });

  it('refuses to start with a signing key shorter than 32 characters', async function () {
    const { g } = await start({}, { g: { signingKey: 'k'.repeat(31) } });
    assert.deepEqual(
      callsBy(g.error, g).map((c) => c.args[0]),
      [`${NS}.errors.short-key`],
    );
  });

  it('refuses to start without a signing key', async function () {
    const { g } = await start({}, {});
    assert.deepEqual(
      callsBy(g.error, g).map((c) => c.args[0]),
      [`${NS}.errors.no-key`],
    );
  });

  it('loads a policy file and writes the audit log relative to the user folder', async function () {
    helper.settings({ userDir: dir });
    fs.mkdirSync(path.join(dir, 'policies'));
    fs.writeFileSync(path.join(dir, 'policies', 'cell.json'), JSON.stringify(POLICY, null, 2));
    const { g, ok } = await start({
      policySource: 'file',
      policy: '',
      policyFile: 'policies/cell.json',
      auditLog: 'logs/g.jsonl',
    });
    g.receive({ payload: { action: 'set_torque', params: { torque: 1 } } } as Msg);
    await ok.until(1);
    assert.equal(verifyAuditFile(path.join(dir, 'logs', 'g.jsonl'), { signingKey: KEY }).entries, 1);
  });

  it('approves nothing when the audit log cannot be written, and reports the error to Catch', async function () {
    const { g, caught, ok } = await start();
    fs.mkdirSync(path.join(dir, 'audit.jsonl.head.tmp'));
    g.receive({ payload: { action: 'set_torque', params: { torque: 1 } }, topic: 'original' } as Msg);
    await caught.until(1);
    assert.equal(caught.messages[0].topic, 'original');
    assert.equal(ok.messages.length, 0);
    g.receive({ payload: { action: 'set_torque', params: { torque: 1 } } } as Msg);
    await caught.until(2);
    assert.equal(ok.messages.length, 0);
  });

  it('keeps its rate limits across a redeploy: the 6th valve command within a minute is refused', async function () {
    helper.settings({ userDir: dir });
    const policy = JSON.stringify({
      actions: {
        set_valve: {
          params: { id: { type: 'string', required: true } },
          rateLimits: [{ per: 'action', by: ['id'], max: 5, windowSeconds: 60 }],
        },
      },
    });
    const config = {
      policy,
      auditLog: 'audit.jsonl',
      anchorFile: 'anchors/audit.anchor.jsonl',
      anchorInterval: '0',
    };
    const first = await start(config);
    for (let i = 0; i < 5; i++)
      first.g.receive({ payload: { action: 'set_valve', params: { id: 'V1' } } } as Msg);
    await first.ok.until(5);
    await helper.unload();

    const second = await start(config);
    second.g.receive({ payload: { action: 'set_valve', params: { id: 'V1' } } } as Msg);
    await second.no.until(1);
    const info = second.no.messages[0].guardrail as { reasons: Array<{ code: string }> };
    assert.deepEqual(
      info.reasons.map((r) => r.code),
      ['rate_limited'],
    );
    await helper.unload();
    const file = path.join(dir, 'audit.jsonl');
    const verdict = verifyAuditFile(file, {
      signingKey: KEY,
      anchor: path.join(dir, 'anchors', 'audit.anchor.jsonl'),
    });
    assert.deepEqual(verdict.problems, []);
    assert.equal(verdict.entries, 6);
  });

  it('gives the editor the policy schema and the same check as a deploy', async function () {
    await start();
    const schema = await helper.request().get('/edge-llm/guardrail/policy-schema').expect(200);
    assert.deepEqual(schema.body.required, ['actions']);
    assert.ok(schema.body.properties.siteMap, 'the v2 rules are in it');
    const good = await helper
      .request()
      .post('/edge-llm/guardrail/check-policy')
      .send({ policy: JSON.stringify(POLICY) })
      .expect(200);
    assert.equal(good.body.ok, true);
    assert.match(good.body.policyHash, /^[0-9a-f]{64}$/);
    const bad = await helper
      .request()
      .post('/edge-llm/guardrail/check-policy')
      .send({
        policy:
          '{"actions": {"a": {"rateLimits": [{"per": "action", "by": ["id"], "max": 1, "windowSeconds": 1}]}}}',
      })
      .expect(200);
    assert.deepEqual(bad.body, {
      ok: false,
      errors: ['policy.actions.a.rateLimits[0].by: "id" is not a parameter of a'],
    });
  });

  it('publishes the head as a retained MQTT anchor that audit-verify --anchor-mqtt checks', async function () {
    const mqttBroker = await TestBroker.start();
    try {
      await helper.load(
        [guardrailNode, catchNode, brokerNode],
        [
          ...flow({ anchorBroker: 'mb', anchorTopic: 'plant/audit/anchor', anchorInterval: '0' }),
          {
            id: 'mb',
            type: 'edge-mqtt-broker',
            url: mqttBroker.url,
            protocolVersion: '4',
            reconnectPeriod: '0.1',
          },
        ] as never,
        { g: { signingKey: KEY } },
      );
      const g = getNode('g');
      const no = collect(getNode('no'));
      const ok = collect(getNode('ok'));
      const link = (helper.getNode('mb') as unknown as { connection: { ready: boolean } }).connection;
      while (!link.ready) await new Promise((r) => setTimeout(r, 20));
      g.receive({ payload: { action: 'set_torque', params: { torque: 40 } } } as Msg);
      g.receive({ payload: { action: 'set_torque', params: { torque: 4 } } } as Msg);
      await no.until(1);
      await ok.until(1);
      // Both lines are durable and their batch's anchor published; let the broker take it.
      await new Promise((r) => setTimeout(r, 100));
      await helper.unload();
      const file = path.join(dir, 'audit.jsonl');
      const out: string[] = [];
      const args = [file, '--anchor-mqtt', mqttBroker.url, '--anchor-topic', 'plant/audit/anchor'];
      assert.equal(await verifyRun(args, {}, (l) => out.push(l)), 0, out.join('\n'));
      assert.match(out.join('\n'), /anchors match/);
      // Without the key: the last line dropped and the head recomputed. The retained anchor shows it.
      const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
      fs.writeFileSync(
        file,
        lines
          .slice(0, -1)
          .map((l) => l + '\n')
          .join(''),
      );
      fs.writeFileSync(
        `${file}.head`,
        JSON.stringify({ seq: lines.length - 2, hash: sha256(lines.at(-2)!) }),
      );
      const after: string[] = [];
      assert.equal(await verifyRun(args, {}, (l) => after.push(l)), 1);
      assert.match(after.join('\n'), /anchor_truncated/);
    } finally {
      await mqttBroker.stop();
    }
  });

  it('refuses to start on an audit log that was tampered with', async function () {
    const file = path.join(dir, 'audit.jsonl');
    fs.writeFileSync(file, '{"seq":0}\n');
    const { g } = await start();
    assert.deepEqual(
      callsBy(g.error, g).map((c) => c.args[0]),
      [`${NS}.errors.audit`],
    );
    assert.equal(callsBy(g.status, g).at(-1)!.args[0].fill, 'red');
  });
});
