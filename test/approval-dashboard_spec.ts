/**
 * The approval screen of example 01 (Dashboard 2, /dashboard/approvals) in Chromium, on a real
 * Node-RED running the example with its real guardrail, mission and actuator-out, a mosquitto broker
 * and the demo's simulated packaging line. The test stands in only for the model: the ticket is
 * injected where llm-parse's answer enters, and llm-plan is a change node with a fixed plan (reduce
 * the speed of the measured pump, stop the line), whose line stop needs a person.
 */
import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { demoCredentials, forDemo, randomDemoKeys, type FlowNode } from '../examples/demo/flows';
import { PackagingLine } from '../examples/demo/simulators';
import { CHROMIUM, CHROMIUM_ARGS } from './support/browser';
import { MosquittoBroker } from './support/broker';
import { REPO_ROOT, TEST_MODELS, testModel, testModelsDir } from './support/models';
import { NodeRedProcess, eventually } from './support/node-red-process';
import { collect, coreNode, initHelper, stopServer, until, type Msg } from './support/flow';

const EXAMPLE = path.join(REPO_ROOT, 'examples', '01 - Predictive maintenance.json');
const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts', 'dashboard');
const MISSION = '5a1c0e3b7d2f4a60';
const TICKET = 'MT-20260105060000-pump-2';

/** llm-plan's plan, as a change node makes it: fresh step ids on every replan. */
const STAND_IN_PLAN = `(
  $n := $count(payload.steps) + $count(plan.steps);
  {
    "mission": payload,
    "catalogueHash": "test stand-in",
    "steps": [
      { "id": "s" & ($n + 1), "action": "reduce_speed", "params": { "percent": 20 },
        "reason": "High vibration: run slower until it is inspected.", "status": "pending" },
      { "id": "s" & ($n + 2), "action": "stop_line", "params": {},
        "reason": "Critical bearing fault: stop before it seizes.", "status": "pending" }
    ]
  }
)`;

/** What the detector and llm-parse leave on the message (as in example-maintenance_spec). */
const ALARM = {
  payload: {
    asset: 'pump-2',
    symptom: 'Grinding at the drive end.',
    severity: 'high',
    suggested_spare_parts: [],
  },
  llm: { model: 'stand-in' },
  anomaly: {
    asset: 'pump-2',
    line: 'line1',
    z: 12.5,
    severity: 'critical',
    at: '2026-01-05T06:00:00.000Z',
    ticket: TICKET,
    summary: 'Vibration RMS 9.1 mm/s at full speed, z = 12.5 over its baseline.',
  },
};

interface AuditLine {
  event: string;
  decision: string;
  approvalId?: string;
  approver?: string;
}

