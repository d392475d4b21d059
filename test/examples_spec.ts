import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as mqtt from 'mqtt';
import { DemoBroker } from '../examples/demo/broker';
import { demoCredentials, forDemo, randomDemoKeys, type FlowNode } from '../examples/demo/flows';
import { Simulators } from '../examples/demo/simulators';
import { exampleFlows } from '../examples/demo/userdir';
import { REPO_ROOT, TEST_MODELS, testModel, testModelsDir } from './support/models';
import { NodeRedProcess, eventually, freePort } from './support/node-red-process';

const MODULE = 'node-red-contrib-edge-llm';
const EXAMPLES = [
  '01 - Predictive maintenance',
  '02 - Inspection robot mission',
  '03 - Privacy-first local assistant',
];

/** Node-RED's log lines at error level. */
function errorLines(output: string): string[] {
  return output.split('\n').filter((l) => /\[error\]/.test(l));
}

describe('example flows in a real Node-RED, on the demo broker and simulators', function () {
  // The story model decodes fast, but the suite shares two cores with everything else.
  this.timeout(180_000);
  let broker: DemoBroker;
  let simulators: Simulators;
  let red: NodeRedProcess;
  let flows: FlowNode[];

  const byName = (type: string, name: string): FlowNode => {
    const node = flows.find((n) => n.type === type && n.name === name);
    assert.ok(node, `${type} "${name}" in the examples`);
    return node;
  };
  /** Waits until `count` more readings of a running `asset` have passed the demo broker. */
  const readingsOnBroker = async (asset: string, count: number): Promise<void> => {
    // Node-RED subscribes to the readings as soon as its broker node connects.
    await eventually('Node-RED connected to the plant broker', 30_000, async () =>
      /\[mqtt-broker:Plant MQTT\] Connected/.test(red.output) ? true : undefined,
    );
    const client = await mqtt.connectAsync(broker.url);
    try {
      let seen = 0;
      const enough = new Promise<void>((resolve) =>
        client.on('message', (_topic, payload) => {
          if ((JSON.parse(payload.toString()) as { speed_pct: number }).speed_pct >= 25 && ++seen >= count)
            resolve();
        }),
      );
      await client.subscribeAsync(`plant/+/${asset}/vibration`);
      await enough;
    } finally {
      await client.endAsync();
    }
  };
  const inject = async (name: string): Promise<void> => {
    const res = await fetch(`${red.url}/inject/${byName('inject', name).id}`, { method: 'POST' });
    assert.equal(res.status, 200, `inject ${name}`);
  };

  before(async function () {
    await testModel('stories');
    broker = await DemoBroker.start(0);
    // Robot work at 20 ms per simulated minute; sensors 10 times faster than in the demo.
    simulators = await Simulators.start({ url: broker.url, msPerMinute: 20, sensorIntervalMs: 100 });
    flows = forDemo((await exampleFlows()) as FlowNode[], {
      model: TEST_MODELS.stories.file,
      mqttUrl: broker.url,
    });
    red = await NodeRedProcess.start(
      { flows, credentials: demoCredentials(flows, randomDemoKeys()) },
      { EDGE_LLM_MODELS_DIR: testModelsDir() },
    );
  });

  after(async function () {
    await red?.stop();
    await simulators?.stop();
    await broker?.stop();
  });

  it('lists each example in the editor under Import → Examples', async function () {
    const list = (await (await red.get(`/library/examples/flows/${MODULE}/`)).json()) as Array<
      string | { fn: string }
    >;
    const files = list.filter((e): e is { fn: string } => typeof e === 'object').map((e) => e.fn);
    assert.deepEqual(files, EXAMPLES);
    for (const name of EXAMPLES) {
      const res = await red.get(`/library/examples/flows/${MODULE}/${encodeURIComponent(name)}`);
      assert.equal(res.status, 200, name);
      assert.ok(Array.isArray(await res.json()), name);
    }
  });

  it('keeps keys out of the example files: the demo gives them as credentials', async function () {
    for (const name of EXAMPLES) {
      const text = await readFile(path.join(REPO_ROOT, 'examples', `${name}.json`), 'utf8');
      const nodes = JSON.parse(text) as FlowNode[];
      for (const n of nodes) assert.equal(n.credentials, undefined, `${name}: ${n.type} ${n.id}`);
      assert.doesNotMatch(text, /signingKey|encryptionKey/, name);
    }
    const deployed = (await (await red.get('/flows')).json()) as FlowNode[];
    const guardrails = deployed.filter((n) => n.type === 'guardrail' || n.type === 'actuator-out');
    assert.equal(guardrails.length, 4);
    for (const n of guardrails) assert.equal(n.credentials, undefined);
  });

  it('deploys every example, and its nodes start without errors', async function () {
    const deployed = (await (await red.get('/flows')).json()) as FlowNode[];
    assert.deepEqual(deployed.map((n) => n.id).sort(), flows.map((n) => n.id).sort());
    // the examples share one model runtime: one model to set, one model in memory
    assert.equal(deployed.filter((n) => n.type === 'llm-runtime').length, 1);
    await eventually('both MQTT configurations connected', 30_000, async () => {
      const connected = red.output.match(/\[edge-mqtt-broker:[^\]]+\] connected/g) ?? [];
      return connected.length >= 2 || undefined;
    });
    await eventually('the model ready', 60_000, async () =>
      red.output.includes('model ready: stories260K.gguf') ? true : undefined,
    );
    assert.deepEqual(errorLines(red.output), []);
  });

  describe('03 Privacy-first local assistant', function () {
    it('GET /healthz answers from the runtime health endpoint: loaded, model, sha256, probe', async function () {
      type Health = {
        ok: boolean;
        loaded: boolean;
        model: string;
        sha256: string;
        probe: { ok: boolean; ms: number };
      };
      const health = await eventually('healthz ok', 60_000, async () => {
        const res = await red.get('/healthz');
        const body = (await res.json()) as Health;
        return res.status === 200 && body.ok ? body : undefined;
      });
      const file = await testModel('stories');
      const sha256 = createHash('sha256')
        .update(await readFile(file))
        .digest('hex');
      assert.equal(health.loaded, true);
      assert.equal(health.model, TEST_MODELS.stories.file);
      assert.equal(health.sha256, sha256);
      assert.equal(health.probe.ok, true);
      // The same report as the runtime's own endpoint, asked by id (its probe is reused for 10 s).
      const runtime = byName('llm-runtime', 'Local model');
      const direct = await red.get(`/edge-llm/runtimes/${runtime.id}/health`);
      assert.equal(direct.status, 200);
      const report = (await direct.json()) as Health;
      assert.deepEqual([report.model, report.sha256, report.loaded], [health.model, health.sha256, true]);
      // The examples share one runtime: one load of the file.
      const list = (await (await red.get('/edge-llm/runtimes')).json()) as Array<{
        model: { sha256: string };
      }>;
      assert.deepEqual([...new Set(list.map((r) => r.model.sha256))], [sha256]);
      // An unknown name is a 404 that says so.
      const unknown = await red.get(`/edge-llm/runtimes/${encodeURIComponent('No such model')}/health`);
      assert.equal(unknown.status, 404);
      assert.match(
        ((await unknown.json()) as { error: string }).error,
        /No llm-runtime node with id or name "No such model"/,
      );
    });

    it('POST /ask answers with the personal data restored, and the model never saw it', async function () {
      // Names without a title or cue word, numbers in national format (the regions set in the node).
      const question =
        'Maria Keller and Jonas Weber need a short note about the delayed pump: maria.keller@example.com, 0170 1234567, 030 12345678.';
      const originals = [
        'Maria Keller',
        'Jonas Weber',
        'maria.keller@example.com',
        '0170 1234567',
        '030 12345678',
      ];
      const res = await fetch(`${red.url}/ask`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ question }),
      });
      assert.equal(res.status, 200);
      const body = (await res.json()) as {
        answer: string;
        refers_to: string[];
        seen_by_model: string;
        pseudonymised: Record<string, number>;
      };
      assert.equal(typeof body.answer, 'string');
      // The model may only name contacts of the question, as pseudonyms; the reply has the originals.
      assert.ok(body.refers_to.length >= 1);
      for (const value of body.refers_to) assert.ok(originals.includes(value), value);
      assert.doesNotMatch(JSON.stringify([body.answer, body.refers_to]), /<(PERSON|EMAIL|PHONE)_\d+>/);
      assert.doesNotMatch(body.seen_by_model, /Maria|Keller|Jonas|Weber|example\.com|1234567|12345678/);
      assert.match(body.seen_by_model, /<PERSON_1> and <PERSON_2>.*<EMAIL_1>, <PHONE_1>, <PHONE_2>/);
      assert.deepEqual(body.pseudonymised, { PERSON: 2, EMAIL: 1, PHONE: 2 });
    });

    it('POST /ask without a question is a 400', async function () {
      const res = await fetch(`${red.url}/ask`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({}),
      });
      assert.equal(res.status, 400);
    });
  });

  describe('01 Predictive maintenance', function () {
    it('writes a ticket after an injected bearing fault, without the operator name', async function () {
      // The detector needs a baseline first: 10 readings of pump-2 running. Counted on the broker
      // after Node-RED subscribed, they reach the detector before any reading of the fault.
      await readingsOnBroker('pump-2', 10);
      await inject('Simulate a bearing fault on pump-2');
      const file = path.join(red.userDir, 'maintenance-tickets.jsonl');
      const ticket = await eventually('a ticket in maintenance-tickets.jsonl', 60_000, async () => {
        if (!existsSync(file)) return undefined;
        const lines = (await readFile(file, 'utf8')).trim().split('\n').filter(Boolean);
        return lines.length ? (JSON.parse(lines[0]) as Record<string, unknown>) : undefined;
      });
      assert.equal(ticket.asset, 'pump-2');
      assert.ok(['medium', 'high', 'critical'].includes(ticket.severity as string));
      assert.ok((ticket.measurement as { z: number }).z >= 4);
      assert.ok(Array.isArray(ticket.suggested_spare_parts));
      assert.doesNotMatch(JSON.stringify(ticket), /Maria|Keller|1234567/);
    });

    it('acts on the ticket through the mission node: each command to the measured asset, a line stop only after a person approves it', async function () {
      this.timeout(660_000);
      const missionNow = async () =>
        (await (await red.get('/edge-llm/mission/5a1c0e3b7d2f4a60')).json()) as {
          mission?: string;
          outcome: string;
          goal?: { id?: string; asset?: string };
          steps: Array<{ action: string; status: string }>;
        };
      const ENDED = ['complete', 'failed', 'aborted'];
      const first = await eventually('the mission waiting for a person, or ended', 300_000, async () => {
        const m = await missionNow();
        return m.outcome === 'approval' || ENDED.includes(m.outcome) ? m : undefined;
      });
      // The mission is named after the ticket, and acts on the asset the detector measured.
      assert.match(String(first.mission), /^MT-\d{14}-pump-2$/);
      assert.equal(first.goal?.asset, 'pump-2');
      if (first.outcome === 'approval') {
        assert.ok(
          first.steps.some((s) => s.action === 'stop_line'),
          JSON.stringify(first),
        );
        assert.equal(simulators.line.executed.length, 0, 'nothing runs before the person approves');
        // The person at the gateway approves it; the mission goes on through the guardrail's approval path.
        await inject('Approve the waiting request');
      }
      const mission = await eventually('the mission ended', 300_000, async () => {
        const m = await missionNow();
        return ENDED.includes(m.outcome) ? m : undefined;
      });
      assert.ok(['complete', 'failed'].includes(mission.outcome), JSON.stringify(mission));
      // Its report, one line in maintenance-actions.jsonl.
      const file = path.join(red.userDir, 'maintenance-actions.jsonl');
      const report = await eventually('the report in maintenance-actions.jsonl', 10_000, async () => {
        if (!existsSync(file)) return undefined;
        const lines = (await readFile(file, 'utf8')).trim().split('\n').filter(Boolean);
        return lines.length ? (JSON.parse(lines[0]) as Record<string, unknown>) : undefined;
      });
      assert.equal(report.mission, mission.mission);
      assert.equal(report.outcome, mission.outcome);
      // Whatever the model proposed, a command only ever reached the measured asset or its line.
      for (const a of simulators.line.executed)
        assert.ok(['pump-2', 'line1'].includes(a.device ?? ''), String(a.device));
      const done = mission.steps.filter((s) => s.status === 'done').length;
      assert.equal(simulators.line.executed.length, done);
    });
  });

  describe('02 Inspection robot mission', function () {
    // The mission node's state over the admin API: what its edit dialog shows.
    const missionNow = async () =>
      (await (await red.get('/edge-llm/mission/7e15510a2b3c4d5e')).json()) as {
        mission?: string;
        outcome: string;
        steps: Array<{ action: string; status: string; params: { zone?: string } }>;
      };

    it('aborts a mission on request', async function () {
      await inject('Start the inspection mission');
      await eventually('the mission under way', 30_000, async () =>
        ['planning', 'checking', 'executing'].includes((await missionNow()).outcome) ? true : undefined,
      );
      await inject('Abort the mission');
      await eventually('the mission aborted', 10_000, async () =>
        (await missionNow()).outcome === 'aborted' ? true : undefined,
      );
    });

    it('runs a new mission through the mission node to Complete', async function () {
      // Parse, plan and each replan take the tiny model minutes on a loaded two-core machine.
      this.timeout(480_000);
      // The aborted mission's model answers still arrive: they must not touch this one.
      const before = simulators.robot.executed.length;
      // The aborted one stays the node's mission until the new start is taken in: wait for another id.
      const aborted = (await missionNow()).mission;
      await inject('Start the inspection mission');
      let seen: unknown;
      const mission = await eventually('the mission ended', 420_000, async () => {
        const m = await missionNow();
        seen = m;
        return m.mission !== aborted && ['complete', 'failed', 'aborted'].includes(m.outcome) ? m : undefined;
      }).catch((err: Error) => {
        throw new Error(`${err.message}; the mission: ${JSON.stringify(seen)}`, { cause: err });
      });
      assert.equal(mission.outcome, 'complete', JSON.stringify(mission));
      assert.ok(mission.steps.every((s) => s.status !== 'pending' && s.status !== 'sent'));
      const done = mission.steps.filter((s) => s.status === 'done');
      const executed = simulators.robot.executed.slice(before);
      assert.equal(executed.length, done.length, 'each done step ran once on the robot, and nothing else');
      // The steam leak heats zone C after the first command: no move into it after that.
      assert.ok(executed.slice(1).every((a) => (a.params as { zone?: string }).zone !== 'C'));

      const reports = await readFile(path.join(red.userDir, 'robot-mission-reports.jsonl'), 'utf8');
      const last = JSON.parse(reports.trim().split('\n').pop()!) as { outcome: string; mission: string };
      assert.equal(last.outcome, 'complete');
      assert.equal(last.mission, mission.mission);
    });
  });

  describe('afterwards', function () {
    it('logged no node errors while the examples ran', function () {
      assert.deepEqual(errorLines(red.output), []);
    });
  });
});

