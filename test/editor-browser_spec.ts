/**
 * The editor as a person uses it: a headless Chromium (Debian's chromium, driven by playwright-core)
 * on a real Node-RED with the package installed. Screenshots go to test-artifacts/editor/.
 */
import * as assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { deployFlows, Editor, QUIET_EDITOR_SETTINGS, sameJson } from './support/browser';
import { TestBroker } from './support/broker';
import { REPO_ROOT, testModel, testModelsDir } from './support/models';
import { NodeRedProcess, eventually } from './support/node-red-process';
import { demoCredentials, forDemo, randomDemoKeys } from '../examples/demo/flows';
import { Simulators } from '../examples/demo/simulators';

const MODULE = 'node-red-contrib-edge-llm';
const PKG = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
  'node-red': { nodes: Record<string, string> };
};

/**
 * The node types of the package as its editor files register them, read when mocha loads this
 * file so that every type gets its own tests; a test below checks the list against what the
 * running Node-RED reports.
 */
function registeredTypes(): Array<{ type: string; config: boolean }> {
  const types: Array<{ type: string; config: boolean }> = [];
  for (const file of Object.values(PKG['node-red'].nodes)) {
    const html = path.join(REPO_ROOT, 'nodes', `${path.basename(file, '.js')}.html`);
    if (!existsSync(html)) continue; // the loader test below reports it
    const source = readFileSync(html, 'utf8');
    const calls = [...source.matchAll(/RED\.nodes\.registerType\(\s*['"]([^'"]+)['"]/g)];
    calls.forEach((m, i) => {
      const body = source.slice(m.index, calls[i + 1]?.index ?? source.length);
      types.push({ type: m[1], config: /category:\s*['"]config['"]/.test(body) });
    });
  }
  return types;
}
const TYPES = registeredTypes();
const PALETTE_TYPES = TYPES.filter((t) => !t.config).map((t) => t.type);

/** The first paragraph of a type's help, as plain text: what the help sidebar must show. */
function helpLead(type: string): string {
  const file = path.join(REPO_ROOT, 'nodes', 'locales', 'en-US', `${type}.html`);
  const html = readFileSync(file, 'utf8');
  const p = /<p>([\s\S]*?)<\/p>/.exec(html);
  assert.ok(p, `${file} has no <p> paragraph`);
  return p[1]
    .replace(/<[^>]+>/g, '')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim();
}

function message(type: string, key: string, vars: Record<string, string> = {}): string {
  const catalog = JSON.parse(
    readFileSync(path.join(REPO_ROOT, 'nodes', 'locales', 'en-US', `${type}.json`), 'utf8'),
  ) as Record<string, unknown>;
  let text = key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)?.[k], catalog[type]);
  assert.equal(typeof text, 'string', `${type}.${key} in the message catalog`);
  for (const [k, v] of Object.entries(vars)) text = (text as string).replace(`__${k}__`, v);
  return text as string;
}

/** The example flows, read when mocha loads this file: each gets its own test. */
const EXAMPLES = existsSync(path.join(REPO_ROOT, 'examples'))
  ? readdirSync(path.join(REPO_ROOT, 'examples'))
      .filter((f) => f.endsWith('.json'))
      .sort()
  : [];

/** What runs after an example is deployed, by file name. */
const EXAMPLE_RUNS: Record<string, (c: Ctx) => Promise<void>> = {
  '02 - Inspection robot mission.json': runRobotMission,
};

/**
 * How long the robot mission may take from the click to Complete: at the demo's pace (a simulated
 * minute a second) the 30-minute battery budget caps the robot's work near 30 s, and the model plans
 * again at most a few times, a few seconds each. Runs here take about 20 s.
 */
const MISSION_MS = 90_000;

/** The id the editor gave the node of this type and name in the imported example. */
async function nodeNamed(c: Ctx, type: string, name: string): Promise<string> {
  const found = (await c.editor.flowNodes()).filter((n) => n.type === type && n.name === name);
  assert.equal(found.length, 1, `one ${type} "${name}" in the imported example`);
  return found[0].id;
}

/**
 * Example 02 as a person runs it with `npm start`: the demo's simulated robot on the broker, a
 * click on "Start the inspection mission", then the debug sidebar while the mission runs to
 * Complete. The story model's plans mean nothing; the flow's own logic (guardrail, Monitor,
 * replanning limits) still brings every mission to an end, and the robot does what was signed.
 */
async function runRobotMission(c: Ctx): Promise<void> {
  const { editor, red } = c;
  // as examples/demo/start.ts starts them, on the broker the example was pointed at
  c.simulatorLog = [];
  c.simulators = await Simulators.start({
    url: c.broker.url,
    autoFaultEveryMs: 120_000,
    log: (line) => c.simulatorLog.push(line),
  });
  const telemetry = await nodeNamed(c, 'debug', 'Robot');
  const missionNode = await nodeNamed(c, 'mission', 'Inspection mission');
  const start = await nodeNamed(c, 'inject', 'Start the inspection mission');
  const plans = await nodeNamed(c, 'debug', 'Plan from the model');
  const acks = await nodeNamed(c, 'debug', 'Robot acks');
  const report = await nodeNamed(c, 'debug', 'Mission report');
  const errors = await nodeNamed(c, 'debug', 'Errors');

  // A person starts the mission once the robot shows up on the canvas: its telemetry is in.
  await eventually('the robot telemetry on the canvas', 20_000, async () =>
    /dock/.test(await editor.nodeStatus(telemetry)) ? true : undefined,
  );
  const sidebar = await editor.openDebugSidebar();
  const note = await editor.clickInjectButton(start);
  assert.match(note, /Successfully injected/, note);
  await editor.dismissNotifications();

  const mission = await eventually('the mission ended', MISSION_MS, async () => {
    const m = (await (await red.get(`/edge-llm/mission/${missionNode}`)).json()) as {
      outcome: string;
      steps: Array<{ id: string; action: string; status: string; note?: string }>;
    };
    return ['complete', 'failed', 'aborted'].includes(m.outcome) ? m : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}\nsimulators:\n${c.simulatorLog.join('\n')}`);
  });
  assert.equal(mission.outcome, 'complete', JSON.stringify(mission));

  // What the debug sidebar shows, read from the page: the report comes last, after every ack.
  const done = mission.steps.filter((s) => s.status === 'done').length;
  await eventually('the mission report in the debug sidebar', 10_000, async () =>
    (await editor.debugMessages(report)).length > 0 ? true : undefined,
  );
  const shown = {
    plans: await editor.debugMessages(plans),
    acks: await editor.debugMessages(acks),
    report: await editor.debugMessages(report),
    errors: await editor.debugMessages(errors),
  };
  const seen = JSON.stringify(shown, null, 1);
  assert.ok(shown.plans.length >= 1, `a plan in the debug sidebar: ${seen}`);
  for (const m of shown.plans) {
    assert.match(m.meta, /Plan from the model/, seen);
    assert.match(m.summary, /steps: array\[\d+\]/, `the plan's payload has its steps: ${seen}`);
  }
  assert.equal(shown.acks.length, done, `one ack in the debug sidebar per step done: ${seen}`);
  assert.equal(shown.acks.length, c.simulators.robot.executed.length, 'one ack per command the robot ran');
  for (const m of shown.acks) {
    assert.match(m.meta, /Robot acks/, seen);
    assert.match(m.summary, /idempotencyKey: ".+".*ok: true/, `the robot's ack: ${seen}`);
  }
  assert.equal(shown.report.length, 1, seen);
  assert.match(shown.report[0].summary, /outcome: "complete"/, seen);
  assert.deepEqual(shown.errors, [], 'nothing reached the Catch node');

  // the first plan unfolded, as a person reads what the model proposed
  await editor.widenSidebar(250);
  const plan = await editor.unfoldDebugMessage(
    sidebar.locator(`.red-ui-debug-msg-node-${plans}`).first(),
    'steps',
  );
  const steps = Number(/steps: array\[(\d+)\]/.exec(shown.plans[0].summary)?.[1]);
  const actions = plan.match(/action: "(move_to|read_sensor|capture_image|set_valve|report)"/g) ?? [];
  assert.equal(actions.length, steps, `each step of the first plan names a catalogue action: ${plan}`);
  await editor.screenshot('example-02-complete-canvas');
  await editor.screenshot('example-02-complete-debug-sidebar', sidebar);
  // and the report at the end of the list
  const last = sidebar.locator(`.red-ui-debug-msg-node-${report}`).last();
  await last.scrollIntoViewIfNeeded();
  await editor.unfoldDebugMessage(last, 'steps');
  await editor.screenshot('example-02-complete-debug-sidebar-report', sidebar);
}

/**
 * An example as imported asks its user for a model, a broker and keys (its comment node says so):
 * set them on the imported nodes the way `npm start` sets them (examples/demo/flows.ts), with the
 * test model and the test broker.
 */
async function prepareLikeTheDemo(c: Ctx): Promise<void> {
  const nodes = await c.editor.flowNodes();
  const adjusted = forDemo(nodes, { model: c.model, mqttUrl: c.broker.url });
  const credentials = demoCredentials(nodes, randomDemoKeys());
  const changes = nodes.map((n, i) => ({
    id: n.id,
    properties: Object.fromEntries(Object.entries(adjusted[i]).filter(([k, v]) => n[k] !== v)),
    credentials: credentials[n.id],
  }));
  await c.editor.changeNodes(changes.filter((ch) => Object.keys(ch.properties).length > 0 || ch.credentials));
}

interface Ctx {
  editor: Editor;
  red: NodeRedProcess;
  broker: TestBroker;
  model: string;
  /** The demo's simulated line and robot, while an example runs on them. */
  simulators?: Simulators;
  simulatorLog: string[];
}

const SIGNING_KEY = 'editor-test-signing-key-0123456789abcdef';

/** A bad value a person could enter in a config node's dialog, its visible refusal, then a good one. */
const CONFIG_DIALOGS: Record<string, (c: Ctx) => Promise<void>> = {
  'llm-runtime': async ({ editor, model }) => {
    const bad = { threads: 'two', contextSize: '64', sequences: '0', queueLimit: '-1', timeout: '1.5' };
    for (const [field, value] of Object.entries(bad)) await editor.type(`#node-config-input-${field}`, value);
    for (const field of Object.keys(bad)) await assertFieldError(editor, `#node-config-input-${field}`, true);
    await editor.screenshot('dialog-llm-runtime-invalid');
    await editor.type('#node-config-input-model', model);
    const good = { threads: '2', contextSize: '512', sequences: '2', queueLimit: '8', timeout: '30' };
    for (const [field, value] of Object.entries(good))
      await editor.type(`#node-config-input-${field}`, value);
    for (const field of Object.keys(good))
      await assertFieldError(editor, `#node-config-input-${field}`, false);
    // The server backend shows its own fields and hides the local ones; back to the child process.
    const isolation = editor.page.locator('#node-config-input-isolation');
    await isolation.selectOption('server');
    assert.equal(await editor.page.locator('#node-config-input-threads').isVisible(), false);
    assert.equal(await editor.page.locator('#node-config-input-adapters').isVisible(), false);
    await editor.type('#node-config-input-serverUrl', 'gpu-box:8080');
    await assertFieldError(editor, '#node-config-input-serverUrl', true);
    await editor.type('#node-config-input-serverUrl', 'http://gpu-box:8080');
    await assertFieldError(editor, '#node-config-input-serverUrl', false);
    await isolation.selectOption('child');
    assert.equal(await editor.page.locator('#node-config-input-serverUrl').isVisible(), false);
    // Adapters, the model key's variable and the versions kept: a bad value is marked, a good one not.
    assert.equal(await editor.page.locator('#node-config-input-adapters').isVisible(), true);
    await editor.type('#node-config-input-modelKeyEnv', 'not a name');
    await assertFieldError(editor, '#node-config-input-modelKeyEnv', true);
    await editor.type('#node-config-input-modelKeyEnv', 'LINE3_MODEL_KEY');
    await assertFieldError(editor, '#node-config-input-modelKeyEnv', false);
    await editor.type('#node-config-input-keepVersions', '-1');
    await assertFieldError(editor, '#node-config-input-keepVersions', true);
    await editor.type('#node-config-input-keepVersions', '2');
    await assertFieldError(editor, '#node-config-input-keepVersions', false);
    await editor.type('#node-config-input-telemetryInterval', '0');
    await assertFieldError(editor, '#node-config-input-telemetryInterval', true);
    await editor.type('#node-config-input-telemetryInterval', '60');
    await assertFieldError(editor, '#node-config-input-telemetryInterval', false);
  },
  'kv-session-store': async ({ editor }) => {
    const tip = editor.page.locator('.form-tips', { hasText: 'Sessions are kept' }).last();
    const text = await tip.innerText();
    assert.match(text, /edge-llm\/sessions\/<this node's id> in the Node-RED user folder/, text);
    await editor.type('#node-config-input-encryptionKeyEnv', '1BAD');
    await assertFieldError(editor, '#node-config-input-encryptionKeyEnv', true);
    await editor.type('#node-config-input-encryptionKeyEnv', '');
    await assertFieldError(editor, '#node-config-input-encryptionKeyEnv', false);
  },
  'edge-mqtt-broker': async ({ editor, broker }) => {
    await editor.type('#node-config-input-url', 'http://127.0.0.1:1883');
    await assertFieldError(editor, '#node-config-input-url', true);
    await editor.type('#node-config-input-keepalive', 'soon');
    await assertFieldError(editor, '#node-config-input-keepalive', true);
    await editor.screenshot('dialog-edge-mqtt-broker-invalid');
    await editor.type('#node-config-input-url', broker.url);
    await editor.type('#node-config-input-keepalive', '30');
    // aedes speaks MQTT 3.1.1 only
    await editor.page.locator('#node-config-input-protocolVersion').selectOption('4');
    await assertFieldError(editor, '#node-config-input-url', false);
    await assertFieldError(editor, '#node-config-input-keepalive', false);
  },
};

/**
 * Per node type: enter a bad value, check the editor shows it is wrong, enter a good one. A bad value
 * in a plain input marks the input red while the dialog is open; one in a code editor is seen by the
 * editor when the dialog closes: a red triangle on the node whose tooltip names the problem.
 */
type AfterSave = () => Promise<void>;
const NODE_DIALOGS: Record<string, (c: Ctx, id: string) => Promise<void | AfterSave>> = {
  'llm-parse': async ({ editor }, id) => {
    await editor.setCode('node-input-schema-editor', '{"type": "object", "properties": ');
    await expectBadgeAfterDone(editor, id, 'llm-parse', message('llm-parse', 'errors.schema-not-json'));
    // JSON, but not a schema: the dialog finds the misspelt type inside a property
    await editor.setCode(
      'node-input-schema-editor',
      '{"type": "object", "properties": {"zone": {"type": "text"}}, "required": ["zone"]}',
    );
    await expectBadgeAfterDone(editor, id, 'llm-parse', 'The schema at properties.zone has the type');
    await editor.setCode('node-input-schema-editor', '{"type": "object", "required": "zone"}');
    await expectBadgeAfterDone(editor, id, 'llm-parse', 'has a "required" that is not a list');
    const schema = '{"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}';
    await editor.setCode('node-input-schema-editor', schema);
    await editor.setCode('node-input-instruction-editor', 'Which zone should the robot go to?');
    // The generation rows come from the editor script llm-parse and llm-plan share.
    assert.equal(await editor.page.locator('#node-input-priority').inputValue(), 'normal');
    await editor.type('#node-input-maxTokens', 'lots');
    await assertFieldError(editor, '#node-input-maxTokens', true);
    await editor.type('#node-input-maxTokens', '256');
    await assertFieldError(editor, '#node-input-maxTokens', false);
    return async () => {
      assert.ok(sameJson(String((await editor.node(id))?.schema), schema));
      assert.equal((await editor.node(id))?.maxTokens, '256');
    };
  },
  'llm-plan': async ({ editor }, id) => {
    // a new node plans with the built-in catalogue: the form shows no actions; the JSON view takes one
    assert.equal(await editor.page.locator('ol.edge-llm-catalogue > li').count(), 0);
    await editor.page.locator('#llm-plan-catalogue-view button[data-view="json"]').click();
    await editor.setCode('node-input-catalogue-editor', '[{"name": "Move To"}]');
    await expectRefused(editor, '#llm-plan-catalogue-problems', '"name" must be lower_snake_case');
    const catalogue =
      '[{"name": "move_to", "params": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["A", "B"]}}, "required": ["zone"]}}]';
    await editor.setCode('node-input-catalogue-editor', catalogue);
    await editor.type('#node-input-maxSteps', 'many');
    await assertFieldError(editor, '#node-input-maxSteps', true);
    await editor.type('#node-input-maxSteps', '4');
    await assertFieldError(editor, '#node-input-maxSteps', false);
    await editor.type('#node-input-retries', 'twice');
    await assertFieldError(editor, '#node-input-retries', true);
    await editor.type('#node-input-retries', '2');
    await assertFieldError(editor, '#node-input-retries', false);
    assert.equal(await editor.page.locator('#node-input-temperature').inputValue(), '0');
    return async () => assert.ok(sameJson(String((await editor.node(id))?.catalogue), catalogue));
  },
  'llm-chat': async ({ editor }, id) => {
    await editor.type('#node-input-temperature', 'warm');
    await editor.type('#node-input-maxTokens', 'many');
    await assertFieldError(editor, '#node-input-temperature', true);
    await assertFieldError(editor, '#node-input-maxTokens', true);
    await editor.screenshot('dialog-llm-chat-invalid');
    await editor.type('#node-input-temperature', '0.2');
    await editor.type('#node-input-maxTokens', '128');
    await assertFieldError(editor, '#node-input-temperature', false);
    await assertFieldError(editor, '#node-input-maxTokens', false);
    await editor.type('#node-input-system', 'You answer questions about line {{topic}} in one sentence.');
    await editor.page.locator('#node-input-stream').check();
    return async () => {
      const node = await editor.node(id);
      assert.equal(node?.stream, true);
      assert.equal(node?.outputs, 2, 'streaming adds the second output');
      assert.equal(node?.system, 'You answer questions about line {{topic}} in one sentence.');
      assert.equal(await editor.canvasNode(id).locator('.red-ui-flow-port-output').count(), 2);
    };
  },
  guardrail: async (c, id) => {
    await checkSigningKey(c, id, 'guardrail');
    const { editor } = c;
    // the starter policy in the form; the JSON view takes a pasted one, checked as deploy checks it
    await editor.page.locator('#guardrail-policy-view button[data-view="json"]').click();
    await editor.setCode('node-input-policy-editor', '{"name": "cell", "actions": ');
    await expectRefused(editor, '#guardrail-policy-problems', 'Not valid JSON');
    await editor.setCode('node-input-policy-editor', '{"name": "cell", "actions": {"Move To": {}}}');
    await expectRefused(editor, '#guardrail-policy-problems', 'the name "Move To" is not allowed');
    const policy = JSON.stringify({
      name: 'cell',
      version: '1',
      actions: { move_to: { params: { zone: { type: 'string', enum: ['A', 'B'], required: true } } } },
    });
    await editor.setCode('node-input-policy-editor', policy);
    return async () =>
      assert.deepEqual(JSON.parse(String((await editor.node(id))?.policy)), JSON.parse(policy));
  },
  'actuator-out': async (c, id) => {
    await checkSigningKey(c, id, 'actuator-out');
    const { editor } = c;
    await editor.type('#node-input-topic', 'devices/+/commands');
    await editor.type('#node-input-retries', '1.5');
    await assertFieldError(editor, '#node-input-topic', true);
    await assertFieldError(editor, '#node-input-retries', true);
    await editor.screenshot('dialog-actuator-out-invalid');
    await editor.type('#node-input-topic', 'devices/{{device}}/commands');
    await editor.type('#node-input-retries', '1');
    await assertFieldError(editor, '#node-input-topic', false);
    await assertFieldError(editor, '#node-input-retries', false);
  },
  'kv-session': async ({ editor }) => {
    // the key is a typed input (msg, flow, global, string, env, JSONata)
    await editor.type('#node-input-key', 'payload[');
    await assertFieldError(editor, '#node-input-key', true);
    await editor.screenshot('dialog-kv-session-invalid');
    await editor.type('#node-input-key', 'session');
    await assertFieldError(editor, '#node-input-key', false);
  },
  'privacy-guard': async ({ editor }) => {
    await editor.type('#node-input-defaultCountry', 'DEU');
    await editor.type('#node-input-regions', 'DE, GBR');
    await editor.type('#node-input-maxChars', 'lots');
    await assertFieldError(editor, '#node-input-defaultCountry', true);
    await assertFieldError(editor, '#node-input-regions', true);
    await assertFieldError(editor, '#node-input-maxChars', true);
    await editor.screenshot('dialog-privacy-guard-invalid');
    await editor.type('#node-input-defaultCountry', 'DE');
    await editor.type('#node-input-regions', 'DE, GB, US');
    await editor.type('#node-input-maxChars', '100000');
    await assertFieldError(editor, '#node-input-defaultCountry', false);
    await assertFieldError(editor, '#node-input-regions', false);
    await assertFieldError(editor, '#node-input-maxChars', false);
  },
  mission: async ({ editor }) => {
    await editor.type('#node-input-maxReplans', 'twice');
    await assertFieldError(editor, '#node-input-maxReplans', true);
    await editor.screenshot('dialog-mission-invalid');
    await editor.type('#node-input-maxReplans', '2');
    await assertFieldError(editor, '#node-input-maxReplans', false);
  },
};

/** A field the editor marks wrong has the input-error class and is drawn with a red border. */
async function assertFieldError(editor: Editor, selector: string, wrong: boolean): Promise<void> {
  await editor.page.locator(selector).dispatchEvent('change');
  // a typed input is drawn by its container
  const typed = editor.page.locator(`${selector} + .red-ui-typedInput-container`);
  const field = (await typed.count()) > 0 ? typed : editor.page.locator(selector);
  const state = await field.evaluate((el) => ({
    error: el.classList.contains('input-error'),
    visible: el.getBoundingClientRect().width > 0,
    border: getComputedStyle(el).borderTopColor,
    normal: (() => {
      const probe = document.createElement('input');
      el.parentElement?.appendChild(probe);
      const color = getComputedStyle(probe).borderTopColor;
      probe.remove();
      return el.classList.contains('red-ui-typedInput-container') ? '' : color;
    })(),
  }));
  assert.ok(state.visible, `${selector} is visible`);
  assert.equal(state.error, wrong, `${selector} ${wrong ? 'is' : 'is not'} marked wrong`);
  if (wrong) assert.notEqual(state.border, state.normal, `${selector} is drawn in the error colour`);
}

/**
 * The signing key, as a person gets it wrong: a short one is marked in the dialog and, saved, gives
 * the red triangle; an empty one too, and Deploy then warns instead of "Successfully deployed".
 */
async function checkSigningKey({ editor }: Ctx, id: string, type: string): Promise<void> {
  await editor.type('#node-input-signingKey', 'secret123');
  await assertFieldError(editor, '#node-input-signingKey', true);
  await editor.screenshot(`dialog-${type}-short-key`);
  await expectBadgeAfterDone(editor, id, type, 'The signing key has 9 characters; at least 32');
  await editor.type('#node-input-signingKey', '');
  await assertFieldError(editor, '#node-input-signingKey', true);
  await editor.done();
  assert.ok(await editor.errorBadge(id).isVisible(), `${type} without a key shows the red triangle`);
  assert.ok((await editor.errorTooltip(id)).includes('No signing key'));
  const note = await editor.deploy();
  assert.match(note, /not properly configured/, note);
  await editor.page.waitForTimeout(500); // the notification slides in
  await editor.screenshot(`deploy-${type}-without-key`);
  await editor.page.locator('.red-ui-notification button', { hasText: 'Cancel' }).click();
  await editor.dismissNotifications();
  await editor.openDialog(id);
  await editor.type('#node-input-signingKey', SIGNING_KEY);
  await assertFieldError(editor, '#node-input-signingKey', false);
}

/**
 * A bad policy or catalogue in a dialog that checks it: the problem is listed and Done cannot save
 * it (the button is disabled, and a click leaves the dialog open).
 */
async function expectRefused(editor: Editor, problems: string, text: string): Promise<void> {
  await editor.page.locator(problems, { hasText: text }).waitFor();
  const ok = editor.page.locator('#node-dialog-ok');
  assert.ok(await ok.evaluate((el) => el.classList.contains('disabled')), 'Done is disabled');
  await ok.click();
  await editor.quiet();
  assert.ok(await ok.isVisible(), 'the dialog is still open after a click on Done');
}

/** Closes the dialog on a bad code-editor value, checks the node's red triangle and its tooltip, reopens. */
async function expectBadgeAfterDone(editor: Editor, id: string, type: string, text: string): Promise<void> {
  await editor.done();
  const node = await editor.node(id);
  assert.equal(node?.valid, false, `${type} with a bad value is invalid`);
  assert.ok(await editor.errorBadge(id).isVisible(), `${type} shows the red triangle`);
  const tip = await editor.errorTooltip(id);
  assert.ok(tip.includes(text), `${type} tooltip names the problem: ${JSON.stringify(tip)}`);
  await editor.screenshot(`dialog-${type}-invalid`);
  await editor.openDialog(id);
}

describe('the editor in a real browser (Chromium)', function () {
  this.timeout(60_000);
  const ctx = {} as Ctx;

  before(async function () {
    this.timeout(120_000);
    ctx.model = await testModel('stories');
    ctx.broker = await TestBroker.start();
    ctx.red = await NodeRedProcess.start(
      { flows: [], settings: QUIET_EDITOR_SETTINGS },
      { EDGE_LLM_MODELS_DIR: testModelsDir() },
    );
    ctx.editor = await Editor.open(ctx.red.url);
  });

  after(async function () {
    this.timeout(30_000);
    await ctx.editor?.close();
    await ctx.red?.stop();
    await ctx.simulators?.stop();
    await ctx.broker?.stop();
  });

  describe('palette', function () {
    it('lists exactly the node types that Node-RED loaded from the package', async function () {
      const sets = (await (await ctx.red.get('/nodes')).json()) as Array<{
        module: string;
        types: string[];
        err?: string;
      }>;
      const ours = sets.filter((s) => s.module === MODULE);
      for (const set of ours) assert.equal(set.err, undefined);
      const loaded = ours.flatMap((s) => s.types).sort();
      assert.deepEqual(
        TYPES.map((t) => t.type).sort(),
        loaded,
        'editor files register the types Node-RED loaded',
      );
      const categories = await ctx.editor.page.evaluate(
        (types) =>
          types.map(
            (t) =>
              (
                window as unknown as { RED: { nodes: { getType(t: string): { category: string } } } }
              ).RED.nodes.getType(t)?.category,
          ),
        loaded,
      );
      const config = loaded.filter((_, i) => categories[i] === 'config');
      assert.deepEqual(
        loaded.filter((t) => !config.includes(t)),
        [...PALETTE_TYPES].sort(),
      );
    });

    it('labels every entry in words, not split at a hyphen ("kv - session")', async function () {
      for (const type of PALETTE_TYPES) {
        const label = await ctx.editor.paletteNode(type).locator('.red-ui-palette-label').innerText();
        assert.doesNotMatch(label, / - /, `${type}: ${JSON.stringify(label)}`);
      }
    });

    for (const type of PALETTE_TYPES) {
      it(`shows ${type} with its icon`, async function () {
        const entry = ctx.editor.paletteNode(type);
        await entry.scrollIntoViewIfNeeded();
        assert.ok(await entry.isVisible(), `${type} is in the palette`);
        const icon = await entry.locator('.red-ui-palette-icon').evaluate((el) => {
          const m = /url\("?(.*?)"?\)/.exec(getComputedStyle(el).backgroundImage);
          return m ? new URL(m[1], document.baseURI).href : '';
        });
        assert.match(
          new URL(icon).pathname,
          new RegExp(`^/icons/${MODULE}/[^/]+\\.(svg|png)$`),
          `${type} icon`,
        );
        const loaded = await ctx.editor.page.evaluate(async (url) => {
          const res = await fetch(url);
          const img = new Image();
          img.src = url;
          await img.decode().catch(() => undefined);
          return { status: res.status, type: res.headers.get('content-type'), width: img.naturalWidth };
        }, icon);
        assert.equal(loaded.status, 200, `${icon} answers 200`);
        assert.match(loaded.type ?? '', /image\//, `${icon} is an image`);
        assert.ok(loaded.width > 0, `${icon} decodes as an image`);
      });
    }

    for (const type of PALETTE_TYPES) {
      it(`shows the help of ${type} in the help sidebar`, async function () {
        const { page } = ctx.editor;
        const entry = ctx.editor.paletteNode(type);
        await entry.scrollIntoViewIfNeeded();
        await page.mouse.move(800, 500);
        await page
          .locator('.red-ui-popover:visible')
          .waitFor({ state: 'detached' })
          .catch(() => undefined);
        await entry.hover();
        // the palette's popover for this type, not the fading one of the type before
        const popover = page.locator('.red-ui-popover:visible', { hasText: `${MODULE} : ${type}` });
        await popover.locator('button:has(i.fa-book)').click();
        const help = page.locator('.red-ui-sidebar-help-stack .red-ui-help').first();
        await help.waitFor({ state: 'visible' });
        const lead = helpLead(type);
        await page.waitForFunction(
          ([text]) =>
            (
              document.querySelector('.red-ui-sidebar-help-stack .red-ui-help') as HTMLElement | null
            )?.innerText
              .replace(/\s+/g, ' ')
              .includes(text),
          [lead],
        );
        const shown = await help.innerText();
        assert.match(shown, /Inputs/, `${type} help has its Inputs section`);
        await page.mouse.move(800, 500);
        await ctx.editor.screenshot(`help-${type}`);
      });
    }
  });

  describe('edit dialogs', function () {
    const added: string[] = [];

    afterEach(async function () {
      // A failed test leaves its dialog open: close it so the next one starts on the canvas.
      await ctx.editor.cancelDialogs();
    });

    for (const [i, type] of PALETTE_TYPES.entries()) {
      it(`opens the dialog of ${type}, refuses a bad value visibly and saves a good one`, async function () {
        const { editor } = ctx;
        const id = await editor.dropFromPalette(type, 200 + (i % 3) * 250, 100 + Math.floor(i / 3) * 120);
        added.push(id);
        await editor.openDialog(id);
        await editor.screenshot(`dialog-${type}`);
        await addMissingConfigNodes(ctx, type);
        await fillRequiredCredentials(editor, type);
        const check = await NODE_DIALOGS[type]?.(ctx, id);
        await editor.screenshot(`dialog-${type}-good`);
        await editor.done();
        const node = await editor.node(id);
        assert.equal(node?.valid, true, `${type} is valid: ${JSON.stringify(node?.validationErrors)}`);
        assert.equal(await editor.errorBadge(id).isVisible(), false, `${type} has no red triangle`);
        if (typeof check === 'function') await check();
      });
    }

    it('deploys the nodes just configured without a warning or an error', async function () {
      const { editor, red } = ctx;
      const logged = red.output.length;
      const note = await editor.deploy();
      await editor.screenshot('deployed-dialog-flow');
      assert.match(note, /Successfully deployed/, note);
      await editor.dismissNotifications();
      await started(red, logged);
      const log = red.output.slice(logged);
      assert.doesNotMatch(log, /\[error\]/, log);
    });
  });

  describe('examples', function () {
    if (EXAMPLES.length === 0) {
      it('imports and deploys every example (no examples/*.json yet)', function () {
        this.skip();
      });
    }
    for (const file of EXAMPLES) {
      const title = file.replace(/\.json$/, '');
      const runs = EXAMPLE_RUNS[file] ? ', then runs it from the canvas' : '';
      it(`imports "${title}" through Import → Examples and deploys it${runs}`, async function () {
        if (runs) this.timeout(MISSION_MS + 90_000);
        const { editor, red } = ctx;
        await deployFlows(red.url, []);
        await editor.reload();
        await editor.importExample(MODULE, title);
        await prepareLikeTheDemo(ctx);
        await editor.screenshot(`example-${title}`);
        const logged = red.output.length;
        const note = await editor.deploy();
        assert.match(note, /Successfully deployed/, note);
        await editor.dismissNotifications();
        await EXAMPLE_RUNS[file]?.(ctx);
        await started(red, logged);
        await editor.screenshot(`example-${title}-deployed`);
        const log = red.output.slice(logged);
        assert.doesNotMatch(log, /\[error\]/, log);
      });
    }
  });

  describe('the page', function () {
    it('raised no script error', function () {
      assert.deepEqual(ctx.editor.errors, []);
    });
  });
});

/**
 * Waits until the flows of a deploy have started and each model of them is loaded (or has failed
 * to), so that an error of theirs is in the log when it is read.
 */
async function started(red: { output: string; url: string }, from: number): Promise<void> {
  await eventually('the flows started', 60_000, async () =>
    /Started flows/.test(red.output.slice(from)) ? true : undefined,
  );
  const flows = (await (await fetch(`${red.url}/flows`)).json()) as Array<{ type: string }>;
  if (!flows.some((n) => n.type === 'llm-runtime')) return;
  await eventually('the models loaded or failed', 60_000, async () => {
    if (/\[error\]/.test(red.output.slice(from))) return true;
    const infos = (await (await fetch(`${red.url}/edge-llm/runtimes`)).json()) as Array<{ state: string }>;
    return infos.length > 0 && infos.every((i) => i.state !== 'loading') ? true : undefined;
  });
}

/** A required config node with none to pick: add one through the pencil button, as a person does. */
async function addMissingConfigNodes(c: Ctx, type: string): Promise<void> {
  const { page } = c.editor;
  const props = await page.evaluate((t) => {
    const def = (
      window as unknown as {
        RED: { nodes: { getType(t: string): { defaults: Record<string, { type?: string }> } } };
      }
    ).RED.nodes.getType(t);
    return Object.entries(def.defaults)
      .filter(([, d]) => d.type)
      .map(([p, d]) => ({ prop: p, type: d.type as string }));
  }, type);
  for (const { prop, type: configType } of props) {
    const select = page.locator(`#node-input-${prop}`);
    const value = await select.inputValue();
    if (value && value !== '_ADD_') continue;
    await page.locator(`#node-input-btn-${prop}-add`).click();
    await page.locator('#node-config-dialog-ok').waitFor({ state: 'visible' });
    await c.editor.quiet();
    await c.editor.screenshot(`dialog-${configType}`);
    await CONFIG_DIALOGS[configType]?.(c);
    await c.editor.screenshot(`dialog-${configType}-good`);
    await page.locator('#node-config-dialog-ok').click();
    await page.locator('#node-config-dialog-ok').waitFor({ state: 'detached' });
    await c.editor.quiet();
    assert.notEqual(await select.inputValue(), '_ADD_', `${type}.${prop} now names the new ${configType}`);
  }
}

/** Credentials the node requires (signing keys) are typed into their password fields. */
async function fillRequiredCredentials(editor: Editor, type: string): Promise<void> {
  const fields = await editor.page.evaluate((t) => {
    const def = (
      window as unknown as {
        RED: { nodes: { getType(t: string): { credentials?: Record<string, { required?: boolean }> } } };
      }
    ).RED.nodes.getType(t);
    return Object.entries(def.credentials ?? {})
      .filter(([, d]) => d.required)
      .map(([p]) => p);
  }, type);
  for (const field of fields) await editor.type(`#node-input-${field}`, SIGNING_KEY);
}