describe('the approval screen of example 01 (Dashboard 2) in Chromium', function () {
  this.timeout(180_000);
  let broker: MosquittoBroker;
  let line: PackagingLine;
  let red: NodeRedProcess;
  let flows: FlowNode[];
  let context: BrowserContext;
  let profile: string;
  let page: Page;
  const errors: string[] = [];

  const byName = (type: string, name: string): FlowNode => {
    const node = flows.find((n) => n.type === type && n.name === name);
    assert.ok(node, `${type} "${name}" in example 01`);
    return node;
  };
  const inject = async (id: string, props?: object[]): Promise<void> => {
    const res = await fetch(`${red.url}/inject/${id}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(props ? { __user_inject_props__: props } : {}),
    });
    assert.equal(res.status, 200);
  };
  const audit = async (): Promise<AuditLine[]> => {
    const guardrail = byName('guardrail', 'Maintenance policy').id;
    const file = path.join(red.userDir, 'edge-llm', 'guardrail', `${guardrail}.jsonl`);
    if (!existsSync(file)) return [];
    return (await readFile(file, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditLine);
  };
  const missionNow = async () =>
    (await (await red.get(`/edge-llm/mission/${MISSION}`)).json()) as {
      outcome: string;
      steps: Array<{ action: string; status: string }>;
    };
  const cards = (): Locator => page.locator('.edge-approval');
  const missionState = (): Locator => page.locator('.edge-mission-state');
  const screenshot = async (name: string): Promise<void> => {
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  };

  before(async function () {
    await testModel('stories');
    const mosquitto = await MosquittoBroker.start();
    assert.ok(mosquitto, 'mosquitto is installed (apt-get install mosquitto)');
    broker = mosquitto;
    // The line's machines take commands and ack them; no readings, so no alarm of its own.
    line = await PackagingLine.start({ url: broker.url, sensorIntervalMs: 3_600_000 });

    const example = JSON.parse(await readFile(EXAMPLE, 'utf8')) as FlowNode[];
    flows = forDemo(example, { model: TEST_MODELS.stories.file, mqttUrl: broker.url });
    const planner = byName('llm-plan', 'Propose actions');
    const tab = planner.z as string;
    flows = flows.map((n) =>
      n === planner
        ? {
            id: n.id,
            type: 'change',
            z: tab,
            name: 'Propose actions (stand-in for the model)',
            rules: [{ t: 'set', p: 'payload', pt: 'msg', to: STAND_IN_PLAN, tot: 'jsonata' }],
            x: n.x,
            y: n.y,
            wires: [(n.wires as string[][])[0]],
          }
        : n,
    );
    const ticketStart = byName('change', "Ticket from the model's answer").id;
    const gate = byName('switch', 'Only from a connected dashboard client').id;
    flows.push(
      {
        id: 'test-ticket',
        type: 'inject',
        z: tab,
        name: 'Test: the ticket for pump-2',
        props: [
          { p: 'payload' },
          { p: 'llm', v: JSON.stringify(ALARM.llm), vt: 'json' },
          { p: 'anomaly', v: JSON.stringify(ALARM.anomaly), vt: 'json' },
        ],
        payload: JSON.stringify(ALARM.payload),
        payloadType: 'json',
        repeat: '',
        once: false,
        topic: '',
        wires: [[ticketStart]],
      },
      {
        // A decision that did not come over a dashboard connection, claiming a user.
        id: 'test-forged',
        type: 'inject',
        z: tab,
        name: 'Test: an approval from elsewhere',
        props: [{ p: 'payload' }],
        payload: '',
        payloadType: 'str',
        repeat: '',
        once: false,
        topic: '',
        wires: [[gate]],
      },
    );
    red = await NodeRedProcess.start(
      { flows, credentials: demoCredentials(flows, randomDemoKeys()) },
      { EDGE_LLM_MODELS_DIR: testModelsDir() },
    );
    await eventually('actuator-out connected to mosquitto', 30_000, async () =>
      /\[edge-mqtt-broker:[^\]]+\] connected/.test(red.output) ? true : undefined,
    );

    if (!existsSync(CHROMIUM)) throw new Error(`No Chromium at ${CHROMIUM}`);
    profile = await mkdtemp(path.join(tmpdir(), 'edge-llm-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: { width: 1280, height: 900 },
    });
    context.setDefaultTimeout(30_000);
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => errors.push(`page error: ${e.stack ?? e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
  });

  after(async function () {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await red?.stop();
    await line?.stop();
    await broker?.stop();
  });

  it('shows the page with the mission state and nothing waiting', async function () {
    await page.goto(`${red.url}/dashboard/approvals`);
    await page.getByText('Nothing is waiting for a person.').waitFor();
    await missionState().waitFor();
    assert.equal(await cards().count(), 0);
  });

  it('lists the line stop with what, why, the policy rule and the expiry; a Deny releases nothing', async function () {
    await inject('test-ticket');
    await cards().first().waitFor();
    const card = cards().first();
    const text = await card.innerText();
    assert.match(text, new RegExp(`Mission ${TICKET}`));
    // What: each step of the plan, with its parameters and device.
    assert.match(text, /reduce_speed \{"percent":20\} on pump-2/);
    assert.match(text, /stop_line\s+on line1/);
    // Why: the guardrail's reason; the policy rule; the expiry (the policy's 600 s).
    assert.match(text, /stop_line needs a person's approval \(class production-stop\)/);
    assert.match(text, /approval\.classes: production-stop/);
    assert.match(text, /Expires at .+, in (9|10) min/);
    await missionState().filter({ hasText: 'waiting for a person' }).waitFor();
    await screenshot('approvals-pending');
    const first = (await card.getAttribute('data-approval-id'))!;
    assert.match(first, /^[0-9a-f]{32}$/);

    // A decision from elsewhere in the flow (no dashboard connection) is dropped at the gate.
    await inject('test-forged', [
      { p: 'payload', v: JSON.stringify({ id: first, decision: 'approve' }), vt: 'json' },
      { p: '_client', v: JSON.stringify({ user: { username: 'mallory' } }), vt: 'json' },
    ]);

    await card.getByRole('button', { name: 'Deny' }).click();
    // The person's decision is recorded with who made it; the mission plans again and asks anew.
    const denied = await eventually('the denial in the audit log', 30_000, async () =>
      (await audit()).find((l) => l.event === 'approval' && l.approvalId === first),
    );
    assert.equal(denied.decision, 'rejected');
    assert.match(denied.approver ?? '', /^\(dashboard client (::ffff:)?127\.0\.0\.1\)$/);
    await eventually('the replanned request on the screen', 60_000, async () => {
      const ids = await page
        .locator('[data-approval-id]')
        .evaluateAll((els) => els.map((e) => e.getAttribute('data-approval-id')));
      return ids.length === 1 && ids[0] !== first ? true : undefined;
    }).catch(async (err: Error) => {
      const mission = JSON.stringify(await missionNow());
      throw new Error(`${err.message}; the mission: ${mission}`, { cause: err });
    });
    assert.deepEqual(line.executed, [], 'nothing reached the line');
    // Only the dashboard's click was taken as a decision: the forged one never reached the guardrail.
    assert.deepEqual(
      (await audit()).filter((l) => l.event === 'approval').map((l) => [l.approvalId, l.decision]),
      [[first, 'rejected']],
    );
  });

  it('an Approve click releases the commands to the simulated line, and its acks complete the mission', async function () {
    const card = cards().first();
    const id = (await card.getAttribute('data-approval-id'))!;
    await card.getByRole('button', { name: 'Approve' }).click();
    await eventually('both commands executed on the line', 60_000, async () =>
      line.executed.length >= 2 ? true : undefined,
    );
    assert.deepEqual(
      line.executed.map((a) => [a.action, a.device]),
      [
        ['reduce_speed', 'pump-2'],
        ['stop_line', 'line1'],
      ],
    );
    // The acks complete the steps: the mission ends complete, on the screen and over the admin API.
    await missionState().filter({ hasText: 'complete' }).waitFor();
    const mission = await missionNow();
    assert.equal(mission.outcome, 'complete', JSON.stringify(mission));
    // The denied plan's steps stay in the report as skipped; the approved plan's are done.
    assert.deepEqual(
      mission.steps.map((s) => [s.action, s.status]),
      [
        ['reduce_speed', 'skipped'],
        ['stop_line', 'skipped'],
        ['reduce_speed', 'done'],
        ['stop_line', 'done'],
      ],
    );
    await page.getByText('Nothing is waiting for a person.').waitFor();
    const approved = (await audit()).find((l) => l.event === 'approval' && l.approvalId === id);
    assert.equal(approved?.decision, 'approved');
    assert.match(approved?.approver ?? '', /\(dashboard client (::ffff:)?127\.0\.0\.1\)$/);
    await screenshot('approvals-after-approve');
    assert.deepEqual(errors, []);
    assert.deepEqual(
      red.output.split('\n').filter((l) => /\[error\]/.test(l)),
      [],
    );
  });
});

/**
 * The screen's flow nodes of examples 01 and 02 from the example files, in Node-RED without a
 * browser: the list kept in flow context, and the gate and the decision on the way back.
 */
describe('the approval screen’s flow nodes (examples 01 and 02)', function () {
  const helper = initHelper();
  const FILES = ['01 - Predictive maintenance', '02 - Inspection robot mission'];
  afterEach(async function () {
    await helper.unload();
    await stopServer();
  });

  async function load(file: string) {
    const nodes = JSON.parse(
      await readFile(path.join(REPO_ROOT, 'examples', `${file}.json`), 'utf8'),
    ) as FlowNode[];
    const named = (type: string, name: string): FlowNode => {
      const n = nodes.find((x) => x.type === type && x.name === name);
      assert.ok(n, `${type} "${name}" in ${file}`);
      return n;
    };
    const list = named('change', 'Approvals list (flow context)');
    const gate = named('switch', 'Only from a connected dashboard client');
    const click = named('change', "Click → the guardrail's approval (who, which)");
    // A link out's messages arrive at the link ins it names, and go on along their wires.
    const through = (id: string): string[] => {
      const n = nodes.find((x) => x.id === id);
      if (n?.type !== 'link out') return [id];
      return (n.links as string[]).flatMap((to) =>
        ((nodes.find((x) => x.id === to)!.wires as string[][])[0] ?? []).flatMap(through),
      );
    };
    const screen = (list.wires as string[][])[0][0];
    const [guardrail] = through((click.wires as string[][])[0][0]);
    assert.equal(named('guardrail', nodes.find((n) => n.id === guardrail)!.name as string).id, guardrail);
    // The guardrail's three outputs feed the list.
    const outputs = (nodes.find((n) => n.id === guardrail)!.wires as string[][]).map((w) =>
      w.flatMap(through).includes(list.id),
    );
    assert.deepEqual(outputs, [true, true, true]);
    await new Promise<void>((resolve) => helper.startServer(() => resolve()));
    const tab = list.z as string;
    await helper.load([coreNode('function/15-change.js'), coreNode('function/10-switch.js')], [
      { id: tab, type: 'tab' },
      list,
      gate,
      // The link nodes between the click and the guardrail pass messages on unchanged.
      { ...click, wires: [[guardrail]] },
      { id: screen, type: 'helper', z: tab },
      { id: guardrail, type: 'helper', z: tab },
    ] as never);
    return {
      list: helper.getNode(list.id),
      gate: helper.getNode(gate.id),
      shown: collect(helper.getNode(screen)),
      decisions: collect(helper.getNode(guardrail)),
    };
  }

  const waiting = (id: string, expires: number): Msg =>
    ({
      payload: { steps: [{ id: 's1', action: 'stop_line', params: {}, status: 'pending' }] },
      mission: { id: 'M1', stage: 'check' },
      approval: {
        id,
        expires,
        reasons: [{ code: 'approval_required', message: 'm', rule: 'r', stepId: 's1' }],
      },
      guardrail: { decision: 'needs_approval', policyHash: 'p' },
    }) as unknown as Msg;
  const ids = (m: Msg): string[] => (m.payload as Array<{ id: string }>).map((a) => a.id);

  for (const file of FILES) {
    it(`${file}: lists what waits, drops what was decided or expired, keeps it through other decisions`, async function () {
      const f = await load(file);
      const soon = Date.now() + 100;
      // One after the other, as the guardrail sends them (each once its audit line is written).
      f.list.receive(waiting('a'.repeat(32), Date.now() + 600_000));
      await f.shown.until(1);
      f.list.receive(waiting('b'.repeat(32), soon));
      await f.shown.until(2);
      assert.deepEqual(ids(f.shown.messages[1]), ['a'.repeat(32), 'b'.repeat(32)]);
      const entry = (f.shown.messages[1].payload as Array<Record<string, unknown>>)[0];
      assert.deepEqual(Object.keys(entry).sort(), [
        'expires',
        'id',
        'mission',
        'policyHash',
        'reasons',
        'request',
      ]);
      assert.equal(entry.mission, 'M1');
      await until(() => Date.now() > soon, 5000, 'the second request expired');
      // A signed step of another request (no msg.approval): the expired one drops, the other stays.
      f.list.receive({ payload: {}, guardrail: { decision: 'approved' } } as unknown as Msg);
      await f.shown.until(3);
      assert.deepEqual(ids(f.shown.messages[2]), ['a'.repeat(32)]);
      // The decision on it (approved, rejected or expired: its id in msg.approval) takes it off.
      f.list.receive({
        payload: {},
        approval: { id: 'a'.repeat(32), decision: 'reject' },
        guardrail: { decision: 'rejected' },
      } as unknown as Msg);
      await f.shown.until(4);
      assert.deepEqual(f.shown.messages[3].payload, []);
    });

    it(`${file}: takes a click only from a dashboard connection, and names who clicked`, async function () {
      const f = await load(file);
      const id = 'c'.repeat(32);
      const click = (extra: Record<string, unknown>): Msg =>
        ({ payload: { id, decision: 'approve' }, _dashboard: { sourceId: 'x' }, ...extra }) as unknown as Msg;
      // Refused: no connection, an empty one, a decision that is neither approve nor reject.
      f.gate.receive(click({ _client: { user: { username: 'mallory' } } }));
      f.gate.receive(click({ _client: { socketId: '', socketIp: '10.0.0.9' } }));
      f.gate.receive({ payload: { id, decision: 'maybe' }, _client: { socketId: 's1' } } as unknown as Msg);
      f.gate.receive(click({ _client: { socketId: 's1', socketIp: '10.0.0.5' } }));
      f.gate.receive(click({ _client: { socketId: 's2', socketIp: '10.0.0.6', user: { username: 'ann' } } }));
      await f.decisions.until(2);
      assert.deepEqual(
        f.decisions.messages.map((m) => m.approval),
        [
          { id, decision: 'approve', approver: '(dashboard client 10.0.0.5)' },
          { id, decision: 'approve', approver: 'ann (dashboard client 10.0.0.6)' },
        ],
      );
      for (const m of f.decisions.messages) {
        assert.equal(m.payload, undefined);
        assert.equal(m._client, undefined);
        assert.equal(m._dashboard, undefined);
      }
    });
  }
});
