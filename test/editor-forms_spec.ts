/**
 * The guardrail's policy and llm-plan's action catalogue as forms in their edit dialogs, in a real
 * Chromium on a real Node-RED: the form shows example 02's policy and gives back the same JSON,
 * refuses bad values (red field, Done disabled), keeps a JSON it cannot show in the JSON view, and
 * what it shows is what the node holds after Done and Deploy (read back through the admin API).
 * Screenshots go to test-artifacts/editor/.
 */
import * as assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import type { Locator } from 'playwright-core';
import { Editor, QUIET_EDITOR_SETTINGS } from './support/browser';
import { REPO_ROOT, testModel, testModelsDir } from './support/models';
import { NodeRedProcess } from './support/node-red-process';

const SIGNING_KEY = 'editor-test-signing-key-0123456789abcdef';
const EXAMPLE = JSON.parse(
  readFileSync(path.join(REPO_ROOT, 'examples', '02 - Inspection robot mission.json'), 'utf8'),
) as Array<Record<string, unknown>>;
/** Example 02's policy, as the example holds its text. */
const POLICY_TEXT = EXAMPLE.find((n) => n.type === 'guardrail')!.policy as string;

/** The policies and catalogues of every example, read when mocha loads this file. */
const EXAMPLE_TEXTS = readdirSync(path.join(REPO_ROOT, 'examples'))
  .filter((f) => f.endsWith('.json'))
  .sort()
  .flatMap((file) =>
    (
      JSON.parse(readFileSync(path.join(REPO_ROOT, 'examples', file), 'utf8')) as Array<
        Record<string, unknown>
      >
    )
      .filter((n) => (n.type === 'guardrail' && n.policy) || (n.type === 'llm-plan' && n.catalogue))
      .map((n) => ({
        file,
        type: n.type as string,
        name: n.name as string,
        text: String(n.policy ?? n.catalogue),
      })),
  );

/** A catalogue with keys the form does not show (an action's x-owner, a parameter's maxLength). */
const CATALOGUE = [
  {
    name: 'move_to',
    description: 'Drive the robot to a zone.',
    params: {
      type: 'object',
      properties: {
        zone: { type: 'string', enum: ['A', 'B', 'dock'] },
        speed: { type: 'number', minimum: 0.1, maximum: 1.5, description: 'm/min' },
      },
      required: ['zone'],
      additionalProperties: false,
    },
    'x-owner': 'maintenance',
  },
  {
    name: 'report',
    description: 'Send a short finding to the operator.',
    params: {
      type: 'object',
      properties: { summary: { type: 'string', maxLength: 160 } },
      required: ['summary'],
    },
  },
];
const CATALOGUE_TEXT = JSON.stringify(CATALOGUE, null, 2);
const LONG_INSTRUCTION = `You plan the steps of a robot mission in the valve gallery. ${'Respect every limit of the site and keep the operator informed of what you do. '.repeat(8)}`;

function flows(model: string): object[] {
  return [
    { id: 'forms-tab', type: 'tab', label: 'Forms' },
    {
      id: 'forms-runtime',
      type: 'llm-runtime',
      name: 'Local model',
      model,
      threads: '1',
      contextSize: '512',
      sequences: '1',
      queueLimit: '8',
      timeout: '60',
    },
    {
      id: 'forms-guardrail',
      type: 'guardrail',
      z: 'forms-tab',
      name: 'Robot safety policy',
      policySource: 'inline',
      policy: POLICY_TEXT,
      policyFile: '',
      auditLog: '',
      x: 200,
      y: 100,
      wires: [[], [], []],
    },
    {
      id: 'forms-plan',
      type: 'llm-plan',
      z: 'forms-tab',
      name: 'Plan',
      runtime: 'forms-runtime',
      instruction: '',
      catalogue: CATALOGUE_TEXT,
      maxSteps: '6',
      x: 200,
      y: 200,
      wires: [[], []],
    },
    {
      id: 'forms-parse',
      type: 'llm-parse',
      z: 'forms-tab',
      name: 'Read',
      runtime: 'forms-runtime',
      instruction: '',
      schema: '',
      examples: '',
      x: 200,
      y: 300,
      wires: [[], []],
    },
    {
      id: 'forms-chat',
      type: 'llm-chat',
      z: 'forms-tab',
      name: 'Chat',
      runtime: 'forms-runtime',
      system: '',
      x: 200,
      y: 400,
      wires: [[]],
    },
  ];
}

