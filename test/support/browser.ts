import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { REPO_ROOT } from './models';

/** Debian's `chromium` package (.ci/run installs it); EDGE_LLM_CHROMIUM points elsewhere. */
export const CHROMIUM = process.env.EDGE_LLM_CHROMIUM ?? '/usr/bin/chromium';

/** Screenshots of the editor tests (gitignored), kept by CI as artifacts. */
export const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts', 'editor');

/**
 * Settings that keep the editor from reaching out of a closed network or opening a welcome tour on
 * top of what a test clicks: no palette catalogue, no telemetry prompt, no update check.
 */
export const QUIET_EDITOR_SETTINGS = {
  editorTheme: { tours: false, projects: { enabled: false }, palette: { catalogues: [] } },
  telemetry: { enabled: false, updateNotification: false },
};

/** Chromium's background connections are refused in a closed network: switch them all off. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// The editor's own globals, as far as the tests read them inside the page.
interface EditorNode {
  id: string;
  type: string;
  valid?: boolean;
  validationErrors?: string[];
  [property: string]: unknown;
}
declare const RED: {
  nodes: {
    node(id: string): EditorNode | undefined;
    eachNode(cb: (n: EditorNode) => void): void;
    eachConfig(cb: (n: EditorNode) => void): void;
    getWorkspaceOrder(): string[];
    dirty(d: boolean): void;
  };
  editor: { validateNode(n: EditorNode): boolean };
  view: { selection(): { nodes?: EditorNode[] }; redraw(full: boolean): void };
  workspaces: { active(): string };
};

/** Replaces every flow of a running Node-RED through its admin API (a full deploy). */
export async function deployFlows(url: string, flows: object[]): Promise<void> {
  const res = await fetch(`${url}/flows`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
    body: JSON.stringify(flows),
  });
  if (!res.ok) throw new Error(`POST /flows: ${res.status} ${await res.text()}`);
}

export function sameJson(a: string, b: string): boolean {
  try {
    return JSON.stringify(JSON.parse(a)) === JSON.stringify(JSON.parse(b));
  } catch {
    return false;
  }
}

declare const monaco: {
  editor: { getEditors(): Array<{ getContainerDomNode(): HTMLElement; getValue(): string }> };
};

/** One headless Chromium on the Node-RED editor, with what a person would see and do there. */
export class Editor {
  /** Uncaught exceptions and console errors of the page: an editor script that throws shows here. */
  readonly errors: string[] = [];

  private constructor(
    private readonly context: BrowserContext,
    readonly page: Page,
    private readonly profile: string,
    readonly url: string,
  ) {}

