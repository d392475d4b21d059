/**
 * The examples as a Node-RED user meets them first: imported through Import → Examples into a real
 * Node-RED and drawn by a real Chromium. Each tab is measured from the page itself (every node's
 * shape with its label, ports and button; comments), and must have no two of them overlapping and
 * few wires crossing. Then the three examples imported one after another must share one model
 * runtime. Screenshots and the measured layout go to test-artifacts/editor/.
 */
import * as assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { ARTIFACTS, deployFlows, Editor, QUIET_EDITOR_SETTINGS } from './support/browser';
import { TestBroker } from './support/broker';
import { REPO_ROOT, testModel, testModelsDir } from './support/models';
import { NodeRedProcess, eventually } from './support/node-red-process';
import { demoCredentials, forDemo, randomDemoKeys, type FlowNode } from '../examples/demo/flows';

const MODULE = 'node-red-contrib-edge-llm';

/**
 * The most wire pairs that may cross on each tab. What is left are the mission node's loops: the
 * editor draws a wire back into the mission (a plan, a decision, an ack) from its source's right side
 * round to the mission's input on the left, and that returning wire crosses the wires of its own loop
 * (the one that went out to its source, or its source's other output), and at times those of the loop
 * beside it, whatever the rows. In 01 and 02 the guardrail's three outputs also go to a link out to the
 * approval screen beside their wires back into the mission: each output's two wires leave one port
 * for two targets, so the pairs of different ports cross (4 in 01, 8 in 02 where the plan's return
 * wire passes too). Every other crossing is laid out away; the screen's own row has none.
 */
const MAX_CROSSINGS: Record<string, number> = {
  '01 - Predictive maintenance': 13,
  '02 - Inspection robot mission': 15,
  '03 - Privacy-first local assistant': 0,
};
const EXAMPLES = Object.keys(MAX_CROSSINGS);

/** A node's extent on the canvas, in canvas units: its shape, label, ports and button together. */
interface Box {
  id: string;
  type: string;
  name: string;
  left: number;
  top: number;
  right: number;
  bottom: number;
  /** The node's own centre and size, as the editor keeps them. */
  x: number;
  y: number;
  w: number;
  h: number;
}

/** A wire as drawn: points sampled along its SVG path, in canvas units. */
interface Wire {
  source: string;
  port: number;
  target: string;
  points: Array<[number, number]>;
}

// The editor's own globals, as far as this spec reads them inside the page.
interface PageNode {
  id: string;
  type: string;
  name?: string;
  x: number;
  y: number;
  w: number;
  h: number;
  z?: string;
  users?: unknown[];
  _def: { defaults: Record<string, { type?: string }>; category?: string };
  [property: string]: unknown;
}
declare const RED: {
  nodes: {
    filterNodes(f: { z: string }): PageNode[];
    eachNode(cb: (n: PageNode) => void): void;
    eachConfig(cb: (n: PageNode) => void): void;
  };
  workspaces: { active(): string };
  view: { scale(): number };
};

