import * as assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Node } from 'node-red';
import * as sinon from 'sinon';
import { installModelFile } from '../lib/runtime';
import { coreNode, initHelper, stopServer } from './support/flow';
import { testModel } from './support/models';
import { eventually, NodeRedProcess } from './support/node-red-process';

import runtimeNode = require('../nodes/llm-runtime');
import modelNode = require('../nodes/llm-model');
const helper = initHelper();

type Spied = Node & { status: sinon.SinonSpy; warn: sinon.SinonSpy; receive: (msg: object) => void };

const catchNode = coreNode('common/25-catch.js');

async function versions(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-models-'));
  await installModelFile(dir, { name: 'inspector', version: '1.0.0' }, await testModel('stories'));
  await installModelFile(dir, { name: 'inspector', version: '1.1.0' }, await testModel('tinyRandom'));
  return dir;
}

function next(id: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => helper.getNode(id).once('input', resolve));
}

describe('llm-model and the runtime admin routes in a flow (real models)', function () {
  this.timeout(90_000);
  let dir: string;
  const env = process.env.EDGE_LLM_MODELS_DIR;

  before(async () => {
    dir = await versions();
    process.env.EDGE_LLM_MODELS_DIR = dir;
  });
  after(async () => {
    if (env === undefined) delete process.env.EDGE_LLM_MODELS_DIR;
    else process.env.EDGE_LLM_MODELS_DIR = env;
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach((done) => {
    helper.startServer(done);
  });
  afterEach(async () => {
    await helper.unload();
    await stopServer();
  });

  const flow = [
    { id: 'f1', type: 'tab' },
    {
      id: 'rt',
      type: 'llm-runtime',
      model: 'inspector@1.0.0',
      threads: '1',
      sequences: '1',
      contextSize: '512',
      isolation: 'in-process',
    },
    { id: 'm', type: 'llm-model', z: 'f1', runtime: 'rt', wires: [['out']] },
    { id: 'out', type: 'helper', z: 'f1' },
    { id: 'catcher', type: 'catch', z: 'f1', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'f1' },
  ];

  const ready = async (): Promise<void> => {
    const rt = helper.getNode('rt') as unknown as { lease: { ready: Promise<unknown> } };
    await rt.lease.ready;
  };

  it('updates, rolls back and checks health by message; a refused update is an output, a bad message an error', async () => {
    await helper.load([runtimeNode, modelNode, catchNode], flow);
    await ready();
    const m = helper.getNode('m') as Spied;

    let out = next('out');
    m.receive({ payload: { action: 'update', model: 'inspector@1.1.0' } });
    let result = (await out).payload as { ok: boolean; from: string; to: string; check: { ok: boolean } };
    assert.deepEqual(
      [result.ok, result.from, result.to, result.check.ok],
      [true, 'inspector@1.0.0', 'inspector@1.1.0', true],
    );
    assert.deepEqual(m.status.lastCall.args[0], { fill: 'green', shape: 'dot', text: 'inspector@1.1.0' });

    out = next('out');
    m.receive({ payload: { action: 'rollback' } });
    result = (await out).payload as typeof result;
    assert.deepEqual([result.ok, result.to], [true, 'inspector@1.0.0']);

    out = next('out');
    m.receive({ payload: { action: 'update', model: 'inspector@2.0.0' } });
    const refused = (await out).payload as { ok: boolean; reason: string };
    assert.equal(refused.ok, false);
    assert.match(refused.reason, /inspector@2\.0\.0 not found/);
    assert.ok(
      m.warn.calledWithMatch(/^Model update to inspector@2\.0\.0 failed, inspector@1\.0\.0 kept: /),
      JSON.stringify(m.warn.args),
    );

    out = next('out');
    m.receive({ payload: { action: 'health' } });
    const health = (await out).payload as { loaded: boolean; model: string; probe: { ok: boolean } };
    assert.deepEqual([health.loaded, health.model, health.probe.ok], [true, 'inspector@1.0.0', true]);

    const caught = next('caught');
    m.receive({ payload: { action: 'upgrade' } });
    const error = (await caught).error as { message: string };
    // The helper serves no message catalogues: the key stands for the sentence.
    assert.match(error.message, /llm-model:llm-model\.errors\.bad-action$/);
  });

  it('admin routes: health, update, rollback; a bad body is 400, an unknown runtime 404', async () => {
    await helper.load([runtimeNode, modelNode, catchNode], flow);
    await ready();
    const health = await helper.request().get('/edge-llm/runtimes/rt/health').expect(200);
    assert.equal(health.body.model, 'inspector@1.0.0');
    assert.equal(health.body.sha256, '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d');
    assert.equal(health.body.probe.ok, true);
    assert.ok(health.body.probe.tokens > 0);

    const update = await helper
      .request()
      .post('/edge-llm/runtimes/rt/update')
      .send({ model: 'inspector@1.1.0' })
      .expect(200);
    assert.equal(update.body.to, 'inspector@1.1.0');
    const refused = await helper
      .request()
      .post('/edge-llm/runtimes/rt/update')
      .send({ model: 'nothing@1.0.0' })
      .expect(409);
    assert.match(refused.body.reason, /not found/);
    const after = await helper.request().get('/edge-llm/runtimes/rt/health').expect(200);
    assert.deepEqual([after.body.model, after.body.previous], ['inspector@1.1.0', 'inspector@1.0.0']);
    const back = await helper.request().post('/edge-llm/runtimes/rt/rollback').expect(200);
    assert.equal(back.body.to, 'inspector@1.0.0');

    const bad = await helper.request().post('/edge-llm/runtimes/rt/update').send({ name: 'x' }).expect(400);
    assert.match(bad.body.error, /needs "model"/);
    await helper.request().get('/edge-llm/runtimes/nope/health').expect(404);
    await helper.request().post('/edge-llm/runtimes/m/rollback').expect(404);
  });

  it('a bad signing key is a configuration error that names the problem', async () => {
    await helper.load([runtimeNode, modelNode, catchNode], flow, { rt: { publicKey: 'not a key' } });
    const rt = helper.getNode('rt') as unknown as { configError?: string };
    assert.match(rt.configError ?? '', /signing public key cannot be read/);
  });
});

describe('the health endpoint in a real Node-RED: read permission is enough, an update needs write', function () {
  this.timeout(120_000);
  let red: NodeRedProcess | undefined;
  let dir: string;

  before(async () => {
    dir = await versions();
    red = await NodeRedProcess.start(
      {
        flows: [{ id: 'rt', type: 'llm-runtime', model: 'inspector@1.0.0', threads: '1', sequences: '1' }],
        settings: { adminAuth: { type: 'credentials', users: [], default: { permissions: 'read' } } },
      },
      { EDGE_LLM_MODELS_DIR: dir },
    );
  });
  after(async () => {
    await red?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers loaded, name@version, sha256 and the probe; refuses update and rollback to a reader', async () => {
    const health = await eventually('a healthy runtime', 60_000, async () => {
      const res = await red!.get('/edge-llm/runtimes/rt/health');
      return res.status === 200 ? ((await res.json()) as Record<string, unknown>) : undefined;
    });
    assert.equal(health.loaded, true);
    assert.equal(health.model, 'inspector@1.0.0');
    assert.deepEqual(health.manifest, { name: 'inspector', version: '1.0.0' });
    assert.equal(health.sha256, '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d');
    assert.equal((health.probe as { ok: boolean }).ok, true);
    for (const route of ['update', 'rollback']) {
      const res = await fetch(`${red!.url}/edge-llm/runtimes/rt/${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'inspector@1.1.0' }),
      });
      assert.ok(res.status === 401 || res.status === 403, `${route}: a reader got ${res.status}`);
    }
    const still = (await (await red!.get('/edge-llm/runtimes/rt/health')).json()) as { model: string };
    assert.equal(still.model, 'inspector@1.0.0');
  });
});