/** The text a code editor (Monaco) of the open dialog holds. */
function code(editor: Editor, editorId: string): Promise<string> {
  return editor.page.evaluate((id) => {
    const m = (
      window as unknown as {
        monaco: {
          editor: { getEditors(): Array<{ getContainerDomNode(): HTMLElement; getValue(): string }> };
        };
      }
    ).monaco;
    const found = m.editor
      .getEditors()
      .filter((e) => document.contains(e.getContainerDomNode()) && e.getContainerDomNode().closest(`#${id}`))
      .pop();
    if (!found) throw new Error(`no code editor in #${id}`);
    return found.getValue();
  }, editorId);
}

/** The text of a code editor once Monaco has formatted what was pasted (it does so after the paste). */
async function settled(editor: Editor, editorId: string): Promise<string> {
  let before = '';
  for (;;) {
    await editor.page.waitForTimeout(300);
    const now = await code(editor, editorId);
    if (now === before && now.includes('\n')) return now;
    before = now;
  }
}

/** The whole open dialog, however long its form: the window is made tall enough for the shot. */
async function dialogScreenshot(editor: Editor, name: string): Promise<void> {
  const page = editor.page;
  const extra = await page
    .locator('.red-ui-tray')
    .last()
    .evaluate((tray) =>
      Math.max(
        0,
        ...[...tray.querySelectorAll('*')]
          // the tray's own scrolling body, not the code editors' virtual scrollers
          .filter((el) => /auto|scroll/.test(getComputedStyle(el).overflowY) && !el.closest('.monaco-editor'))
          .map((el) => Math.min(el.scrollHeight - el.clientHeight, 5000)),
      ),
    );
  const size = page.viewportSize()!;
  await page.setViewportSize({ width: size.width, height: size.height + Math.max(0, extra) + 40 });
  await editor.quiet();
  await editor.screenshot(name, page.locator('.red-ui-tray').last());
  await page.setViewportSize(size);
  await editor.quiet();
}

/** Clicks Form or JSON in a dialog's view toggle. */
async function toggle(editor: Editor, toggleId: string, view: 'form' | 'json'): Promise<void> {
  await editor.page.locator(`#${toggleId} button[data-view="${view}"]`).click();
  await editor.quiet();
}

async function shownView(editor: Editor, toggleId: string): Promise<string | null> {
  return editor.page.locator(`#${toggleId} button.selected`).getAttribute('data-view');
}

/** Waits until the dialog's checks have answered; returns whether Done may save. */
async function doneEnabled(editor: Editor): Promise<boolean> {
  await editor.page
    .locator('.red-ui-tray .edge-llm-view-toggle[data-check="done"]')
    .waitFor({ state: 'attached' });
  return !(await editor.page.locator('#node-dialog-ok').evaluate((el) => el.classList.contains('disabled')));
}

async function isRed(field: Locator): Promise<boolean> {
  return field.evaluate((el) => {
    const typed = el.nextElementSibling?.classList.contains('red-ui-typedInput-container')
      ? el.nextElementSibling
      : el;
    return typed!.classList.contains('input-error');
  });
}

/** The row of an editable list whose `field` input holds `value`. */
async function rowWith(list: Locator, field: string, value: string): Promise<Locator> {
  const items = list.locator(':scope > li');
  const i = await items.evaluateAll(
    (lis, [f, v]) => lis.findIndex((li) => (li.querySelector(f) as HTMLInputElement | null)?.value === v),
    [field, value],
  );
  assert.ok(i >= 0, `a row with ${field} = ${value}`);
  return items.nth(i);
}