/** Every node box and wire of the flow tab on show, measured from the page. */
function measureTab(editor: Editor): Promise<{ boxes: Box[]; wires: Wire[] }> {
  return editor.page.evaluate(() => {
    const scale = RED.view.scale();
    const boxes: Box[] = [];
    for (const n of RED.nodes.filterNodes({ z: RED.workspaces.active() })) {
      const group = document.querySelector<SVGGElement>(
        `#red-ui-workspace-chart g.red-ui-flow-node-group[id="${n.id}"]`,
      );
      const body = group?.querySelector<SVGGraphicsElement>('.red-ui-flow-node');
      if (!group || !body) continue;
      // the body's page rectangle is where the node's own x, y, w, h are: map the rest from it
      const anchor = body.getBoundingClientRect();
      const toCanvasX = (px: number) => n.x - n.w / 2 + (px - anchor.left) / scale;
      const toCanvasY = (py: number) => n.y - n.h / 2 + (py - anchor.top) / scale;
      let [left, top, right, bottom] = [Infinity, Infinity, -Infinity, -Infinity];
      for (const el of [group, ...group.querySelectorAll<SVGGraphicsElement>('*')]) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
        if (el === group) continue; // the union of its children, measured one by one below
        left = Math.min(left, toCanvasX(r.left));
        top = Math.min(top, toCanvasY(r.top));
        right = Math.max(right, toCanvasX(r.right));
        bottom = Math.max(bottom, toCanvasY(r.bottom));
      }
      boxes.push({
        id: n.id,
        type: n.type,
        name: String(n.name ?? ''),
        left,
        top,
        right,
        bottom,
        x: n.x,
        y: n.y,
        w: n.w,
        h: n.h,
      });
    }
    const wires: Wire[] = [];
    for (const el of document.querySelectorAll<SVGGElement>('#red-ui-workspace-chart g.red-ui-flow-link')) {
      const d = (el as unknown as { __data__?: { source: PageNode; target: PageNode; sourcePort: number } })
        .__data__;
      const line = el.querySelector<SVGPathElement>('path.red-ui-flow-link-line');
      if (!d?.source || !d.target || !line) continue;
      const length = line.getTotalLength();
      const steps = Math.max(8, Math.ceil(length / 6));
      const points: Array<[number, number]> = [];
      for (let i = 0; i <= steps; i++) {
        const p = line.getPointAtLength((length * i) / steps);
        points.push([p.x, p.y]);
      }
      wires.push({ source: d.source.id, port: d.sourcePort, target: d.target.id, points });
    }
    return { boxes, wires };
  });
}

/** Pairs of boxes that share some area. */
function overlaps(boxes: Box[]): Array<[Box, Box]> {
  const pairs: Array<[Box, Box]> = [];
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, b] = [boxes[i], boxes[j]];
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 0 && h > 0) pairs.push([a, b]);
    }
  return pairs;
}

type Point = [number, number];
function segmentsCross(p: Point, q: Point, r: Point, s: Point): boolean {
  const cross = (o: Point, a: Point, b: Point) =>
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const d1 = cross(r, s, p);
  const d2 = cross(r, s, q);
  const d3 = cross(p, q, r);
  const d4 = cross(p, q, s);
  return d1 * d2 < 0 && d3 * d4 < 0;
}

/**
 * Pairs of wires whose drawn paths cross. Wires from one output, or into one node, meet at their
 * port by design: those pairs are not counted.
 */
function crossings(wires: Wire[]): Array<[Wire, Wire]> {
  const pairs: Array<[Wire, Wire]> = [];
  for (let i = 0; i < wires.length; i++)
    for (let j = i + 1; j < wires.length; j++) {
      const [a, b] = [wires[i], wires[j]];
      if ((a.source === b.source && a.port === b.port) || a.target === b.target) continue;
      let crossed = false;
      for (let k = 1; k < a.points.length && !crossed; k++)
        for (let m = 1; m < b.points.length && !crossed; m++)
          crossed = segmentsCross(a.points[k - 1], a.points[k], b.points[m - 1], b.points[m]);
      if (crossed) pairs.push([a, b]);
    }
  return pairs;
}

/** What a failure names: a node by its type and name (or id). */
function label(box: Box | undefined, id: string): string {
  return box ? `${box.type} "${box.name || box.id}"` : id;
}

/** The flow tab, scrolled to its top left corner, as the person who imported it sees it. */
async function screenshotTab(editor: Editor, name: string): Promise<void> {
  await editor.dismissNotifications(); // "Imported: 3 configuration nodes" would cover the flow
  await editor.page.mouse.move(1200, 1150); // no tooltip of the flow's tab over it
  await editor.page.evaluate(() => {
    const chart = document.querySelector('#red-ui-workspace-chart');
    if (chart) chart.scrollTo(0, 0);
  });
  await editor.quiet();
  await editor.screenshot(name, editor.page.locator('#red-ui-workspace-chart'));
}