describe('npm start (examples/demo/start.ts)', function () {
  this.timeout(180_000);

  /** One `npm start` in `dir`; `whileUp` runs once the example flows answer, then Ctrl-C. */
  async function runDemo(
    dir: string,
    whileUp: (port: number, output: () => string) => Promise<void>,
  ): Promise<string> {
    const port = await freePort();
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'examples', 'demo', 'start.js')], {
      env: {
        ...process.env,
        PORT: String(port),
        EDGE_LLM_DEMO_DIR: dir,
        EDGE_LLM_MQTT_PORT: '0',
        EDGE_LLM_MODELS_DIR: testModelsDir(),
        EDGE_LLM_MODEL: TEST_MODELS.stories.file,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await eventually('the editor URL printed', 60_000, async () =>
        output.includes(`Editor:    http://127.0.0.1:${port}/`) ? true : undefined,
      );
      // Started: the example's own health check answers (Ctrl-C before that races the nodes' start).
      const health = await eventually('healthz ok', 60_000, async () => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        return res.status === 200 ? ((await res.json()) as { ok: boolean }) : undefined;
      });
      assert.equal(health.ok, true);
      await whileUp(port, () => output);
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      assert.equal(code, 0, output);
      assert.match(output, /Stopped flows/);
      assert.deepEqual(errorLines(output), []);
      return output;
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }

  it('starts Node-RED, the broker and the simulators, and Ctrl-C stops them all', async function () {
    await testModel('stories');
    const dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-demo-'));
    try {
      await runDemo(dir, async (port, soFar) => {
        // The inject node "Simulate a bearing fault on pump-2" of example 01, as if clicked.
        const res = await fetch(`http://127.0.0.1:${port}/inject/9be804e7dec106a7`, { method: 'POST' });
        assert.equal(res.status, 200);
        // The simulators' lines say when they happened.
        await eventually('a simulator line with its time', 30_000, async () =>
          /^\d\d:\d\d:\d\d\.\d{3} \[simulator\] line: bearing fault on pump-2/m.test(soFar())
            ? true
            : undefined,
        );
      });
      // No consent dialog on an offline gateway: telemetry and update checks are off.
      const settings = await readFile(path.join(dir, 'settings.js'), 'utf8');
      assert.match(settings, /"updateNotification": false/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("keeps a user's edits to the demo flows across restarts, and redeploys untouched ones", async function () {
    await testModel('stories');
    const dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-demo-'));
    const flowsFile = path.join(dir, 'flows.json');
    const noop = async (): Promise<void> => {};
    try {
      await runDemo(dir, noop);
      const deployed = await readFile(flowsFile, 'utf8');
      // Untouched: deployed again (a new broker port reaches the flows), nothing said about edits.
      const second = await runDemo(dir, noop);
      assert.doesNotMatch(second, /holds your edits/);
      assert.notEqual(await readFile(flowsFile, 'utf8'), '');

      const edited = JSON.parse(deployed) as FlowNode[];
      edited.push({ id: 'user-note', type: 'comment', z: edited[0].z ?? edited[0].id, name: 'my note' });
      await writeFile(flowsFile, JSON.stringify(edited));
      const third = await runDemo(dir, noop);
      assert.match(third, /flows\.json holds your edits: kept/);
      const kept = JSON.parse(await readFile(flowsFile, 'utf8')) as FlowNode[];
      assert.ok(kept.some((n) => n.id === 'user-note' && n.name === 'my note'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("the examples' mission path: wired, not coded", function () {
  type Wired = FlowNode & { name?: string; func?: string; wires?: string[][] };
  const load = async (name: string): Promise<Wired[]> =>
    JSON.parse(await readFile(path.join(REPO_ROOT, 'examples', `${name}.json`), 'utf8')) as Wired[];

  /** Every node a message can reach from the named start nodes, following the wires. */
  function reachable(nodes: Wired[], starts: string[]): Wired[] {
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const seen = new Set<string>();
    const todo = starts.map((name) => {
      const start = nodes.find((n) => n.name === name);
      assert.ok(start, `start node "${name}"`);
      return start.id;
    });
    while (todo.length) {
      const id = todo.pop()!;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const port of byId.get(id)?.wires ?? []) todo.push(...port);
    }
    return [...seen].map((id) => byId.get(id)!);
  }

  it('01: no function node from the alarm to the machine and back (0 nodes, 0 lines); the detector says why it is one', async function () {
    const nodes = await load('01 - Predictive maintenance');
    const detector = nodes.find((n) => n.type === 'function');
    assert.ok(detector);
    // The mission path starts where the detector's alarm goes, and at the person's answers.
    const pathNodes = reachable(nodes, [
      ...(detector.wires ?? []).flat().map((id) => nodes.find((n) => n.id === id)!.name!),
      'Approve the waiting request',
      'Reject the waiting request',
    ]);
    for (const type of [
      'privacy-guard',
      'llm-parse',
      'mission',
      'llm-plan',
      'guardrail',
      'actuator-out',
      'file',
    ]) {
      assert.ok(
        pathNodes.some((n) => n.type === type),
        `${type} on the mission path`,
      );
    }
    const functions = pathNodes.filter((n) => n.type === 'function');
    const lines = functions.reduce((sum, n) => sum + (n.func ?? '').split('\n').length, 0);
    assert.deepEqual({ functions: functions.map((n) => n.name), lines }, { functions: [], lines: 0 });
    // The one function node left is the anomaly detector, with a comment that says why.
    assert.deepEqual(
      nodes.filter((n) => n.type === 'function').map((n) => n.name),
      ['Anomaly detector (rolling RMS, z-score)'],
    );
    assert.match(detector.func ?? '', /^\/\/ A function node on purpose: this is the domain logic/);
    assert.ok(
      nodes.some(
        (n) => n.type === 'comment' && /The one function node: the anomaly detector/.test(n.name ?? ''),
      ),
    );
  });

  it('02: no function node from the command or a reading to the robot and back (0 nodes, 0 lines)', async function () {
    const nodes = await load('02 - Inspection robot mission');
    const pathNodes = reachable(nodes, [
      'Start the inspection mission',
      'Abort the mission',
      'Robot telemetry',
    ]);
    // The path does reach every node of the mission: planner, guardrail, robot, report.
    for (const type of ['mission', 'llm-plan', 'guardrail', 'actuator-out', 'file']) {
      assert.ok(
        pathNodes.some((n) => n.type === type),
        `${type} on the mission path`,
      );
    }
    const functions = pathNodes.filter((n) => n.type === 'function');
    const lines = functions.reduce((sum, n) => sum + (n.func ?? '').split('\n').length, 0);
    assert.deepEqual({ functions: functions.map((n) => n.name), lines }, { functions: [], lines: 0 });
    // Nor anywhere else in the example: its simulator is the demo's, outside the flow.
    assert.deepEqual(
      nodes.filter((n) => n.type === 'function').map((n) => n.name),
      [],
    );
  });
});