  static async open(url: string): Promise<Editor> {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `No Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium), ` +
          'or point EDGE_LLM_CHROMIUM at a Chromium binary.',
      );
    }
    const profile = await mkdtemp(path.join(tmpdir(), 'edge-llm-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: { width: 1600, height: 1000 },
    });
    context.setDefaultTimeout(15_000);
    const page = context.pages()[0] ?? (await context.newPage());
    const editor = new Editor(context, page, profile, url);
    page.on('pageerror', (e) => {
      // Monaco's own async work (format on paste, diffing) can throw into a dialog that has just
      // closed; the same happens with Node-RED's core nodes. Only errors from elsewhere count.
      const frames = (e.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l));
      if (frames.length > 0 && frames.every((l) => l.includes('/vendor/monaco/'))) return;
      editor.errors.push(`page error: ${e.stack ?? e.message}`);
    });
    page.on('console', (m) => {
      if (m.type() === 'error') editor.errors.push(`console: ${m.text()} (${m.location().url})`);
    });
    await editor.reload();
    return editor;
  }

  /** Loads the editor and waits until the palette and the deployed flows are in. */
  async reload(): Promise<void> {
    await this.page.goto(this.url);
    await this.page.waitForFunction(
      () =>
        typeof RED !== 'undefined' &&
        !!RED.nodes &&
        RED.nodes.getWorkspaceOrder().length > 0 &&
        document.querySelectorAll('.red-ui-palette-node').length > 0 &&
        !document.querySelector('#red-ui-loading-progress:not([style*="none"])'),
    );
    // The editor draws the workspace on the next frames; let it settle before clicking.
    await this.quiet();
  }

  /**
   * Waits until nothing in the editor moves: no jQuery animation, no finite CSS transition or
   * animation (a tray sliding in, a notification fading), and two frames drawn since.
   */
  async quiet(): Promise<void> {
    await this.page.waitForFunction(() => {
      const jq = (window as unknown as { $?: (s: string) => { length: number } }).$;
      const moving = document
        .getAnimations()
        .filter((a) => a.playState === 'running' && a.effect?.getComputedTiming().iterations !== Infinity);
      return (!jq || jq(':animated').length === 0) && moving.length === 0;
    });
    await this.page.evaluate(
      () =>
        new Promise<void>((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => resolve()))),
    );
  }

  async close(): Promise<void> {
    await this.context.close();
    await rm(this.profile, { recursive: true, force: true });
  }

  paletteNode(type: string): Locator {
    return this.page.locator(`#red-ui-palette .red-ui-palette-node[data-palette-type="${type}"]`);
  }

  /** The node's shape on the canvas of the active flow. */
  canvasNode(id: string): Locator {
    return this.page.locator(`#red-ui-workspace-chart g.red-ui-flow-node-group[id="${id}"]`);
  }

  /** Drags a palette entry onto the canvas, as a person adds a node; returns the new node's id. */
  async dropFromPalette(type: string, x: number, y: number): Promise<string> {
    const entry = this.paletteNode(type);
    await entry.scrollIntoViewIfNeeded();
    const from = await entry.boundingBox();
    const chart = await this.page.locator('#red-ui-workspace-chart').boundingBox();
    if (!from || !chart) throw new Error(`${type}: palette entry or canvas not visible`);
    const mouse = this.page.mouse;
    await mouse.move(from.x + from.width / 2, from.y + from.height / 2);
    await mouse.down();
    await mouse.move(from.x + from.width / 2 + 20, from.y + from.height / 2, { steps: 4 });
    await mouse.move(chart.x + x, chart.y + y, { steps: 10 });
    await mouse.up();
    const id = await this.page.evaluate(
      (t) => RED.view.selection().nodes?.find((n) => n.type === t)?.id,
      type,
    );
    if (!id) throw new Error(`${type}: dropping the palette entry added no node`);
    return id;
  }

  /** Opens a node's edit dialog by double-clicking it on the canvas. */
  async openDialog(id: string): Promise<Locator> {
    await this.canvasNode(id).locator('.red-ui-flow-node').dblclick();
    const tray = this.page.locator('.red-ui-tray').last();
    await tray.locator('#node-dialog-ok').waitFor({ state: 'visible' });
    await this.quiet(); // the tray slides in
    return tray;
  }

  /**
   * Replaces the text of a code editor (Monaco) in an open dialog by selecting all and pasting, as
   * a person pastes JSON (typing it would have Monaco close brackets on its own). Returns the text
   * the editor then holds.
   */
  async setCode(editorId: string, text: string): Promise<string> {
    const page = this.page;
    const focused = () => page.evaluate((id) => !!document.activeElement?.closest(`#${id}`), editorId);
    const held = () =>
      page.evaluate(
        (id) =>
          monaco.editor
            .getEditors()
            // editors of dialogs closed before are detached, not always gone
            .filter(
              (e) => document.contains(e.getContainerDomNode()) && e.getContainerDomNode().closest(`#${id}`),
            )
            .pop()
            ?.getValue(),
        editorId,
      );
    // Monaco reformats pasted JSON (indents it): compare what it means, or its text without spaces
    const squeeze = (t: string) => t.replace(/\s+/g, '');
    const took = (h: string | undefined) =>
      h !== undefined && (sameJson(h, text) || squeeze(h) === squeeze(text));
    let now: string | undefined;
    // a dialog that has just opened may still be laying its editors out: try again a few times
    for (let attempt = 0; attempt < 5; attempt++) {
      if (attempt > 0) await this.quiet();
      await page
        .locator(`#${editorId} .monaco-editor .overflow-guard`)
        .click({ position: { x: 80, y: 8 }, timeout: 2000 })
        .catch(() => undefined);
      if (!(await focused())) continue;
      await page.keyboard.press('ControlOrMeta+A');
      await page.evaluate((t) => {
        const data = new DataTransfer();
        data.setData('text/plain', t);
        const paste = new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true });
        document.activeElement?.dispatchEvent(paste);
      }, text);
      now = await held();
      if (took(now)) return now as string;
    }
    throw new Error(`#${editorId} holds ${JSON.stringify(now)} after pasting ${JSON.stringify(text)}`);
  }

  /** Replaces the value of an input of an open dialog by typing (into its typed input if it has one). */
  async type(selector: string, text: string): Promise<void> {
    const typed = this.page.locator(
      `${selector} + .red-ui-typedInput-container input.red-ui-typedInput-input`,
    );
    const field = (await typed.count()) > 0 ? typed : this.page.locator(selector);
    await field.fill('');
    await field.pressSequentially(text);
  }

  async done(): Promise<void> {
    // a dialog that checks what it holds keeps Done disabled until the check has answered
    await this.page.locator('#node-dialog-ok:not(.disabled)').waitFor();
    await this.page.locator('#node-dialog-ok').click();
    await this.page.locator('#node-dialog-ok').waitFor({ state: 'detached' });
    await this.quiet();
  }

  /** Import → Examples → module → title, onto a new flow, as the editor's menu offers it. */
  async importExample(module: string, title: string): Promise<void> {
    const page = this.page;
    await page.locator('#red-ui-header-button-sidemenu').click();
    await page.locator('#menu-item-import').click();
    const tabs = page.locator('#red-ui-clipboard-dialog-import-tabs');
    await tabs.locator('a[href="#red-ui-clipboard-dialog-import-tab-examples"]').click();
    const library = page.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await library.locator('.red-ui-treeList-label', { hasText: module }).first().click();
    await library.locator('.red-ui-treeList-label', { hasText: title }).first().click();
    await this.screenshot(`import-${title}`);
    const newFlow = page.locator('#red-ui-clipboard-dialog-import-opt-new');
    if (!(await newFlow.evaluate((el) => el.classList.contains('selected')))) await newFlow.click();
    await page.locator('#red-ui-clipboard-dialog-ok').click();
    await page.locator('#red-ui-clipboard-dialog-ok').waitFor({ state: 'hidden' });
    // an import lands as a moving selection: click once to drop it on the canvas
    await this.quiet();
    await page.mouse.click(900, 600);
    await this.quiet();
    // an example brings its own flow tab: show it, as the person importing would look at it
    await page.locator('#red-ui-workspace-tabs .red-ui-tab').last().locator('a').first().click();
    await page.waitForTimeout(300);
  }

  /** Every node of the editor's flows (config nodes included) with its defined properties. */
  flowNodes(): Promise<Array<{ id: string; type: string; [k: string]: unknown }>> {
    return this.page.evaluate(() => {
      const out: Array<{ id: string; type: string; [k: string]: unknown }> = [];
      const grab = (n: EditorNode) => {
        const o: { id: string; type: string; [k: string]: unknown } = { id: n.id, type: n.type };
        const def = (n as { _def?: { defaults?: Record<string, unknown> } })._def;
        for (const k of Object.keys(def?.defaults ?? {})) o[k] = n[k];
        out.push(o);
      };
      RED.nodes.eachNode(grab);
      RED.nodes.eachConfig(grab);
      return out;
    });
  }

  /** Sets properties and credentials of nodes the way a Done in their dialogs would. */
  async changeNodes(
    changes: Array<{ id: string; properties: Record<string, unknown>; credentials?: Record<string, string> }>,
  ): Promise<void> {
    await this.page.evaluate((list) => {
      for (const { id, properties, credentials } of list) {
        const n = RED.nodes.node(id);
        if (!n) throw new Error(`no node ${id}`);
        Object.assign(n, properties);
        if (credentials) n.credentials = { ...credentials };
        n.changed = true;
        n.dirty = true;
        RED.editor.validateNode(n);
      }
      RED.nodes.dirty(true);
      RED.view.redraw(true);
    }, changes);
  }

  /** Cancels every open dialog, config dialogs first. */
  async cancelDialogs(): Promise<void> {
    for (const id of ['#node-config-dialog-cancel', '#node-dialog-cancel']) {
      const buttons = this.page.locator(`${id}:visible`);
      while ((await buttons.count()) > 0) {
        await buttons.last().click();
        await this.quiet();
      }
    }
  }

  /** The editor's own view of a node: whether it is valid and what it says is wrong. */
  node(id: string): Promise<EditorNode | undefined> {
    return this.page.evaluate((i) => {
      const n = RED.nodes.node(i);
      return n && JSON.parse(JSON.stringify(n, (k, v) => (k.startsWith('_') ? undefined : v)));
    }, id);
  }

  /** The red triangle the editor draws on a node it considers not properly configured. */
  errorBadge(id: string): Locator {
    return this.canvasNode(id).locator('.red-ui-flow-node-error');
  }

  /** Hovers the red triangle of a node and returns the tooltip it shows. */
  async errorTooltip(id: string): Promise<string> {
    await this.errorBadge(id).hover();
    // the view draws it in SVG after half a second, one <text> per line
    const tip = this.page.locator('#red-ui-workspace-chart .red-ui-flow-port-tooltip').last();
    await tip.waitFor({ state: 'visible' });
    const text = (await tip.locator('text').allTextContents()).join('\n');
    await this.page.mouse.move(5, 500);
    return text;
  }

  /**
   * Clicks Deploy and returns the notification the editor shows: "Successfully deployed" or the
   * warning about nodes that are not properly configured.
   */
  async deploy(): Promise<string> {
    const before = await this.page.locator('.red-ui-notification').count();
    await this.page.locator('#red-ui-header-button-deploy').click();
    const note = this.page.locator('.red-ui-notification').nth(before);
    await note.waitFor({ state: 'visible' });
    return (await note.innerText()).trim();
  }

  /**
   * Closes every open notification (they stack up over the canvas) through its own `close`, as a
   * click on it does: one only taken out of the page would still be closed by its timer later,
   * which then throws in the editor.
   */
  async dismissNotifications(): Promise<void> {
    await this.page.evaluate(() =>
      document.querySelectorAll<HTMLElement & { close?: () => void }>('.red-ui-notification').forEach((n) => {
        n.dataset.dismissed = 'yes';
        if (n.close) n.close();
        else n.remove();
      }),
    );
    // they slide away; one that comes meanwhile stays
    await this.page.waitForFunction(() => !document.querySelector('.red-ui-notification[data-dismissed]'));
  }

  /** The whole window, or only `of` (the debug sidebar, a dialog). */
  async screenshot(name: string, of?: Locator): Promise<string> {
    await mkdir(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, `${name.replace(/[^\w.-]+/g, '_')}.png`);
    await (of ?? this.page).screenshot({ path: file });
    return file;
  }

  /** Clicks the button on the left of an inject node and returns the notification it shows. */
  async clickInjectButton(id: string): Promise<string> {
    const before = await this.page.locator('.red-ui-notification').count();
    await this.canvasNode(id).locator('.red-ui-flow-node-button-button').click();
    const note = this.page.locator('.red-ui-notification').nth(before);
    await note.waitFor({ state: 'visible' });
    return (await note.innerText()).trim();
  }

  /** The status text drawn under a node on the canvas ('' when it shows none). */
  async nodeStatus(id: string): Promise<string> {
    const label = this.canvasNode(id).locator('.red-ui-flow-node-status-label');
    return (await label.count()) > 0 ? ((await label.textContent()) ?? '') : '';
  }

  /**
   * Opens the debug sidebar by clicking its tab, as a person does, and returns the sidebar. Node-RED
   * 4 shows the tab in the sidebar's tab row, or as an icon where the row is too narrow; Node-RED 5
   * has a tab bar under the canvas whose buttons toggle their tab, and shows debug from the start.
   */
  async openDebugSidebar(): Promise<Locator> {
    const list = this.page.locator('#red-ui-sidebar .red-ui-debug-content-list');
    if (!(await list.isVisible())) {
      const tab = this.page.locator(
        [
          '#red-ui-tab-debug-link-button:visible',
          '#red-ui-tab-debug > a:visible',
          '.red-ui-sidebar-tab-bar button[data-tab-id="debug"]:visible',
        ].join(', '),
      );
      await tab.first().click();
      await list.waitFor({ state: 'visible' });
    }
    return this.page.locator('#red-ui-sidebar');
  }

  /** Drags the bar between the canvas and the sidebar to the left, making the sidebar wider. */
  async widenSidebar(by: number): Promise<void> {
    const bar = await this.page.locator('#red-ui-sidebar-separator').boundingBox();
    if (!bar) throw new Error('no sidebar separator');
    const [x, y] = [bar.x + bar.width / 2, bar.y + bar.height / 2];
    await this.page.mouse.move(x, y);
    await this.page.mouse.down();
    await this.page.mouse.move(x - by, y, { steps: 10 });
    await this.page.mouse.up();
    await this.quiet();
  }

  /**
   * Opens a value in a debug message by clicking its rows, as a person unfolds it: the message
   * itself, then the property `key`, then each entry of it. Returns the text the message then shows.
   */
  async unfoldDebugMessage(message: Locator, key: string): Promise<string> {
    await message.locator('.red-ui-debug-msg-object-header').first().click();
    // the key of a row, not a key in the one-line summary of a value
    const row = (k: RegExp) =>
      message.locator('.red-ui-debug-msg-row > .red-ui-debug-msg-object-key', { hasText: k });
    await row(new RegExp(`^${key}$`))
      .first()
      .click();
    // entries of an object or array are built when it opens: these are the ones of `key`
    const entries = row(/^\d+$/);
    for (let i = 0, n = await entries.count(); i < n; i++) await entries.nth(i).click();
    // its first line at the top of the list, as a person scrolls to read it
    await message.evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await this.quiet();
    return message.innerText();
  }

  /**
   * The messages of one debug node as the debug sidebar shows them: the node name and property
   * line, and the one-line summary of the value (`{ steps: array[4], … }`).
   */
  debugMessages(debugNodeId: string): Promise<Array<{ meta: string; summary: string }>> {
    return this.page.evaluate((id) => {
      const cls = `.red-ui-debug-msg.red-ui-debug-msg-node-${id.replace(/\./g, '_')}`;
      return [...document.querySelectorAll<HTMLElement>(`#red-ui-sidebar ${cls}`)].map((el) => ({
        meta: (el.querySelector('.red-ui-debug-msg-meta') as HTMLElement | null)?.innerText ?? '',
        summary:
          (el.querySelector('.red-ui-debug-msg-payload') as HTMLElement | null)?.innerText.replace(
            /\s+/g,
            ' ',
          ) ?? '',
      }));
    }, debugNodeId);
  }
}