/**
 * Import → Examples for an example that brings a config node already in the editor (the shared
 * model runtime): the editor says some nodes already exist and offers to view them or import a
 * copy. `copy` takes "Import copy" (new ids; the existing config node is kept and used);
 * `selected` takes "View nodes...", where the existing config node is left unticked, then "Import
 * selected".
 */
async function importOverExisting(editor: Editor, title: string, how: 'copy' | 'selected'): Promise<void> {
  const { page } = editor;
  // Import → Examples again: the dialog keeps the tree as it was left, the module already open
  await page.locator('#red-ui-header-button-sidemenu').click();
  await page.locator('#menu-item-import').click();
  const library = page.locator('#red-ui-clipboard-dialog-import-tab-examples');
  const examplesTab = page.locator(
    '#red-ui-clipboard-dialog-import-tabs a[href="#red-ui-clipboard-dialog-import-tab-examples"]',
  );
  // The dialog sets up its tabs as it opens and can take a click on a tab back: click until it shows.
  await eventually('the Examples tab of the import dialog', 15_000, async () => {
    await examplesTab.click();
    return (await library.isVisible()) || undefined;
  });
  const entry = library.locator('.red-ui-treeList-label:visible', { hasText: title });
  const module = library.locator('.red-ui-treeList-label:visible', { hasText: MODULE }).first();
  // The tab's tree is drawn after the tab shows: wait for it before asking whether the module is open.
  await module.waitFor({ state: 'visible' });
  await editor.quiet();
  if ((await entry.count()) === 0) await module.click();
  await entry.first().click();
  const newFlow = page.locator('#red-ui-clipboard-dialog-import-opt-new');
  if (!(await newFlow.evaluate((el) => el.classList.contains('selected')))) await newFlow.click();
  await page.locator('#red-ui-clipboard-dialog-ok').click();
  await page.locator('#red-ui-clipboard-dialog-ok').waitFor({ state: 'hidden' });
  const note = page.locator('.red-ui-notification', { hasText: 'already exist' }).last();
  await note.waitFor({ state: 'visible' });
  await editor.quiet();
  await editor.screenshot(`import-conflict-${title}`);
  if (how === 'copy') {
    await note.locator('button', { hasText: 'Import copy' }).click();
  } else {
    await note.locator('button', { hasText: 'View nodes' }).click();
    const ok = page.locator('#red-ui-clipboard-dialog-import-conflict');
    await ok.waitFor({ state: 'visible' });
    await editor.quiet();
    await editor.screenshot(`import-conflict-view-${title}`);
    await ok.click();
    await ok.waitFor({ state: 'hidden' });
  }
  await editor.quiet();
  await page.locator('#red-ui-workspace-tabs .red-ui-tab').last().locator('a').first().click();
  await editor.quiet();
}

