import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Node } from 'node-red';
import * as sinon from 'sinon';
import { encryptModelFile, installModelFile, type LlmRuntime } from '../lib/runtime';
import { initHelper, stopServer, until } from './support/flow';
import { writeLoraGguf } from './support/lora';
import { testModel } from './support/models';
import type { LlmRuntimeNode } from '../nodes/types';

import runtimeNode = require('../nodes/llm-runtime');
const helper = initHelper();

type RuntimeNode = LlmRuntimeNode & Node & { error: sinon.SinonSpy; status: sinon.SinonSpy };

const base = {
  type: 'llm-runtime',
  threads: '1',
  sequences: '1',
  contextSize: '256',
  isolation: 'in-process',
};

/** The llm-runtime fields added for adapters, encrypted models and old versions, in a deployed flow. */
describe('llm-runtime: LoRA adapters, model key, keep versions (real model, files made at test time)', function () {
  this.timeout(90_000);
  let dir: string;
  let ram: string;
  let stories: string;
  const env = { models: process.env.EDGE_LLM_MODELS_DIR, ram: process.env.EDGE_LLM_RAM_DIR };

  before(async function () {
    if (!existsSync('/dev/shm')) this.skip();
    stories = await testModel('stories');
    dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-files-'));
    ram = await mkdtemp('/dev/shm/edge-llm-test-');
    process.env.EDGE_LLM_MODELS_DIR = dir;
    process.env.EDGE_LLM_RAM_DIR = ram;
    await writeLoraGguf({ model: stories, out: path.join(dir, 'tone.gguf') });
    await encryptModelFile(stories, path.join(dir, 'stories.gguf.enc'), 'flow key');
  });
  after(async () => {
    for (const [name, value] of [
      ['EDGE_LLM_MODELS_DIR', env.models],
      ['EDGE_LLM_RAM_DIR', env.ram],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await rm(dir, { recursive: true, force: true });
    await rm(ram, { recursive: true, force: true });
  });
  beforeEach((done) => {
    helper.startServer(done);
  });
  afterEach(async () => {
    delete process.env.EDGE_LLM_TEST_MODEL_KEY;
    await helper.unload();
    await stopServer();
  });

  const node = (id: string) => helper.getNode(id) as unknown as RuntimeNode;
  const answer = async (id: string): Promise<string> => {
    const runtime = (await node(id).lease!.ready) as LlmRuntime;
    return (await runtime.complete('Once upon a time', { maxTokens: 16, temperature: 0 })).text;
  };
  const failed = async (id: string, expected: RegExp): Promise<void> => {
    const n = node(id);
    await until(() => n.lease?.status.state === 'error', 30_000, `${id} to fail`);
    assert.ok(
      n.error.args.some(
        ([m]) => /llm-runtime\.errors\.load-failed/.test(String(m)) && expected.test(String(m)),
      ),
      n.error.args.join('\n'),
    );
    assert.equal(n.currentStatus().fill, 'red');
  };

  it('adapters from the form: the answer changes, scale 0 keeps it; a bad adapter is a red status with the reason', async () => {
    await helper.load(runtimeNode, [
      { id: 'plain', ...base, model: stories },
      { id: 'tuned', ...base, model: stories, adapters: 'tone.gguf 1' },
      { id: 'off', ...base, model: stories, adapters: '# muted\ntone.gguf 0' },
      { id: 'bad', ...base, model: stories, adapters: `${stories} 1` },
      { id: 'typo', ...base, model: stories, adapters: 'tone.gguf loud' },
      { id: 'remote', ...base, isolation: 'server', serverUrl: 'http://127.0.0.1:9', adapters: 'tone.gguf' },
    ] as never);
    const plain = await answer('plain');
    assert.notEqual(await answer('tuned'), plain);
    assert.equal(await answer('off'), plain);
    await failed('bad', /LoRA adapter .*stories260K\.gguf: not an adapter/);
    // A scale that is not a number is read as part of the file name: that file does not exist.
    await failed('typo', /LoRA adapter tone\.gguf loud: Model file not found/);
    const server = node('remote');
    assert.ok(server.configError && /llm-runtime\.errors\.adapters-on-server/.test(server.configError));
  });

  it('an encrypted model opens with the key from the credentials or the named environment variable', async () => {
    process.env.EDGE_LLM_TEST_MODEL_KEY = 'flow key';
    await helper.load(
      runtimeNode,
      [
        { id: 'plain', ...base, model: stories },
        { id: 'cred', ...base, model: 'stories.gguf.enc' },
        { id: 'env', ...base, model: 'stories.gguf.enc', modelKeyEnv: 'EDGE_LLM_TEST_MODEL_KEY' },
        { id: 'wrong', ...base, model: 'stories.gguf.enc' },
        { id: 'none', ...base, model: 'stories.gguf.enc', modelKeyEnv: 'EDGE_LLM_TEST_NO_SUCH_KEY' },
        { id: 'badenv', ...base, model: 'stories.gguf.enc', modelKeyEnv: 'not-a-name' },
      ] as never,
      { cred: { modelKey: 'flow key' }, wrong: { modelKey: 'other key' } } as never,
    );
    const plain = await answer('plain');
    assert.equal(await answer('cred'), plain);
    assert.equal(await answer('env'), plain);
    await failed('wrong', /cannot be decrypted with this model key/);
    await failed('none', /is an encrypted model file and no model key is set/);
    assert.match(node('badenv').configError ?? '', /must be an environment variable name/);
    assert.deepEqual(await readdir(ram), []);
  });

  it('keep versions: an update removes the oldest, never a version another runtime uses or names', async () => {
    const versions = ['0.9.0', '1.0.0', '1.1.0', '1.2.0'];
    for (const [i, version] of versions.entries()) {
      await installModelFile(dir, { name: 'keep', version }, stories);
      const t = Date.now() / 1000 - 100 + i;
      await utimes(path.join(dir, 'keep', version, 'manifest.json'), t, t);
    }
    await helper.load(runtimeNode, [
      { id: 'rt', ...base, name: 'Line 3', model: 'keep@1.1.0', keepVersions: '1' },
      // Another runtime runs 1.0.0: in use, so kept.
      { id: 'other', ...base, name: 'Line 4', isolation: 'child', model: 'keep@1.0.0' },
      { id: 'twin', ...base, name: 'Line 4', model: 'keep@1.0.0' },
      { id: 'bad', ...base, model: 'keep@1.1.0', keepVersions: '-1' },
    ] as never);
    await node('rt').lease!.ready;
    await node('other').lease!.ready;
    assert.match(node('bad').configError ?? '', /llm-runtime\.errors\.bad-keep-versions/);
    // The admin routes take a runtime by its name too, unless several have it.
    const byName = await helper.request().get('/edge-llm/runtimes/Line%203/health').expect(200);
    assert.equal(byName.body.model, 'keep@1.1.0');
    const twins = await helper.request().get('/edge-llm/runtimes/Line%204/health').expect(409);
    assert.match(twins.body.error, /2 llm-runtime nodes are named "Line 4": ask by id/);
    const res = await helper
      .request()
      .post('/edge-llm/runtimes/Line%203/update')
      .send({ model: 'keep@1.2.0' })
      .expect(200);
    assert.deepEqual(res.body.removed, ['keep@0.9.0']);
    assert.deepEqual((await readdir(path.join(dir, 'keep'))).sort(), ['1.0.0', '1.1.0', '1.2.0']);
  });
});
