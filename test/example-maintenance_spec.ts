import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Node, NodeStatus } from 'node-red';
import type { SinonSpy } from 'sinon';
import { PackagingLine, type VibrationReading } from '../examples/demo/simulators';
import { assemblePlan, completedSteps } from '../lib/llm/plan';
import actuatorOutNode from '../nodes/actuator-out';
import brokerNode from '../nodes/edge-mqtt-broker';
import guardrailNode from '../nodes/guardrail';
import missionNode from '../nodes/mission';
import { TestBroker } from './support/broker';
import { REPO_ROOT } from './support/models';
import { callsBy, collect, coreNode, initHelper, stopServer, until, type Msg } from './support/flow';

const helper = initHelper();
const EXAMPLE = path.join(REPO_ROOT, 'examples', '01 - Predictive maintenance.json');
const DETECTOR = 'Anomaly detector (rolling RMS, z-score)';
const SECOND = 1000;

/**
 * Example 01's anomaly detector, its own function node from the example file, in a real Node-RED,
 * fed by the demo's simulated packaging line on a simulated clock (one reading per asset a second).
 */
describe('example 01: the anomaly detector on the simulated line', function () {
  this.timeout(60_000);
  let line: PackagingLine;
  let detector: Node;
  let alarms: ReturnType<typeof collect>;
  let fed = 0;
  let clock = Date.parse('2026-01-05T06:00:00Z');

  beforeEach(async function () {
    const flow = JSON.parse(await readFile(EXAMPLE, 'utf8')) as Array<Record<string, unknown>>;
    const node = flow.find((n) => n.type === 'function' && n.name === DETECTOR);
    assert.ok(node, `${DETECTOR} is in the example`);
    await new Promise<void>((resolve) => helper.startServer(() => resolve()));
    await helper.load(coreNode('function/10-function.js'), [
      {
        id: node.id as string,
        type: 'function',
        name: DETECTOR,
        func: node.func,
        outputs: 1,
        wires: [['alarms']],
      },
      { id: 'alarms', type: 'helper' },
    ] as never);
    detector = helper.getNode(node.id as string);
    alarms = collect(helper.getNode('alarms'));
    line = new PackagingLine({ url: 'mqtt://unused' });
    fed = 0;
  });

  afterEach(async function () {
    await helper.unload();
    await stopServer();
  });

  /** `seconds` of the line's readings, each asset once a second, through the detector. */
  async function run(seconds: number): Promise<void> {
    for (let s = 0; s < seconds; s++) {
      clock += SECOND;
      for (const reading of line.readings(clock)) {
        detector.receive({ payload: reading as unknown as VibrationReading } as Msg);
        fed++;
      }
    }
    // Each reading judged sets the detector's status once: wait until all have been.
    await until(() => judged() === fed, 10_000, `${fed} readings judged`);
  }

  const statuses = (): NodeStatus[] =>
    callsBy(detector.status as unknown as SinonSpy, detector)
      .map((c) => c.args[0] as NodeStatus)
      .filter((st) => /^(pump|fan)-\d: /.test(String(st.text)));
  const judged = (): number => statuses().length;
  /** Readings judged alarming (red), whether or not the cooldown let them through as a message. */
  const alarming = (): string[] =>
    statuses()
      .filter((st) => st.fill === 'red')
      .map((st) => String(st.text).split(':')[0]);

  const alarmed = (): string[] => alarms.messages.map((m) => (m.anomaly as { asset: string }).asset);

  it('raises no alarm for 10 minutes after a line stop, once the healthy line restarts', async function () {
    await run(30); // the baseline of each asset, at full speed
    assert.deepEqual(alarming(), []);
    await line.run({ action: 'stop_line', device: 'line1', params: {} }, clock);
    await run(90); // stopped: readings are sensor noise
    await run(600); // repaired and back at full speed: healthy
    assert.equal(fed, 3 * 720);
    assert.deepEqual(alarming(), []);

    // The detector still works: a bearing fault now is an alarm on its asset.
    line.startFault({ asset: 'pump-2', note: 'grinding noise' }, clock);
    await run(3);
    await until(() => alarms.messages.length > 0, 5000, 'an alarm');
    assert.deepEqual([...new Set(alarmed())], ['pump-2']);
  });

  it('raises no alarm while an asset runs slowed down after reduce_speed, and none when it is back', async function () {
    await run(30);
    line.startFault({ asset: 'pump-1', note: 'grinding noise' }, clock);
    await run(2);
    await until(() => alarms.messages.length > 0, 5000, 'an alarm');
    await line.run({ action: 'reduce_speed', device: 'pump-1', params: { percent: 30 } }, clock);
    const before = alarming().length;
    await run(600);
    assert.deepEqual(alarming().slice(before), []);
  });
});

