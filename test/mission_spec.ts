import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Node, NodeMessage } from 'node-red';
import actuatorOutNode from '../nodes/actuator-out';
import brokerNode from '../nodes/edge-mqtt-broker';
import guardrailNode from '../nodes/guardrail';
import missionNode from '../nodes/mission';
import { MissionControl, type StepRecord, classify, compileConfig } from '../lib/mission';
import { compilePolicy } from '../lib/guardrail/policy';
import { assemblePlan, completedSteps } from '../lib/llm/plan';
import { TestBroker } from './support/broker';
import { SimulatedDevice } from './support/device';
import { type Msg, collect, initHelper, stopServer, until } from './support/flow';

const helper = initHelper();

async function eventually(predicate: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const KEY = 'mission-test-key-0123456789abcdef';

const POLICY = {
  name: 'robot',
  version: '2',
  actions: {
    move_to: {
      params: { zone: { type: 'string', enum: ['A', 'B', 'C', 'dock'], required: true } },
      devices: ['robot-1'],
    },
    read_sensor: {
      params: { sensor: { type: 'string', enum: ['temperature', 'gas'], required: true } },
      devices: ['robot-1'],
    },
    report: { params: { summary: { type: 'string', required: true } }, devices: ['robot-1'] },
    // A person must approve it: the mission waits for the approval, then goes on.
    dock: { devices: ['robot-1'], classes: ['needs-person'] },
  },
  approval: { classes: ['needs-person'], timeoutSeconds: 600 },
  interlocks: [
    {
      id: 'zone-too-hot',
      when: { action: 'move_to' },
      require: { source: 'flow', path: 'zones.{params.zone}.temperature', op: '<=', value: 80 },
    },
  ],
};

const MONITOR = [
  {
    id: 'zone-hot',
    source: 'flow',
    path: 'zones.{params.zone}.temperature',
    op: '<=',
    value: 80,
    actions: ['move_to'],
    constraint: 'never into a zone above 80 °C',
  },
];

type Step = { action: string; params: Record<string, unknown>; reason: string };

/** What llm-plan makes of a plan request: the same plan shape (lib/llm/plan), on the same message. */
function planned(msg: Msg, steps: Step[]): Msg {
  const previous = msg.plan as { steps?: never[] } | undefined;
  const kept = completedSteps({ mission: msg.payload, previous, feedback: msg.feedback });
  msg.payload = assemblePlan(msg.payload, kept, steps, 'test', previous);
  return msg;
}
const move = (zone: string): Step => ({ action: 'move_to', params: { zone }, reason: `go to ${zone}` });
const read = (sensor: string): Step => ({ action: 'read_sensor', params: { sensor }, reason: 'measure' });

/**
 * mission → (plan) the test, standing in for llm-plan → mission → guardrail → mission →
 * actuator-out → robot (MQTT) → ack → mission, in one tab. `watch` names the extra helper node:
 * the actuator's acks, or the guardrail's approval requests.
 */
function missionFlow(o: {
  brokerUrl: string;
  outboxDir: string;
  mission: Record<string, unknown>;
  policy?: object;
  watch: 'acks' | 'waiting';
}) {
  const acks = o.watch === 'acks';
  return [
    { id: 'f1', type: 'tab' },
    {
      id: 'm',
      z: 'f1',
      type: 'mission',
      maxReplans: '2',
      monitor: JSON.stringify(MONITOR),
      ...o.mission,
      wires: [['planner'], ['g'], ['a1'], ['reports'], ['ignored']],
    },
    { id: 'planner', z: 'f1', type: 'helper' },
    {
      id: 'g',
      z: 'f1',
      type: 'guardrail',
      policySource: 'inline',
      policy: JSON.stringify(o.policy ?? POLICY),
      auditLog: 'audit.jsonl',
      wires: [['m'], acks ? ['m'] : ['m', 'waiting'], ['m']],
    },
    { id: 'b1', z: 'f1', type: 'edge-mqtt-broker', url: o.brokerUrl, protocolVersion: '4' },
    {
      id: 'a1',
      z: 'f1',
      type: 'actuator-out',
      broker: 'b1',
      topic: 'robots/{{device}}/{{action}}',
      ackTimeout: '5',
      retries: '0',
      deadline: '60',
      outboxDir: o.outboxDir,
      trustedPolicies: '',
      wires: [acks ? ['m', 'acks'] : ['m'], ['m']],
    },
    { id: 'reports', z: 'f1', type: 'helper' },
    { id: 'ignored', z: 'f1', type: 'helper' },
    { id: o.watch, z: 'f1', type: 'helper' },
  ];
}

describe('mission node: a signed plan executed step by step with device acks', function () {
  this.timeout(30_000);
  let dir: string;
  let broker: TestBroker;
  let device: SimulatedDevice | undefined;

  beforeEach(async function () {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mission-node-'));
    broker = await TestBroker.start();
    helper.settings({ userDir: dir });
    await new Promise<void>((resolve) => helper.startServer(() => resolve()));
  });
  afterEach(async function () {
    await helper.unload();
    await stopServer();
    helper.settings({ userDir: undefined });
    await device?.close();
    device = undefined;
    await broker.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  /**
   * mission → (plan) the test, standing in for llm-plan with the same plan shape → mission →
   * guardrail → mission → actuator-out → robot (MQTT) → ack → mission. The test plays only the model.
   */
  async function load(opts: {
    /** The plan for the n-th request; undefined holds the request (in `held`) unanswered. */
    plans: (request: Msg, n: number) => Step[] | undefined;
    config?: Record<string, unknown>;
    device?: Partial<ConstructorParameters<typeof SimulatedDevice>[0]>;
  }) {
    device = await SimulatedDevice.connect({ url: broker.url, topic: 'robots/#', ...opts.device });
    const nodes = missionFlow({
      brokerUrl: broker.url,
      outboxDir: path.join(dir, 'outbox'),
      mission: {
        device: 'robot-1',
        suggestOnly: 'report',
        constraints: '{"avoid_zones_above_c": 80}',
        ...opts.config,
      },
      watch: 'acks',
    });
    await helper.load(
      [missionNode, guardrailNode, brokerNode, actuatorOutNode],
      nodes as never,
      {
        g: { signingKey: KEY },
        a1: { signingKey: KEY },
      } as never,
    );
    const mission = helper.getNode('m') as Node;
    const planner = helper.getNode('planner') as Node;
    const requests: Msg[] = [];
    const held: Msg[] = [];
    // llm-plan's part: the same plan shape (lib/plan), on the same message, back to the mission.
    planner.on('input', (msg: Msg) => {
      requests.push(JSON.parse(JSON.stringify(msg)) as Msg);
      const steps = opts.plans(msg, requests.length);
      if (!steps) {
        held.push(msg);
        return;
      }
      mission.receive(planned(msg, steps) as NodeMessage);
    });
    const zones = (temps: Record<string, number>) =>
      mission
        .context()
        .flow.set(
          'zones',
          Object.fromEntries(Object.entries(temps).map(([z, t]) => [z, { temperature: t }])),
        );
    zones({ A: 40, B: 45, C: 50, dock: 30 });
    return {
      mission,
      requests,
      held,
      zones,
      reports: collect(helper.getNode('reports') as Node),
      ignored: collect(helper.getNode('ignored') as Node),
      acks: collect(helper.getNode('acks') as Node),
    };
  }

  it('executes each signed step only after the ack of the one before, and completes with a report', async function () {
    const acksAtExecution: number[] = [];
    const f: Awaited<ReturnType<typeof load>> = await load({
      plans: () => [move('A'), read('gas'), { action: 'report', params: { summary: 'ok' }, reason: 'tell' }],
      device: {
        refuse: () => {
          acksAtExecution.push(f.acks.messages.length);
          return undefined;
        },
      },
    });
    f.mission.receive({ payload: 'inspect zone A', missionId: 'mission-1' } as NodeMessage);
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as Record<string, never>;
    assert.equal(report.outcome, 'complete');
    assert.equal(report.mission, 'mission-1');
    assert.deepEqual(
      (
        report.steps as Array<{ id: string; action: string; status: string; reply: Record<string, unknown> }>
      ).map((s) => [s.id, s.action, s.status, { ok: s.reply.ok, result: s.reply.result }]),
      [
        ['s1', 'move_to', 'done', { ok: true, result: { done: 'move_to' } }],
        ['s2', 'read_sensor', 'done', { ok: true, result: { done: 'read_sensor' } }],
      ],
    );
    // The suggestion was neither checked nor sent.
    assert.deepEqual(
      (report.suggestions as Array<{ action: string }>).map((s) => s.action),
      ['report'],
    );
    assert.deepEqual(
      device!.executions.map((e) => e.action.action),
      ['move_to', 'read_sensor'],
    );
    // Step 2 reached the robot only after step 1's ack had come back.
    assert.deepEqual(acksAtExecution, [0, 1]);
    assert.deepEqual(f.requests[0].constraints, { avoid_zones_above_c: 80 });
    assert.equal(f.ignored.messages.length, 0);

    // The state over the admin API, as the editor shows it.
    const res = await helper.request().get('/edge-llm/mission/m').expect(200);
    assert.equal(res.body.outcome, 'complete');
    assert.equal(res.body.steps.length, 2);
    await helper.request().get('/edge-llm/mission/nope').expect(404);
    const list = await helper.request().get('/edge-llm/mission').expect(200);
    assert.deepEqual(list.body.deployed, ['m']);
  });

  it('a hot zone mid-mission: Monitor adjusts, the mission replans around it and completes', async function () {
    const f: Awaited<ReturnType<typeof load>> = await load({
      plans: (_msg, n) =>
        n === 1 ? [move('A'), move('B'), read('temperature')] : [move('C'), read('temperature')],
      device: {
        refuse: (action) => {
          // Zone B heats up while the robot drives to A.
          if (action.action === 'move_to' && action.params.zone === 'A') f.zones({ A: 40, B: 95, C: 50 });
          return undefined;
        },
      },
    });
    f.mission.receive({ payload: 'inspect B' } as NodeMessage);
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as Record<string, never>;
    assert.equal(report.outcome, 'complete', JSON.stringify(report));
    assert.equal(report.replans, 1);
    assert.deepEqual(
      device!.executions.map((e) => [e.action.action, e.action.params]),
      [
        ['move_to', { zone: 'A' }],
        ['move_to', { zone: 'C' }],
        ['read_sensor', { sensor: 'temperature' }],
      ],
    );
    const feedback = f.requests[1].feedback as {
      completed: string[];
      monitor: Array<Record<string, unknown>>;
    };
    assert.deepEqual(feedback.completed, ['s1']);
    assert.deepEqual(
      feedback.monitor.map((p) => [p.condition, p.step, p.value]),
      [['zone-hot', 's2', 95]],
    );
    // The replan kept the done step and numbered the new ones after every id used before.
    assert.deepEqual(
      (report.steps as Array<{ id: string; status: string }>).map((s) => [s.id, s.status]),
      [
        ['s1', 'done'],
        ['s2', 'skipped'],
        ['s3', 'skipped'],
        ['s4', 'done'],
        ['s5', 'done'],
      ],
    );
  });

  it('fails when the replan budget is spent: the guardrail refuses every plan into the hot zone', async function () {
    const f = await load({ plans: () => [move('B')] });
    f.zones({ A: 40, B: 95 });
    f.mission.receive({ payload: 'inspect B' } as NodeMessage);
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as Record<string, string>;
    assert.equal(report.outcome, 'failed');
    assert.match(report.reason, /did not approve the plan .* No replans left \(2 allowed\)/);
    assert.equal(f.requests.length, 3);
    const refused = (f.requests[1].feedback as { refused: Array<{ code: string }> }).refused;
    assert.deepEqual(
      refused.map((r) => r.code),
      ['interlock'],
    );
    assert.equal(device!.executions.length, 0);
  });

  it('with no replan left and "drop": skips the step the guardrail refused and completes the rest', async function () {
    const f = await load({
      plans: () => [move('A'), move('B'), read('gas')],
      config: { maxReplans: '0', whenSpent: 'drop' },
    });
    f.zones({ A: 40, B: 95 });
    f.mission.receive({ payload: 'inspect' } as NodeMessage);
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as Record<string, never>;
    assert.equal(report.outcome, 'complete');
    assert.deepEqual(
      (report.steps as Array<{ id: string; status: string; note?: string }>).map((s) => [s.id, s.status]),
      [
        ['s1', 'done'],
        ['s2', 'skipped'],
        ['s3', 'done'],
      ],
    );
    assert.match((report.steps as Array<{ note: string }>)[1].note, /^refused by the guardrail: .*95/);
    assert.deepEqual(
      device!.executions.map((e) => e.action.action),
      ['move_to', 'read_sensor'],
    );
  });

  it('aborts mid-step: the step sent stays "sent", and its late failure is dropped as stale', async function () {
    const f = await load({ plans: () => [move('A'), read('gas')], device: { silent: true } });
    f.mission.receive({ payload: 'inspect A', missionId: 'm-abort' } as NodeMessage);
    await until(() => device!.executions.length === 1, 10_000, 'the first step');
    f.mission.receive({ topic: 'abort', reason: 'operator stop' } as NodeMessage);
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as Record<string, never>;
    assert.equal(report.outcome, 'aborted');
    assert.equal(report.reason, 'operator stop');
    assert.deepEqual(
      (report.steps as Array<{ status: string }>).map((s) => s.status),
      ['sent', 'skipped'],
    );
    // actuator-out gives up on the ack (5 s) and reports the failure: the mission has ended.
    await f.ignored.until(1);
    assert.match(
      String(f.ignored.messages[0].ignored),
      /Stale: mission m-abort has already ended \(aborted\)/,
    );
    assert.equal(device!.executions.length, 1);
  });

  it('ignores a stale ack of an earlier mission', async function () {
    const f = await load({ plans: () => [move('A')] });
    f.mission.receive({ payload: 'first', missionId: 'first' } as NodeMessage);
    await f.reports.until(1);
    const oldAck = JSON.parse(JSON.stringify(f.acks.messages[0])) as Msg;
    assert.equal((oldAck.mission as { id: string }).id, 'first');
    f.mission.receive({ payload: 'second', missionId: 'second' } as NodeMessage);
    await f.reports.until(2);
    f.mission.receive(oldAck as NodeMessage);
    await f.ignored.until(1);
    assert.match(
      String(f.ignored.messages[0].ignored),
      /Stale: mission first is not the current one \(second\)/,
    );
    const res = await helper.request().get('/edge-llm/mission/m').expect(200);
    assert.equal(res.body.mission, 'second');
    assert.equal(res.body.outcome, 'complete');
    assert.equal(res.body.steps.length, 1);
  });
});

describe('mission node: approvals, devices from the goal, and a redeploy', function () {
  this.timeout(30_000);
  let dir: string;
  let broker: TestBroker;
  let device: SimulatedDevice | undefined;

  beforeEach(async function () {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mission-node-'));
    broker = await TestBroker.start();
    helper.settings({ userDir: dir });
    await new Promise<void>((resolve) => helper.startServer(() => resolve()));
  });
  afterEach(async function () {
    await helper.unload();
    await stopServer();
    helper.settings({ userDir: undefined });
    await device?.close();
    device = undefined;
    await broker.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  const flow = (config: Record<string, unknown>, policy: object = POLICY) =>
    missionFlow({
      brokerUrl: broker.url,
      outboxDir: path.join(dir, 'outbox'),
      mission: { device: '{goal.robot}', ...config },
      policy,
      watch: 'waiting',
    });

  /** Deploys the flow (again: a restart of Node-RED on the same user directory). */
  async function deploy(
    plans: (msg: Msg) => Step[] | undefined,
    config: Record<string, unknown> = {},
    policy?: object,
  ) {
    await helper.load(
      [missionNode, guardrailNode, brokerNode, actuatorOutNode],
      flow(config, policy) as never,
      { g: { signingKey: KEY }, a1: { signingKey: KEY } } as never,
    );
    const mission = helper.getNode('m') as Node;
    const held: Msg[] = [];
    (helper.getNode('planner') as Node).on('input', (msg: Msg) => {
      const steps = plans(msg);
      if (steps) mission.receive(planned(msg, steps) as NodeMessage);
      else held.push(msg);
    });
    mission
      .context()
      .flow.set('zones', { A: { temperature: 40 }, B: { temperature: 45 }, C: { temperature: 50 } });
    return {
      mission,
      held,
      guardrail: helper.getNode('g') as Node,
      reports: collect(helper.getNode('reports') as Node),
      ignored: collect(helper.getNode('ignored') as Node),
      waiting: collect(helper.getNode('waiting') as Node),
    };
  }
  const state = async () => (await helper.request().get('/edge-llm/mission/m').expect(200)).body;
  const dock: Step = { action: 'dock', params: {}, reason: 'charge' };

  it('waits for a person at a step that needs approval, then goes on when the mission node is told "approve"', async function () {
    device = await SimulatedDevice.connect({ url: broker.url, topic: 'robots/#' });
    const f = await deploy(() => [move('A'), dock]);
    f.mission.receive({
      payload: { robot: 'robot-1', task: 'inspect A, then dock' },
      missionId: 'm1',
    } as never);
    await f.waiting.until(1);
    await eventually(async () => (await state()).outcome === 'approval', 'the mission waiting');
    assert.equal(device.executions.length, 0, 'nothing runs before the approval');
    // A start-like message that is an approval: it goes to the guardrail's approval path.
    f.mission.receive({ topic: 'approve', approver: 'shift lead' } as NodeMessage);
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as {
      outcome: string;
      steps: Array<{ action: string; status: string }>;
      events: Array<{ event: string; detail?: string }>;
    };
    assert.equal(report.outcome, 'complete', JSON.stringify(report));
    // Each step's device came from the goal (llm-plan's steps name none).
    assert.deepEqual(
      device.executions.map((e) => [e.action.action, e.action.device]),
      [
        ['move_to', 'robot-1'],
        ['dock', 'robot-1'],
      ],
    );
    assert.ok(report.events.some((e) => e.event === 'approval'));
    assert.ok(report.events.some((e) => e.event === 'approved' && e.detail === 'shift lead'));
    // A second answer finds nothing waiting.
    f.mission.receive({ topic: 'approve' } as NodeMessage);
    await f.ignored.until(1);
    assert.match(String(f.ignored.messages[0].ignored), /No mission is waiting/);
  });

  it('an approval given to the guardrail itself releases the plan with msg.mission: the mission goes on', async function () {
    device = await SimulatedDevice.connect({ url: broker.url, topic: 'robots/#' });
    const f = await deploy(() => [dock]);
    f.mission.receive({ payload: { robot: 'robot-1' }, missionId: 'm2' } as never);
    await f.waiting.until(1);
    const approval = f.waiting.messages[0].approval as { id: string };
    await eventually(async () => (await state()).approval?.id === approval.id, 'the approval in the state');
    // As a dashboard would: straight to the guardrail, without msg.mission.
    f.guardrail.receive({ approval: { id: approval.id, decision: 'approve', approver: 'hmi' } } as never);
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as { outcome: string; mission: string };
    assert.equal(report.outcome, 'complete');
    assert.equal(report.mission, 'm2');
    assert.equal(device.executions.length, 1);
  });

  it('a rejected approval is a refusal: the mission replans, then fails when no replan is left', async function () {
    device = await SimulatedDevice.connect({ url: broker.url, topic: 'robots/#' });
    const f = await deploy(() => [dock], { maxReplans: '0' });
    f.mission.receive({ payload: { robot: 'robot-1' } } as never);
    await f.waiting.until(1);
    f.mission.receive({ topic: 'reject', approver: 'shift lead' } as NodeMessage);
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as { outcome: string; reason: string };
    assert.equal(report.outcome, 'failed');
    assert.match(report.reason, /approval_denied|did not approve/);
    assert.equal(device.executions.length, 0);
  });

  it('a step without the value its device template names goes unsigned: the guardrail refuses it', async function () {
    device = await SimulatedDevice.connect({ url: broker.url, topic: 'robots/#' });
    const f = await deploy(() => [move('A')], { maxReplans: '0' });
    f.mission.receive({ payload: 'no robot named here' } as NodeMessage);
    await f.reports.until(1);
    assert.equal((f.reports.messages[0].payload as { outcome: string }).outcome, 'failed');
    assert.equal(device.executions.length, 0);
  });

  it("a budget condition measured on the guardrail policy's site map: the battery left no longer covers the way, so the mission adjusts", async function () {
    const policy = {
      ...POLICY,
      actions: {
        ...POLICY.actions,
        move_to: {
          ...POLICY.actions.move_to,
          moves: { to: 'zone' },
          costs: { battery: { travel: true, factor: 1 } },
        },
      },
      siteMap: {
        unit: 'm',
        zones: { dock: { x: 0, y: 0 }, A: { x: 6, y: 0 }, B: { x: 12, y: 0 }, C: { x: 18, y: 0 } },
        home: 'dock',
      },
      plan: { budgets: { battery: { max: 100, unit: 'min' } } },
    };
    device = await SimulatedDevice.connect({
      url: broker.url,
      topic: 'robots/#',
      // The drive to A costs far more battery than the map says.
      refuse: (action) => {
        if (action.action === 'move_to') f.mission.context().flow.set('robot', { used: 15 });
        return undefined;
      },
    });
    let n = 0;
    const requests: Msg[] = [];
    const f: Awaited<ReturnType<typeof deploy>> = await deploy(
      (msg) => {
        requests.push(JSON.parse(JSON.stringify(msg)) as Msg);
        return ++n === 1 ? [move('A'), move('B')] : [read('gas')];
      },
      {
        guardrail: 'g',
        budgets: JSON.stringify([
          { id: 'battery-left', budget: 'battery', used: { source: 'flow', path: 'robot.used' }, max: 20 },
        ]),
      },
      policy,
    );
    f.mission.context().flow.set('robot', { used: 0 });
    f.mission.receive({ payload: { robot: 'robot-1' } } as never);
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as { outcome: string; replans: number };
    assert.equal(report.outcome, 'complete', JSON.stringify(report));
    assert.equal(report.replans, 1);
    // A to B is 6 m on the guardrail's map: 15 used + 6 needed is over the 20 allowed.
    const monitor = (requests[1].feedback as { monitor: Array<{ condition: string; value: unknown }> })
      .monitor;
    assert.deepEqual(
      monitor.map((p) => [p.condition, p.value]),
      [['battery-left', { need: 6, used: 15, max: 20 }]],
    );
    assert.deepEqual(
      device.executions.map((e) => e.action.action),
      ['move_to', 'read_sensor'],
    );
  });

  it('survives a restart mid-mission: the state is on disk, and the mission goes on from it', async function () {
    device = await SimulatedDevice.connect({
      url: broker.url,
      topic: 'robots/#',
      // Zone B heats up while the robot drives to A: Monitor asks for a new plan.
      refuse: (action) => {
        if (action.action === 'move_to' && action.params.zone === 'A')
          first.mission.context().flow.set('zones', { A: { temperature: 40 }, B: { temperature: 95 } });
        return undefined;
      },
    });
    let n = 0;
    const first = await deploy(() => (++n === 1 ? [move('A'), move('B')] : undefined));
    first.mission.receive({ payload: { robot: 'robot-1' }, missionId: 'm-restart' } as never);
    await until(() => first.held.length === 1, 10_000, 'the replan request');
    const request = JSON.parse(JSON.stringify(first.held[0])) as Msg;
    const file = path.join(dir, 'edge-llm', 'mission', 'm.json');
    const saved = JSON.parse(await fs.readFile(file, 'utf8')) as { state: { status: string } };
    assert.equal(saved.state.status, 'planning');

    await helper.unload();
    const second = await deploy(() => undefined);
    assert.equal((await state()).outcome, 'planning');
    // llm-plan's answer to the request made before the restart reaches the new node.
    second.mission.receive(planned(request, [move('C')]) as NodeMessage);
    await second.reports.until(1);
    const report = second.reports.messages[0].payload as {
      outcome: string;
      mission: string;
      steps: Array<{ id: string; status: string; params: { zone: string } }>;
    };
    assert.equal(report.outcome, 'complete', JSON.stringify(report));
    assert.equal(report.mission, 'm-restart');
    assert.deepEqual(
      report.steps.map((s) => [s.id, s.params.zone, s.status]),
      [
        ['s1', 'A', 'done'],
        ['s2', 'B', 'skipped'],
        ['s3', 'C', 'done'],
      ],
    );
    assert.deepEqual(
      device.executions.map((e) => e.action.params.zone),
      ['A', 'C'],
    );
  });

  it('survives a redeploy mid-mission (modified nodes): the new node takes the mission up from its file', async function () {
    device = await SimulatedDevice.connect({
      url: broker.url,
      topic: 'robots/#',
      refuse: (action) => {
        if (action.action === 'move_to' && action.params.zone === 'A')
          f.mission
            .context()
            .flow.set('zones', { A: { temperature: 40 }, B: { temperature: 95 }, C: { temperature: 50 } });
        return undefined;
      },
    });
    let n = 0;
    const f: Awaited<ReturnType<typeof deploy>> = await deploy(() =>
      ++n === 1 ? [move('A'), move('B')] : undefined,
    );
    f.mission.receive({ payload: { robot: 'robot-1' }, missionId: 'm-redeploy' } as never);
    await until(() => f.held.length === 1, 10_000, 'the replan request');
    const request = JSON.parse(JSON.stringify(f.held[0])) as Msg;
    // As the editor deploys a changed mission node: only that node is stopped and started again.
    await helper.setFlows(flow({ name: 'inspection, edited' }), 'nodes', {
      g: { signingKey: KEY },
      a1: { signingKey: KEY },
    });
    await until(() => helper.getNode('m') !== f.mission, 10_000, 'the mission node redeployed');
    const again = helper.getNode('m') as Node;
    assert.equal((await state()).outcome, 'planning');
    again.receive(planned(request, [move('C')]) as NodeMessage);
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as {
      outcome: string;
      mission: string;
      steps: Array<{ id: string; status: string }>;
    };
    assert.equal(report.outcome, 'complete', JSON.stringify(report));
    assert.equal(report.mission, 'm-redeploy');
    assert.deepEqual(
      report.steps.map((s) => [s.id, s.status]),
      [
        ['s1', 'done'],
        ['s2', 'skipped'],
        ['s3', 'done'],
      ],
    );
    assert.deepEqual(
      device.executions.map((e) => e.action.params.zone),
      ['A', 'C'],
    );
  });
});

describe('mission logic', function () {
  it('refuses a bad configuration with a sentence that names the field', function () {
    assert.throws(() => compileConfig({ maxReplans: -1 }), /Replans must be a whole number/);
    assert.throws(
      () => compileConfig({ monitor: [{ id: 'x', source: 'flow', path: 'a.{b}', op: '<', value: 1 }] }),
      /Monitor condition 1 \(x\): "\{b\}"/,
    );
    assert.throws(
      () => compileConfig({ monitor: [{ id: 'x', source: 'flow', path: 'a', op: '<', value: 'hot' }] }),
      /value must be a number/,
    );
    assert.throws(
      () => compileConfig({ monitor: [{ id: 'x', source: 'disk', path: 'a' }] }),
      /source must be/,
    );
  });

  it('drops a signed step that carries no mission id, and never starts a mission from it', function () {
    const control = new MissionControl(compileConfig({}));
    const input = classify({ payload: { action: { action: 'move_to', params: {} }, signature: {} } });
    assert.equal(input.kind, 'stray');
    const effects = control.handle(input, () => undefined, 0);
    assert.deepEqual(
      effects.map((e) => e.port),
      ['ignored'],
    );
    assert.equal(control.state, undefined);
  });

  it('a new start aborts the mission running, with a report', function () {
    const control = new MissionControl(compileConfig({}));
    control.handle({ kind: 'start', goal: 'one', id: 'one' }, () => undefined, 0);
    const effects = control.handle({ kind: 'start', goal: 'two', id: 'two' }, () => undefined, 5);
    assert.deepEqual(
      effects.map((e) => [e.port, (e.payload as { outcome?: string })?.outcome]),
      [
        ['report', 'aborted'],
        ['plan', undefined],
      ],
    );
    assert.equal(control.state!.id, 'two');
  });

  it("budget conditions measure the steps left on the guardrail policy's site map, from where the robot is", function () {
    const compiled = compilePolicy({
      name: 'map',
      version: '1',
      actions: {
        move_to: {
          params: { zone: { type: 'string', required: true } },
          moves: { to: 'zone' },
          costs: { battery: { travel: true, factor: 0.5 } },
        },
        read_sensor: { costs: { battery: 1 } },
      },
      siteMap: {
        unit: 'm',
        zones: { dock: { x: 0, y: 0 }, A: { x: 6, y: 0 }, B: { x: 12, y: 0 } },
        position: { source: 'msg', path: 'state.robot.zone' },
      },
      plan: { budgets: { battery: { max: 10, unit: 'min' } } },
    } as never);
    assert.ok(compiled.ok, JSON.stringify(compiled));
    const control = new MissionControl(
      compileConfig({
        budgets: [
          { id: 'battery-left', budget: 'battery', used: { source: 'msg', path: 'state.robot.used' } },
          { id: 'travel', budget: 'travel', max: 12 },
        ],
      }),
    );
    const live = { state: { robot: { zone: 'dock', used: 3 } } };
    control.policy = () => ({
      policy: compiled.policy,
      read: (_source, segments) => segments.reduce<unknown>((o, k) => (o as never)?.[k], live),
    });
    control.handle({ kind: 'start', goal: 'g', id: 'g' }, () => undefined, 0);
    const step = (id: string, action: string, params: Record<string, unknown>): StepRecord => ({
      id,
      action,
      params,
      status: 'pending',
    });
    const steps = [
      step('s1', 'move_to', { zone: 'A' }),
      step('s2', 'move_to', { zone: 'B' }),
      step('s3', 'read_sensor', {}),
    ];
    // dock → A → B: 12 m on the map, 6 min of battery, and 1 for the reading; 3 used: 10 of 10.
    assert.deepEqual(control.budgetsFor(steps), []);
    live.state.robot.used = 5;
    const problems = control.budgetsFor(steps);
    assert.deepEqual(
      problems.map((p) => [p.condition, p.step, p.value]),
      [['battery-left', 's3', { need: 7, used: 5, max: 10 }]],
    );
    assert.match(problems[0].message, /need 7 min of battery; 5 min of 10 min used/);
    // From B to the dock and back: 24 m, over the travel allowed and the battery left.
    live.state.robot.zone = 'B';
    assert.deepEqual(
      control
        .budgetsFor([step('s4', 'move_to', { zone: 'dock' }), step('s5', 'move_to', { zone: 'B' })])
        .map((p) => [p.condition, p.value]),
      [
        ['battery-left', { need: 12, used: 5, max: 10 }],
        ['travel', { need: 24, used: 0, max: 12 }],
      ],
    );
  });
});
