import * as assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { NodeRedProcess } from './support/node-red-process';
import { REPO_ROOT, testModelsDir } from './support/models';

const MODULE = 'node-red-contrib-edge-llm';

describe('the package in a real Node-RED (editor HTTP API)', function () {
  this.timeout(90_000);
  let red: NodeRedProcess;
  let pkg: { 'node-red': { nodes: Record<string, string> } };

  before(async function () {
    pkg = JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8'));
    red = await NodeRedProcess.start({ flows: [] }, { EDGE_LLM_MODELS_DIR: testModelsDir() });
  });
  after(() => red?.stop());

  it('loads every node set of the package without errors', async function () {
    const ours = await red.nodeSets(MODULE);
    assert.deepEqual(ours.map((s) => s.name).sort(), Object.keys(pkg['node-red'].nodes).sort());
    for (const set of ours) {
      assert.equal(set.err, undefined, `${set.name}: ${set.err}`);
      assert.ok(set.enabled, set.name);
    }
  });

  it('serves every node type its edit form and its help', async function () {
    const html = await (await red.get('/nodes', 'text/html')).text();
    const types = (await red.nodeSets(MODULE)).flatMap((s) => s.types);
    assert.ok(types.length >= Object.keys(pkg['node-red'].nodes).length);
    for (const type of types) {
      assert.match(html, new RegExp(`data-template-name="${type}"`), `${type} edit form`);
      assert.match(html, new RegExp(`data-help-name="${type}"`), `${type} help`);
    }
  });

  it('serves every icon of the package', async function () {
    const icons = (await (await red.get('/icons')).json()) as Record<string, string[]>;
    const files = (await readdir(path.join(REPO_ROOT, 'icons'))).filter((f) => f.endsWith('.svg'));
    assert.deepEqual([...(icons[MODULE] ?? [])].sort(), files.sort());
    for (const file of files) {
      const res = await red.get(`/icons/${MODULE}/${file}`, 'image/svg+xml');
      assert.equal(res.status, 200, file);
      assert.match(res.headers.get('content-type') ?? '', /svg/);
      assert.match(await res.text(), /<svg/);
    }
  });

  it('serves the editor script that llm-parse and llm-plan share, which both forms load', async function () {
    const res = await red.get(`/resources/${MODULE}/generation-form.js`, '*/*');
    assert.equal(res.status, 200);
    assert.match(await res.text(), /EdgeLlmGenerationForm/);
    const html = await (await red.get('/nodes', 'text/html')).text();
    for (const type of ['llm-parse', 'llm-plan']) {
      const form = html.slice(html.indexOf(`data-template-name="${type}"`));
      assert.match(form.slice(0, form.indexOf('</script>')), /<div data-edge-llm-generation><\/div>/, type);
    }
    assert.equal(html.match(/src="resources\/node-red-contrib-edge-llm\/generation-form\.js"/g)?.length, 2);
  });

  it('serves the form scripts of the policy and the catalogue, each loaded by its node', async function () {
    const html = await (await red.get('/nodes', 'text/html')).text();
    for (const [file, global, users] of [
      ['form-view.js', 'EdgeLlmFormView', 2],
      ['policy-form.js', 'EdgeLlmPolicyForm', 1],
      ['catalogue-form.js', 'EdgeLlmCatalogueForm', 1],
    ] as const) {
      const res = await red.get(`/resources/${MODULE}/${file}`, '*/*');
      assert.equal(res.status, 200, file);
      assert.match(await res.text(), new RegExp(global));
      const src = new RegExp(`src="resources/${MODULE}/${file.replace('.', '\\.')}"`, 'g');
      assert.equal(html.match(src)?.length, users, file);
    }
  });

  it('checks a catalogue as deploy does, naming the action and parameter of each problem', async function () {
    const check = async (catalogue: string) => {
      const res = await fetch(`${red.url}/edge-llm/llm-plan/check-catalogue`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ catalogue }),
      });
      assert.equal(res.status, 200);
      return res.json();
    };
    // blank: the built-in catalogue
    assert.deepEqual(await check(''), { ok: true });
    const good = [
      { name: 'set_valve', params: { type: 'object', properties: { position: { type: 'integer' } } } },
    ];
    assert.deepEqual(await check(JSON.stringify(good)), { ok: true });
    const inverted = [
      good[0],
      {
        name: 'move_to',
        params: { type: 'object', properties: { speed: { type: 'number', minimum: 2, maximum: 1 } } },
      },
    ];
    assert.deepEqual(await check(JSON.stringify(inverted)), {
      ok: false,
      errors: [
        {
          path: '[1].params.speed',
          message: 'minimum (2) is greater than maximum (1).',
          text: 'Catalogue action 2 (move_to), parameter speed: minimum (2) is greater than maximum (1).',
        },
      ],
    });
    const twice = (await check(JSON.stringify([good[0], good[0]]))) as { errors: Array<{ path: string }> };
    assert.equal(twice.errors[0].path, '[1]');
    const notJson = (await check('[{"name": ')) as { ok: boolean; errors: Array<{ path: string }> };
    assert.equal(notJson.ok, false);
    assert.equal(notJson.errors[0].path, '');
  });

  it('serves the message catalog of every node set', async function () {
    for (const name of Object.keys(pkg['node-red'].nodes)) {
      const res = await red.get(`/locales/${MODULE}/${name}?lng=en-US`);
      assert.equal(res.status, 200, name);
      const catalog = (await res.json()) as Record<string, unknown>;
      assert.ok(Object.keys(catalog).length > 0, `${name} has strings`);
    }
  });

  it('answers the runtimes endpoint', async function () {
    const res = await red.get('/edge-llm/runtimes');
    assert.equal(res.status, 200);
    assert.ok(Array.isArray(await res.json()));
  });
});