async function savedNode(red: NodeRedProcess, id: string): Promise<Record<string, unknown>> {
  const all = (await (await fetch(`${red.url}/flows`)).json()) as Array<Record<string, unknown>>;
  const node = all.find((n) => n.id === id);
  assert.ok(node, `node ${id} in /flows`);
  return node;
}

describe('policy and catalogue forms in the edit dialogs (Chromium)', function () {
  this.timeout(90_000);
  let red: NodeRedProcess;
  let editor: Editor;

  before(async function () {
    this.timeout(120_000);
    red = await NodeRedProcess.start(
      {
        flows: flows(await testModel('stories')),
        settings: QUIET_EDITOR_SETTINGS,
        credentials: { 'forms-guardrail': { signingKey: SIGNING_KEY } },
      },
      { EDGE_LLM_MODELS_DIR: testModelsDir() },
    );
    editor = await Editor.open(red.url);
  });

  after(async function () {
    this.timeout(30_000);
    await editor?.close();
    await red?.stop();
  });

  afterEach(async function () {
    await editor.cancelDialogs();
  });

  describe('guardrail', function () {
    const actions = () => editor.page.locator('ol.edge-llm-actions');

    it('shows example 02 as a form and gives back the same JSON (JSON → form → JSON)', async function () {
      await editor.openDialog('forms-guardrail');
      assert.equal(await shownView(editor, 'guardrail-policy-view'), 'form');
      const names = await actions()
        .locator(':scope > li .edge-llm-action-name')
        .evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value));
      assert.deepEqual(names, ['move_to', 'read_sensor', 'capture_image', 'set_valve', 'report']);
      const valve = await rowWith(actions(), '.edge-llm-action-name', 'set_valve');
      const position = await rowWith(valve.locator('ol.edge-llm-params'), '.edge-llm-param-name', 'position');
      assert.equal(await position.locator('.edge-llm-param-type').inputValue(), 'integer');
      assert.equal(await position.locator('.edge-llm-param-max').inputValue(), '100');
      assert.equal(await valve.locator('.edge-llm-action-approval').inputValue(), 'when');
      // the interlock's live value: a flow context path
      const interlock = editor.page.locator('ol.edge-llm-interlocks > li').first();
      assert.equal(await interlock.locator('.edge-llm-interlock-id').inputValue(), 'zone-too-hot');
      assert.equal(
        await interlock.locator('input.edge-llm-interlock-path').inputValue(),
        'zones.{params.zone}.temperature',
      );
      // set_valve's window of 5 moves per valve in 60 s
      const limit = editor.page.locator('ol.edge-llm-limits > li').first();
      assert.equal(await limit.locator('.edge-llm-limit-kind').inputValue(), 'window');
      assert.equal(await limit.locator('.edge-llm-limit-by').inputValue(), 'id');
      // what the form does not show is named, and kept
      const kept = await editor.page.locator('#guardrail-policy-form > .edge-llm-form-kept').innerText();
      assert.match(kept, /siteMap/);
      assert.match(kept, /plan/);
      assert.ok(await doneEnabled(editor), 'example 02 is valid');
      await dialogScreenshot(editor, 'form-guardrail');

      await toggle(editor, 'guardrail-policy-view', 'json');
      assert.equal(await code(editor, 'node-input-policy-editor'), POLICY_TEXT);
      await toggle(editor, 'guardrail-policy-view', 'form');
      assert.equal(await shownView(editor, 'guardrail-policy-view'), 'form');
      await toggle(editor, 'guardrail-policy-view', 'json');
      assert.equal(await code(editor, 'node-input-policy-editor'), POLICY_TEXT);

      // pasted in the JSON view (Monaco formats it its own way), through the form, back unchanged
      await editor.setCode('node-input-policy-editor', JSON.stringify(JSON.parse(POLICY_TEXT)));
      const pasted = await settled(editor, 'node-input-policy-editor');
      await toggle(editor, 'guardrail-policy-view', 'form');
      assert.equal(await shownView(editor, 'guardrail-policy-view'), 'form');
      await toggle(editor, 'guardrail-policy-view', 'json');
      assert.equal(await code(editor, 'node-input-policy-editor'), pasted);

      // one change in the form changes only that in the JSON, keys and order kept
      await toggle(editor, 'guardrail-policy-view', 'form');
      const torque = await rowWith(valve.locator('ol.edge-llm-params'), '.edge-llm-param-name', 'torque');
      await torque.locator('.edge-llm-param-max').fill('8');
      await toggle(editor, 'guardrail-policy-view', 'json');
      const expected = JSON.parse(POLICY_TEXT);
      expected.actions.set_valve.params.torque.max = 8;
      assert.equal(await code(editor, 'node-input-policy-editor'), JSON.stringify(expected, null, 2));
    });

    it('refuses max below min, an empty action name, a duplicate action and text in a number field', async function () {
      await editor.openDialog('forms-guardrail');
      const valve = await rowWith(actions(), '.edge-llm-action-name', 'set_valve');
      const position = await rowWith(valve.locator('ol.edge-llm-params'), '.edge-llm-param-name', 'position');
      const max = position.locator('.edge-llm-param-max');
      const min = position.locator('.edge-llm-param-min');
      await max.fill('-5');
      assert.equal(await doneEnabled(editor), false, 'Done is off with max below min');
      assert.ok(await isRed(max), 'max is red');
      assert.ok(await isRed(min), 'min is red');
      const problems = editor.page.locator('#guardrail-policy-problems');
      assert.match(
        await problems.innerText(),
        /set_valve\.params\.position: min \(0\) is greater than max \(-5\)/,
      );
      await dialogScreenshot(editor, 'form-guardrail-invalid');
      // the JSON view is not offered while the form cannot be written as JSON
      await max.fill('lots');
      assert.equal(await doneEnabled(editor), false);
      assert.ok(await isRed(max));
      await toggle(editor, 'guardrail-policy-view', 'json');
      assert.equal(await shownView(editor, 'guardrail-policy-view'), 'form');
      assert.match(
        await editor.page.locator('#guardrail-policy-note').innerText(),
        /Fix the fields marked red/,
      );
      await max.fill('100');
      assert.ok(await doneEnabled(editor), 'Done is back once max is 100');
      assert.equal(await isRed(max), false);

      const report = (await rowWith(actions(), '.edge-llm-action-name', 'report')).locator(
        '.edge-llm-action-name',
      );
      await report.fill('');
      assert.equal(await doneEnabled(editor), false, 'Done is off with an empty action name');
      assert.ok(await isRed(report));
      await report.fill('move_to');
      assert.equal(await doneEnabled(editor), false, 'Done is off with move_to twice');
      assert.ok(await isRed(report));
      assert.match(await problems.innerText(), /"move_to" is given twice/);
      await report.fill('report');
      assert.ok(await doneEnabled(editor));
    });

    it('keeps a JSON the form cannot show in the JSON view, with a message', async function () {
      await editor.openDialog('forms-guardrail');
      await toggle(editor, 'guardrail-policy-view', 'json');
      const odd = JSON.stringify(
        { actions: { label: { params: { text: { type: 'string', enum: ['a, b', 'c'] } } } } },
        null,
        2,
      );
      const held = await editor.setCode('node-input-policy-editor', odd);
      await toggle(editor, 'guardrail-policy-view', 'form');
      assert.equal(await shownView(editor, 'guardrail-policy-view'), 'json');
      assert.match(await editor.page.locator('#guardrail-policy-note').innerText(), /cannot show this/);
      assert.equal(await code(editor, 'node-input-policy-editor'), held);
      assert.ok(await doneEnabled(editor), 'a valid policy the form cannot show may still be saved');
      await editor.setCode('node-input-policy-editor', '{"actions": ');
      assert.equal(await doneEnabled(editor), false, 'Done is off with a JSON that does not parse');
      assert.match(await editor.page.locator('#guardrail-policy-problems').innerText(), /Not valid JSON/);
    });

    it('saves what the form shows: after Done and Deploy the node holds that policy', async function () {
      await editor.openDialog('forms-guardrail');
      const valve = await rowWith(actions(), '.edge-llm-action-name', 'set_valve');
      const torque = await rowWith(valve.locator('ol.edge-llm-params'), '.edge-llm-param-name', 'torque');
      await torque.locator('.edge-llm-param-max').fill('8');
      // a new action, with one parameter that needs a person above 50
      await editor.page
        .locator(
          '.edge-llm-form-section > .red-ui-editableList:has(ol.edge-llm-actions) > .red-ui-editableList-addButton',
        )
        .click();
      const added = actions().locator(':scope > li').last();
      await added.locator('.edge-llm-action-name').fill('set_fan');
      await added.locator('.edge-llm-action-description').fill('Set the cooling fan speed.');
      await added.locator('.red-ui-editableList-addButton', { hasText: 'parameter' }).click();
      const param = added.locator('ol.edge-llm-params > li').last();
      await param.locator('.edge-llm-param-name').fill('speed');
      await param.locator('.edge-llm-param-min').fill('0');
      await param.locator('.edge-llm-param-max').fill('100');
      await param.locator('.edge-llm-param-required').check();
      await added.locator('.edge-llm-action-approval').selectOption('when');
      await added.locator('.red-ui-editableList-addButton', { hasText: 'condition' }).click();
      const condition = added.locator('ol.edge-llm-approval-when > li').last();
      await condition.locator('.edge-llm-condition-param').fill('speed');
      await condition.locator('.edge-llm-condition-op').selectOption('>');
      await condition.locator('.red-ui-typedInput-container input.red-ui-typedInput-input').fill('50');
      assert.ok(
        await doneEnabled(editor),
        await editor.page.locator('#guardrail-policy-problems').innerText(),
      );
      await dialogScreenshot(editor, 'form-guardrail-good');
      await toggle(editor, 'guardrail-policy-view', 'json');
      const shown = await code(editor, 'node-input-policy-editor');
      const expected = JSON.parse(POLICY_TEXT);
      expected.actions.set_valve.params.torque.max = 8;
      expected.actions.set_fan = {
        description: 'Set the cooling fan speed.',
        params: { speed: { type: 'number', min: 0, max: 100, required: true } },
        approvalWhen: [{ param: 'speed', op: '>', value: 50 }],
      };
      assert.deepEqual(JSON.parse(shown), expected);
      await toggle(editor, 'guardrail-policy-view', 'form');
      assert.ok(await doneEnabled(editor));
      await editor.done();
      const note = await editor.deploy();
      assert.match(note, /Successfully deployed/, note);
      await editor.dismissNotifications();
      const saved = await savedNode(red, 'forms-guardrail');
      assert.equal(saved.policy, shown);
    });
  });

  describe('llm-plan', function () {
    const actions = () => editor.page.locator('ol.edge-llm-catalogue');

    it('shows the catalogue as a form and gives back the same JSON, unknown keys included', async function () {
      await editor.openDialog('forms-plan');
      assert.equal(await shownView(editor, 'llm-plan-catalogue-view'), 'form');
      const move = await rowWith(actions(), '.edge-llm-catalogue-name', 'move_to');
      const speed = await rowWith(
        move.locator('ol.edge-llm-catalogue-params'),
        '.edge-llm-catalogue-param-name',
        'speed',
      );
      assert.equal(await speed.locator('.edge-llm-catalogue-param-max').inputValue(), '1.5');
      assert.equal(await speed.locator('.edge-llm-catalogue-param-required').isChecked(), false);
      // the action's own note, after its parameters
      const kept = await move.locator(':scope > div > .edge-llm-form-kept').allInnerTexts();
      assert.match(kept.join('\n'), /x-owner/);
      assert.match(kept.join('\n'), /additionalProperties/);
      await dialogScreenshot(editor, 'form-llm-plan');
      await toggle(editor, 'llm-plan-catalogue-view', 'json');
      assert.equal(await code(editor, 'node-input-catalogue-editor'), CATALOGUE_TEXT);
      await toggle(editor, 'llm-plan-catalogue-view', 'form');
      // speed becomes required: the required list keeps its order and gains speed
      await speed.locator('.edge-llm-catalogue-param-required').check();
      await toggle(editor, 'llm-plan-catalogue-view', 'json');
      const expected = JSON.parse(CATALOGUE_TEXT);
      expected[0].params.required = ['zone', 'speed'];
      assert.equal(await code(editor, 'node-input-catalogue-editor'), JSON.stringify(expected, null, 2));
      // a catalogue that is not a list stays in the JSON view
      await editor.setCode('node-input-catalogue-editor', '{"name": "move_to"}');
      await toggle(editor, 'llm-plan-catalogue-view', 'form');
      assert.equal(await shownView(editor, 'llm-plan-catalogue-view'), 'json');
      assert.match(await editor.page.locator('#llm-plan-catalogue-note').innerText(), /cannot show this/);
      assert.equal(await doneEnabled(editor), false);
    });

    it('refuses max below min, an empty action name and a duplicate action', async function () {
      await editor.openDialog('forms-plan');
      const move = await rowWith(actions(), '.edge-llm-catalogue-name', 'move_to');
      const speed = await rowWith(
        move.locator('ol.edge-llm-catalogue-params'),
        '.edge-llm-catalogue-param-name',
        'speed',
      );
      const max = speed.locator('.edge-llm-catalogue-param-max');
      await max.fill('0');
      assert.equal(await doneEnabled(editor), false, 'Done is off with max below min');
      assert.ok(await isRed(max));
      assert.ok(await isRed(speed.locator('.edge-llm-catalogue-param-min')));
      assert.match(
        await editor.page.locator('#llm-plan-catalogue-problems').innerText(),
        /minimum \(0\.1\) is greater than maximum \(0\)/,
      );
      await dialogScreenshot(editor, 'form-llm-plan-invalid');
      await max.fill('1.5');
      assert.ok(await doneEnabled(editor));
      const report = (await rowWith(actions(), '.edge-llm-catalogue-name', 'report')).locator(
        '.edge-llm-catalogue-name',
      );
      await report.fill('');
      assert.equal(await doneEnabled(editor), false, 'Done is off with an empty name');
      assert.ok(await isRed(report));
      await report.fill('move_to');
      assert.equal(await doneEnabled(editor), false, 'Done is off with move_to twice');
      assert.ok(await isRed(report));
      await report.fill('Report');
      assert.equal(await doneEnabled(editor), false, 'Done is off with a name that is not lower_snake_case');
      assert.ok(await isRed(report));
      await report.fill('report');
      assert.ok(await doneEnabled(editor));
    });

    it('saves what the form shows: after Done and Deploy the node holds that catalogue', async function () {
      await editor.openDialog('forms-plan');
      await editor.page
        .locator('#llm-plan-catalogue-form > .red-ui-editableList > .red-ui-editableList-addButton')
        .click();
      const added = actions().locator(':scope > li').last();
      await added.locator('.edge-llm-catalogue-name').fill('set_valve');
      await added
        .locator('.edge-llm-catalogue-description')
        .fill('Move a valve to a position in percent open.');
      await added.locator('.red-ui-editableList-addButton').click();
      const param = added.locator('ol.edge-llm-catalogue-params > li').last();
      await param.locator('.edge-llm-catalogue-param-name').fill('position');
      await param.locator('.edge-llm-catalogue-param-type').selectOption('integer');
      await param.locator('.edge-llm-catalogue-param-min').fill('0');
      await param.locator('.edge-llm-catalogue-param-max').fill('100');
      await param.locator('.edge-llm-catalogue-param-required').check();
      assert.ok(
        await doneEnabled(editor),
        await editor.page.locator('#llm-plan-catalogue-problems').innerText(),
      );
      await dialogScreenshot(editor, 'form-llm-plan-good');
      await toggle(editor, 'llm-plan-catalogue-view', 'json');
      const shown = await code(editor, 'node-input-catalogue-editor');
      assert.deepEqual(JSON.parse(shown), [
        ...CATALOGUE,
        {
          name: 'set_valve',
          description: 'Move a valve to a position in percent open.',
          params: {
            type: 'object',
            properties: { position: { type: 'integer', minimum: 0, maximum: 100 } },
            required: ['position'],
            additionalProperties: false,
          },
        },
      ]);
      await toggle(editor, 'llm-plan-catalogue-view', 'form');
      await editor.setCode('node-input-instruction-editor', LONG_INSTRUCTION);
      assert.ok(await doneEnabled(editor));
      await editor.done();
      const note = await editor.deploy();
      assert.match(note, /Successfully deployed/, note);
      await editor.dismissNotifications();
      const saved = await savedNode(red, 'forms-plan');
      assert.equal(saved.catalogue, shown);
      assert.equal(saved.instruction, LONG_INSTRUCTION);
    });
  });

  describe('instructions', function () {
    for (const [id, editorId] of [
      ['forms-plan', 'node-input-instruction-editor'],
      ['forms-parse', 'node-input-instruction-editor'],
    ]) {
      it(`wraps a long instruction in the dialog of ${id.replace('forms-', 'llm-')}`, async function () {
        await editor.openDialog(id);
        await editor.setCode(editorId, LONG_INSTRUCTION);
        const box = editor.page.locator(`#${editorId}`);
        // Monaco draws the new text on a later frame: wait for it (a line that is not wrapped stays one)
        await editor.page
          .waitForFunction(
            (i) =>
              [...document.querySelectorAll(`#${i} .view-line`)].filter((l) => l.textContent?.trim()).length >
              1,
            editorId,
            { timeout: 5000 },
          )
          .catch(() => undefined);
        // one line of text, drawn as several lines that all fit in the editor's width
        const drawn = await box
          .locator('.view-line')
          .evaluateAll((lines) =>
            lines.map((l) => ({ right: l.getBoundingClientRect().right, text: l.textContent ?? '' })),
          );
        const right = (await box.boundingBox())!.x + (await box.boundingBox())!.width;
        assert.ok(drawn.filter((l) => l.text.trim()).length > 1, `wrapped: ${drawn.length} lines`);
        const widest = await box
          .locator('.view-line span')
          .evaluateAll((spans) => Math.max(...spans.map((s) => s.getBoundingClientRect().right)));
        assert.ok(widest <= right + 1, `text ends at ${widest}, the editor at ${right}`);
        await editor.screenshot(`instruction-${id}`, editor.page.locator('.red-ui-tray').last());
      });
    }

    it('wraps a long system prompt in the dialog of llm-chat', async function () {
      await editor.openDialog('forms-chat');
      const field = editor.page.locator('#node-input-system');
      await field.fill(LONG_INSTRUCTION);
      const size = await field.evaluate((el) => ({ scroll: el.scrollWidth, client: el.clientWidth }));
      assert.ok(size.scroll <= size.client, `no text beyond the right edge: ${JSON.stringify(size)}`);
    });
  });

  describe('every example', function () {
    const dialogs: Record<string, { node: string; view: string; editor: string }> = {
      guardrail: {
        node: 'forms-guardrail',
        view: 'guardrail-policy-view',
        editor: 'node-input-policy-editor',
      },
      'llm-plan': {
        node: 'forms-plan',
        view: 'llm-plan-catalogue-view',
        editor: 'node-input-catalogue-editor',
      },
    };
    for (const { file, type, name, text } of EXAMPLE_TEXTS) {
      it(`shows the ${type} "${name}" of ${file} as a form and gives back the same JSON`, async function () {
        const d = dialogs[type];
        await editor.openDialog(d.node);
        await toggle(editor, d.view, 'json');
        await editor.setCode(d.editor, text);
        const held = await settled(editor, d.editor);
        assert.deepEqual(JSON.parse(held), JSON.parse(text));
        await toggle(editor, d.view, 'form');
        assert.equal(await shownView(editor, d.view), 'form', 'the form can show it');
        assert.ok(await doneEnabled(editor), 'and it is valid');
        await toggle(editor, d.view, 'json');
        assert.equal(await code(editor, d.editor), held);
      });
    }
  });

  describe('the page', function () {
    it('raised no script error', function () {
      assert.deepEqual(editor.errors, []);
    });
  });
});