describe('the examples as a person first sees them in the editor (Chromium)', function () {
  this.timeout(120_000);
  let red: NodeRedProcess;
  let editor: Editor;
  let broker: TestBroker;
  let model: string;
  const report: string[] = [];

  before(async function () {
    model = await testModel('stories');
    broker = await TestBroker.start();
    red = await NodeRedProcess.start(
      { flows: [], settings: QUIET_EDITOR_SETTINGS },
      { EDGE_LLM_MODELS_DIR: testModelsDir() },
    );
    editor = await Editor.open(red.url);
    // wide enough to show each example whole beside the palette and the sidebar
    await editor.page.setViewportSize({ width: 2200, height: 1200 });
  });

  after(async function () {
    this.timeout(30_000);
    if (report.length > 0) console.log(`      layout:\n${report.map((l) => `        ${l}`).join('\n')}`);
    await editor?.close();
    await red?.stop();
    await broker?.stop();
  });

  it('has one llm-runtime config node, the same in every example, for the import to reuse', async function () {
    const runtimes: string[] = [];
    for (const title of EXAMPLES) {
      const file = JSON.parse(
        await readFile(path.join(REPO_ROOT, 'examples', `${title}.json`), 'utf8'),
      ) as FlowNode[];
      const own = file.filter((n) => n.type === 'llm-runtime');
      assert.equal(own.length, 1, `${title}: one llm-runtime`);
      runtimes.push(JSON.stringify(own[0]));
    }
    assert.deepEqual(new Set(runtimes).size, 1, runtimes.join('\n'));
  });

  for (const title of EXAMPLES) {
    it(`draws "${title}" with no node, label or comment over another, and at most ${MAX_CROSSINGS[title]} crossing wires`, async function () {
      await deployFlows(red.url, []);
      await editor.reload();
      await editor.importExample(MODULE, title);
      await screenshotTab(editor, `tab-${title}`);
      const { boxes, wires } = await measureTab(editor);
      await mkdir(ARTIFACTS, { recursive: true });
      await writeFile(
        path.join(ARTIFACTS, `layout-${title.replace(/[^\w.-]+/g, '_')}.json`),
        JSON.stringify(
          { boxes, wires: wires.map(({ points, ...w }) => ({ ...w, points: points.length })) },
          null,
          1,
        ),
      );
      const file = JSON.parse(
        await readFile(path.join(REPO_ROOT, 'examples', `${title}.json`), 'utf8'),
      ) as FlowNode[];
      const onCanvas = file.filter((n) => n.type !== 'tab' && n.x !== undefined);
      assert.equal(boxes.length, onCanvas.length, 'every node of the example measured on the canvas');
      assert.ok(wires.length > 0, 'the wires measured');

      const byId = new Map(boxes.map((b) => [b.id, b]));
      const over = overlaps(boxes).map(([a, b]) => `${label(a, a.id)} and ${label(b, b.id)}`);
      const crossed = crossings(wires).map(
        ([a, b]) =>
          `${label(byId.get(a.source), a.source)} → ${label(byId.get(a.target), a.target)} crosses ` +
          `${label(byId.get(b.source), b.source)} → ${label(byId.get(b.target), b.target)}`,
      );
      report.push(`${title}: ${over.length} overlapping pairs, ${crossed.length} crossing wire pairs`);
      assert.deepEqual(over, [], `${over.length} overlapping pairs on "${title}"`);
      assert.ok(
        crossed.length <= MAX_CROSSINGS[title],
        `${crossed.length} crossing wire pairs on "${title}":\n${crossed.join('\n')}`,
      );
    });
  }

  it('imports the three examples one after another onto one shared model runtime, and deploys them', async function () {
    this.timeout(240_000);
    await deployFlows(red.url, []);
    await editor.reload();
    await editor.importExample(MODULE, EXAMPLES[0]);
    await importOverExisting(editor, EXAMPLES[1], 'copy');
    await importOverExisting(editor, EXAMPLES[2], 'selected');

    const seen = await editor.page.evaluate(() => {
      const runtimes: Array<{ id: string; users: number }> = [];
      RED.nodes.eachConfig((n) => {
        if (n.type === 'llm-runtime') runtimes.push({ id: n.id, users: n.users?.length ?? 0 });
      });
      const uses: Array<{ id: string; type: string; runtime: unknown }> = [];
      const tabs = new Set<string>();
      RED.nodes.eachNode((n) => {
        if (n.z) tabs.add(n.z);
        for (const [prop, def] of Object.entries(n._def.defaults))
          if (def.type === 'llm-runtime') uses.push({ id: n.id, type: n.type, runtime: n[prop] });
      });
      return { runtimes, uses, tabs: tabs.size };
    });
    assert.equal(seen.tabs, 3, 'three example tabs imported');
    assert.equal(seen.runtimes.length, 1, `one llm-runtime: ${JSON.stringify(seen.runtimes)}`);
    const [runtime] = seen.runtimes;
    // 01: llm-parse, llm-plan; 02: llm-parse, llm-plan; 03: llm-parse
    assert.equal(seen.uses.length, 5, JSON.stringify(seen.uses));
    for (const use of seen.uses)
      assert.equal(use.runtime, runtime.id, `${use.type} ${use.id} on the shared runtime`);
    assert.equal(runtime.users, seen.uses.length);

    // The configuration nodes sidebar, as a person checks it: one "Local model", used by all five.
    await editor.page.locator('#red-ui-header-button-sidemenu').click();
    await editor.page.locator('#menu-item-config-nodes').click();
    const sidebar = await eventually('the llm-runtime entries in the config sidebar', 10_000, async () => {
      const entries = await editor.page.evaluate(() => {
        const header = [...document.querySelectorAll('li.red-ui-palette-node-config-type')].find(
          (li) => li.textContent === 'llm-runtime' && (li as HTMLElement).offsetParent !== null,
        );
        const found: Array<{ label: string; users: string }> = [];
        for (let li = header?.nextElementSibling; li; li = li.nextElementSibling) {
          if (li.classList.contains('red-ui-palette-node-config-type')) break;
          found.push({
            label: (li.querySelector('.red-ui-palette-label') as HTMLElement | null)?.innerText ?? '',
            users:
              (li.querySelector('.red-ui-palette-icon-container') as HTMLElement | null)?.innerText ?? '',
          });
        }
        return found;
      });
      return entries.length > 0 ? entries : undefined;
    });
    await editor.quiet();
    await editor.screenshot('config-sidebar-after-three-examples');
    assert.deepEqual(sidebar, [{ label: 'Local model', users: String(seen.uses.length) }]);

    // Set the model, the broker and the keys as `npm start` does, then deploy.
    const nodes = (await editor.flowNodes()) as FlowNode[];
    const adjusted = forDemo(nodes, { model, mqttUrl: broker.url });
    const credentials = demoCredentials(nodes, randomDemoKeys());
    await editor.changeNodes(
      nodes
        .map((n, i) => ({
          id: n.id,
          properties: Object.fromEntries(Object.entries(adjusted[i]).filter(([k, v]) => n[k] !== v)),
          credentials: credentials[n.id],
        }))
        .filter((c) => Object.keys(c.properties).length > 0 || c.credentials),
    );
    const logged = red.output.length;
    const note = await editor.deploy();
    assert.match(note, /Successfully deployed/, note);
    await editor.dismissNotifications();
    const deployed = (await (await red.get('/flows')).json()) as FlowNode[];
    assert.deepEqual(
      deployed.filter((n) => n.type === 'llm-runtime').map((n) => n.id),
      [runtime.id],
    );
    const infos = await eventually('the model loaded', 60_000, async () => {
      const list = (await (await red.get('/edge-llm/runtimes')).json()) as Array<{ state: string }>;
      return list.length > 0 && list.every((i) => i.state !== 'loading') ? list : undefined;
    });
    assert.equal(infos.length, 1, JSON.stringify(infos));
    assert.equal(infos[0].state, 'ready', JSON.stringify(infos));
    assert.doesNotMatch(red.output.slice(logged), /\[error\]/, red.output.slice(logged));

    // Deployed, the nodes show their status under them: it too stays clear of the node below.
    const tabs = editor.page.locator('#red-ui-workspace-tabs .red-ui-tab');
    for (let i = 1; i <= 3; i++) {
      await tabs.nth(i).locator('a').first().click();
      await eventually('the nodes of the tab show their status', 30_000, async () =>
        (await editor.page.locator('#red-ui-workspace-chart .red-ui-flow-node-status-label').count()) > 0
          ? true
          : undefined,
      );
      await editor.quiet();
      const title = EXAMPLES[i - 1];
      await screenshotTab(editor, `tab-${title}-deployed`);
      const over = overlaps((await measureTab(editor)).boxes).map(
        ([a, b]) => `${label(a, a.id)} and ${label(b, b.id)}`,
      );
      assert.deepEqual(over, [], `deployed "${title}": ${over.length} overlapping pairs`);
    }
    assert.deepEqual(editor.errors, [], 'no script error in the page');
  });
});