/**
 * Example 01 from the ticket to the machine and back, its own nodes from the example file (the
 * ticket's change nodes, the mission, the guardrail, actuator-out, the Approve and Reject injects)
 * in a real Node-RED, on a real MQTT broker with the demo's simulated line. The test stands in
 * only for the model: llm-plan's answers are fixed here, in llm-plan's plan shape.
 */
describe('example 01: the ticket becomes a mission, wired, with a person approving the line stop', function () {
  this.timeout(60_000);
  let dir: string;
  let broker: TestBroker;
  let line: PackagingLine;
  const KEY = 'example-01-test-key-0123456789abcdef';
  const WIRED = new Set([
    'tab',
    'change',
    'mission',
    'guardrail',
    'actuator-out',
    'inject',
    'edge-mqtt-broker',
  ]);

  beforeEach(async function () {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'example-01-'));
    broker = await TestBroker.start();
    line = await PackagingLine.start({ url: broker.url, sensorIntervalMs: 3_600_000 });
    helper.settings({ userDir: dir });
    await new Promise<void>((resolve) => helper.startServer(() => resolve()));
  });
  afterEach(async function () {
    await helper.unload();
    await stopServer();
    helper.settings({ userDir: undefined });
    await line.stop();
    await broker.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function deploy(
    plans: Array<Array<{ action: string; params: Record<string, unknown>; reason: string }>>,
  ) {
    const flow = JSON.parse(await readFile(EXAMPLE, 'utf8')) as Array<Record<string, unknown>>;
    const id = (type: string, name: string): string => {
      const n = flow.find((x) => x.type === type && x.name === name);
      assert.ok(n, `${type} "${name}" in example 01`);
      return n.id as string;
    };
    const ticketStart = id('change', "Ticket from the model's answer");
    // Nodes before the ticket (MQTT in, detector, privacy-guard, llm-parse) are not loaded.
    const nodes = flow
      .filter(
        (n) => WIRED.has(n.type as string) && !(n.type === 'inject' && String(n.name).startsWith('Simulate')),
      )
      .map((n) => (n.type === 'edge-mqtt-broker' ? { ...n, url: broker.url, protocolVersion: '4' } : n));
    const loaded = new Set(nodes.map((n) => n.id));
    // Everything else they wire to (llm-plan, files, debug) is a helper node the test reads.
    const targets = new Set(nodes.flatMap((n) => ((n.wires as string[][] | undefined) ?? []).flat()));
    for (const t of targets) if (!loaded.has(t)) nodes.push({ id: t, type: 'helper' });
    const keys = Object.fromEntries(
      nodes
        .filter((n) => n.type === 'guardrail' || n.type === 'actuator-out')
        .map((n) => [n.id, { signingKey: KEY }]),
    );
    await helper.load(
      [
        missionNode,
        guardrailNode,
        brokerNode,
        actuatorOutNode,
        coreNode('function/15-change.js'),
        coreNode('common/20-inject.js'),
      ],
      nodes as never,
      keys as never,
    );
    const mission = helper.getNode(id('mission', 'Act on the ticket'));
    const requests: Msg[] = [];
    helper.getNode(id('llm-plan', 'Propose actions')).on('input', (msg: Msg) => {
      requests.push(JSON.parse(JSON.stringify(msg)) as Msg);
      const previous = msg.plan as { steps?: never[] } | undefined;
      const kept = completedSteps({ mission: msg.payload, previous, feedback: msg.feedback });
      msg.payload = assemblePlan(msg.payload, kept, plans[requests.length - 1] ?? [], 'test', previous);
      mission.receive(msg);
    });
    return {
      ticketStart: helper.getNode(ticketStart),
      approve: helper.getNode(id('inject', 'Approve the waiting request')),
      reject: helper.getNode(id('inject', 'Reject the waiting request')),
      requests,
      tickets: collect(helper.getNode(id('file', 'maintenance-tickets.jsonl'))),
      waiting: collect(helper.getNode(id('debug', 'Waiting for a person'))),
      reports: collect(helper.getNode(id('file', 'maintenance-actions.jsonl'))),
    };
  }

  /** What the detector and llm-parse leave on the message: the model named another asset. */
  const alarm = (): Msg =>
    ({
      payload: {
        asset: 'pump-1',
        symptom: 'Grinding at the drive end.',
        severity: 'low',
        suggested_spare_parts: [],
      },
      llm: { model: 'stand-in' },
      anomaly: {
        asset: 'pump-2',
        line: 'line1',
        z: 12.5,
        severity: 'high',
        at: '2026-01-05T06:00:00.000Z',
        ticket: 'MT-20260105060000-pump-2',
        summary: 'Vibration RMS 9.1 mm/s at full speed, z = 12.5 over its baseline.',
      },
    }) as unknown as Msg;
  const step = (action: string, params: Record<string, unknown> = {}) => ({ action, params, reason: 'r' });

  it('writes the ticket for the measured asset, waits for the person at the line stop, then runs every step', async function () {
    const f = await deploy([[step('reduce_speed', { percent: 20 }), step('stop_line')]]);
    f.ticketStart.receive(alarm());
    await f.tickets.until(1);
    const ticket = f.tickets.messages[0].payload as Record<string, unknown>;
    assert.equal(ticket.id, 'MT-20260105060000-pump-2');
    assert.equal(ticket.asset, 'pump-2', 'the measurement has the last word');
    assert.equal(ticket.severity, 'high');
    assert.equal(ticket.severity_by_model, 'low');
    assert.equal(ticket.written_by, 'stand-in');
    await f.waiting.until(1);
    assert.deepEqual(f.requests[0].constraints, {
      reduce_speed_max_percent: 30,
      stop_line_only_if: 'severity is critical',
    });
    assert.equal(line.executed.length, 0, 'nothing runs before the person approves');
    f.approve.receive({});
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as {
      mission: string;
      outcome: string;
      events: Array<{ event: string; detail?: string }>;
    };
    assert.equal(report.outcome, 'complete', JSON.stringify(report));
    assert.equal(report.mission, 'MT-20260105060000-pump-2');
    // Each command went to the ticket's asset, the line stop to its line.
    assert.deepEqual(
      line.executed.map((a) => [a.action, a.device]),
      [
        ['reduce_speed', 'pump-2'],
        ['stop_line', 'line1'],
      ],
    );
    assert.ok(report.events.some((e) => e.event === 'approved' && e.detail === 'operator at the gateway'));
  });

  it('a person rejects the line stop: the mission plans again, and the new plan runs', async function () {
    const f = await deploy([[step('stop_line')], [step('schedule_inspection', { within_hours: 24 })]]);
    f.ticketStart.receive(alarm());
    await f.waiting.until(1);
    f.reject.receive({});
    await f.reports.until(1);
    const report = f.reports.messages[0].payload as { outcome: string; replans: number };
    assert.equal(report.outcome, 'complete', JSON.stringify(report));
    assert.equal(report.replans, 1);
    assert.match(JSON.stringify(f.requests[1].feedback), /approval_denied/);
    assert.deepEqual(
      line.executed.map((a) => [a.action, a.device]),
      [['schedule_inspection', 'pump-2']],
    );
  });
});
