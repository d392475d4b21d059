/**
 * What a user gets: `npm pack`, then `npm install <tarball>` into a fresh Node-RED user directory
 * (dependencies from the npm registry, node-llama-cpp's prebuilt binaries with them), then a real
 * Node-RED on it that shows every node in the palette. One install per run: it takes a while.
 */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Editor, QUIET_EDITOR_SETTINGS } from './support/browser';
import { NodeRedProcess } from './support/node-red-process';
import { REPO_ROOT, testModel } from './support/models';

const run = promisify(execFile);
const MODULE = 'node-red-contrib-edge-llm';

/** What the tarball may hold: the compiled runtime and nodes, the examples, the README, package.json. */
const SHIPPED = [
  /^dist\/lib\//,
  /^dist\/nodes\//,
  /^examples\//,
  /^resources\/[\w-]+\.js$/,
  /^README\.md$/,
  /^LICENSE$/,
  /^package\.json$/,
];

describe('the npm package (npm pack, npm install, Node-RED)', function () {
  this.timeout(60_000);
  let work: string;
  let tarball: string;
  let files: string[];
  let pkg: { version: string; 'node-red': { nodes: Record<string, string> } };
  let red: NodeRedProcess | undefined;

  before(async function () {
    this.timeout(600_000);
    pkg = JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8'));
    work = await mkdtemp(path.join(tmpdir(), 'edge-llm-pack-'));
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: REPO_ROOT,
      maxBuffer: 16 << 20,
    });
    const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = path.join(work, packed.filename);
    files = packed.files.map((f) => f.path);

    const userDir = path.join(work, 'node-red');
    await mkdir(userDir);
    await writeFile(
      path.join(userDir, 'package.json'),
      JSON.stringify({ name: 'node-red-project', private: true }),
    );
    await run('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: userDir, maxBuffer: 64 << 20 });
    red = await NodeRedProcess.startInstalled(userDir, QUIET_EDITOR_SETTINGS);
  });

  after(async function () {
    this.timeout(30_000);
    await red?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('packs only the compiled package, the examples, the README, the licence and package.json', function () {
    const stray = files.filter((f) => !SHIPPED.some((re) => re.test(f)));
    assert.deepEqual(
      stray,
      [],
      'files outside dist/lib, dist/nodes, examples, resources, README.md, LICENSE, package.json',
    );
    assert.ok(files.includes('LICENSE'), 'the Apache-2.0 licence that package.json declares');
    assert.equal(files.filter((f) => /(^|\/)test\/|_spec\./.test(f)).length, 0, 'no tests in the tarball');
  });

  it('packs every node file the package names, with its editor, help, strings and icon', function () {
    for (const [name, file] of Object.entries(pkg['node-red'].nodes)) {
      const base = path.posix.dirname(file);
      assert.ok(files.includes(file), `${file}`);
      assert.ok(files.includes(`${base}/${name}.html`), `${name}.html`);
      assert.ok(files.includes(`${base}/locales/en-US/${name}.json`), `${name} strings`);
      assert.ok(files.includes(`${base}/locales/en-US/${name}.html`), `${name} help`);
    }
    const icons = files.filter((f) => f.startsWith('dist/nodes/icons/'));
    assert.ok(icons.length > 0, 'icons beside the node files');
  });

  it('installs with its dependencies, node-llama-cpp and its prebuilt binary included', function () {
    const modules = path.join(red!.userDir, 'node_modules');
    const installed = JSON.parse(readFileSync(path.join(modules, MODULE, 'package.json'), 'utf8')) as {
      version: string;
    };
    assert.equal(installed.version, pkg.version);
    assert.ok(existsSync(path.join(modules, 'node-llama-cpp', 'package.json')), 'node-llama-cpp');
    // Examples 01 and 02 use Dashboard 2 nodes; Node-RED stops every flow when a type is missing.
    assert.ok(
      existsSync(path.join(modules, '@flowfuse', 'node-red-dashboard', 'package.json')),
      'Dashboard 2',
    );
    const platform = `${process.platform}-${process.arch}`;
    const scoped = path.join(modules, '@node-llama-cpp');
    const prebuilt = existsSync(scoped) ? readdirSync(scoped).filter((d) => d.startsWith(platform)) : [];
    assert.ok(prebuilt.length > 0, `a prebuilt llama.cpp binary in @node-llama-cpp/${platform}*`);
  });

  it('runs a model in the runtime child process of the installed package', async function () {
    this.timeout(120_000);
    // From the user directory, as Node-RED resolves it: the installed dist/lib/runtime/child.js
    // and the installed node-llama-cpp, nothing from this checkout.
    const script = `
      const { RuntimeProcess } = require('${MODULE}/dist/lib/runtime');
      const rp = new RuntimeProcess({ modelsDir: ${JSON.stringify(path.dirname(await testModel('stories')))}, gpu: false });
      rp.acquire({ source: 'stories260K.gguf', settings: { threads: 1, sequences: 1 } }).ready
        .then((rt) => rt.complete('Once upon a time', { maxTokens: 8 }))
        .then((r) => { console.log(JSON.stringify({ tokens: r.tokensOut, pid: rp.pid })); return rp.close(); })
        .then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });`;
    const { stdout } = await run(process.execPath, ['-e', script], { cwd: red!.userDir });
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { tokens: number; pid: number };
    assert.ok(result.tokens > 0, stdout);
    assert.ok(result.pid > 0, 'it ran in a child process');
  });

  it('loads every node of the package in Node-RED, without a load error', async function () {
    const ours = await red!.nodeSets(MODULE);
    assert.deepEqual(ours.map((s) => s.name).sort(), Object.keys(pkg['node-red'].nodes).sort());
    for (const set of ours) {
      assert.equal(set.err, undefined, `${set.name}: ${set.err}`);
      assert.ok(set.enabled, set.name);
      assert.equal(set.version, pkg.version, set.name);
    }
    assert.doesNotMatch(red!.output, /\[(error|warn)\].*edge-llm/i, red!.output);
    const shared = await red!.get(`/resources/${MODULE}/generation-form.js`, '*/*');
    assert.equal(shared.status, 200, 'the editor script that the llm-parse and llm-plan forms load');
  });

  it('shows every node in the editor palette, with its icon', async function () {
    const types = (await red!.nodeSets(MODULE)).flatMap((s) => s.types);
    const editor = await Editor.open(red!.url);
    try {
      const palette = await editor.page.evaluate(
        (ts) =>
          ts.map((t) => {
            const entry = document.querySelector(`.red-ui-palette-node[data-palette-type="${t}"]`);
            const icon = entry?.querySelector('.red-ui-palette-icon') as HTMLElement | null;
            const config =
              (
                window as unknown as { RED: { nodes: { getType(t: string): { category: string } } } }
              ).RED.nodes.getType(t)?.category === 'config';
            return {
              type: t,
              config,
              shown: !!entry,
              icon: icon ? getComputedStyle(icon).backgroundImage : '',
            };
          }),
        types,
      );
      for (const p of palette.filter((e) => !e.config)) {
        assert.ok(p.shown, `${p.type} in the palette`);
        assert.match(p.icon, new RegExp(`icons/${MODULE}/`), `${p.type} icon`);
      }
      assert.ok(palette.some((p) => !p.config));
      await editor.screenshot('installed-palette');
      assert.deepEqual(editor.errors, []);
    } finally {
      await editor.close();
    }
  });
});
