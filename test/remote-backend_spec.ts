import Ajv from 'ajv';
import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { Node } from 'node-red';
import type { SinonSpy } from 'sinon';
import { ensureLlamaServer, llamaServerPath, missingBuildTools } from '../bench/llama-server';
import { LlmError, ServerRuntime, resolveContextSettings } from '../lib/runtime';
import { callsBy, coreNode, initHelper, stopServer, until } from './support/flow';
import { gapMonitor } from './support/gap-monitor';
import { FaultProxy, LlamaServer, freePort } from './support/llama-server';
import { testModel } from './support/models';

import runtimeNode = require('../nodes/llm-runtime');
import parseNode = require('../nodes/llm-parse');

const helper = initHelper();
const catchNode = coreNode('common/25-catch.js');

type Spied = Node & { status: SinonSpy; error: SinonSpy; warn: SinonSpy; receive: (msg: object) => void };

const small = {
  type: 'object',
  properties: { zone: { type: 'string', maxLength: 12 }, level: { type: 'integer', minimum: 0, maximum: 9 } },
  required: ['zone', 'level'],
  additionalProperties: false,
};

const sinks = [
  { id: 'f1', type: 'tab' },
  { id: 'valid', type: 'helper', z: 'f1' },
  { id: 'rejected', type: 'helper', z: 'f1' },
  { id: 'catcher', type: 'catch', z: 'f1', scope: null, uncaught: false, wires: [['caught']] },
  { id: 'caught', type: 'helper', z: 'f1' },
];

function next(id: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => helper.getNode(id).once('input', resolve));
}

async function rejects(promise: Promise<unknown>): Promise<LlmError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof LlmError, `an LlmError, not ${String(err)}`);
    return err;
  }
  assert.fail('resolved where it should have failed');
}

describe('remote backend: llm-runtime on a real llama-server', function () {
  this.timeout(120_000);
  let server: LlamaServer | undefined;
  let proxy: FaultProxy;
  const runtimes: ServerRuntime[] = [];

  before(async function () {
    // A fresh machine builds llama-server once (about 6 minutes on 2 cores, longer under load).
    this.timeout(15 * 60_000);
    let binary = llamaServerPath();
    if (!existsSync(binary)) {
      const missing = missingBuildTools();
      if (missing.length) {
        console.log(
          `    (skipped: no llama-server at ${binary}, and it cannot be built here: missing ${missing.join(', ')})`,
        );
        this.skip();
      }
      console.log(`    building llama-server once into ${binary} (several minutes; later runs reuse it) ...`);
      binary = await ensureLlamaServer({ log: (line) => console.log(`    ${line}`) });
    }
    server = await LlamaServer.start(binary, await testModel('stories'));
    proxy = await FaultProxy.start(server.url);
  });
  after(async () => {
    await proxy?.stop();
    await server?.stop();
  });
  beforeEach(function (done) {
    proxy.reset();
    helper.startServer(done);
  });
  afterEach(async () => {
    for (const r of runtimes.splice(0)) await r.dispose();
    await helper.unload();
    await stopServer();
  });

  function direct(options: Partial<ConstructorParameters<typeof ServerRuntime>[0]> = {}, sequences = 2) {
    const runtime = new ServerRuntime(
      { url: proxy.url, retryDelayMs: 50, ...options },
      resolveContextSettings({ sequences, queueLimit: 4 }),
    );
    runtimes.push(runtime);
    return runtime;
  }

  const load = (flow: object[], credentials: object = {}) =>
    helper.load([runtimeNode, parseNode, catchNode], [...sinks, ...flow] as never, credentials as never);

  const serverRuntime = (extra: object = {}) => ({
    id: 'rt',
    type: 'llm-runtime',
    isolation: 'server',
    serverUrl: proxy.url,
    model: '',
    sequences: '2',
    queueLimit: '8',
    ...extra,
  });
  const parse = (extra: object = {}) => ({
    id: 'p1',
    type: 'llm-parse',
    z: 'f1',
    runtime: 'rt',
    schema: JSON.stringify(small),
    maxTokens: '64',
    wires: [['valid'], ['rejected']],
    ...extra,
  });

  it('llm-parse answers schema-valid JSON through the server, the schema sent as response_format', async function () {
    await load([serverRuntime(), parse()], { rt: { apiKey: 'site-key-1' } });
    const p1 = helper.getNode('p1') as Spied;
    await until(() => p1.status.args.some(([s]) => s.text?.endsWith('status.ready')), 20_000, 'ready');

    const out = next('valid');
    p1.receive({ payload: 'Zone B is at level 3', topic: 't' });
    const msg = await out;
    const validate = new Ajv().compile(small);
    assert.ok(validate(msg.payload), `schema-valid: ${JSON.stringify(msg.payload)}`);
    const llm = msg.llm as { tokensOut: number; schemaHash: string };
    assert.ok(llm.tokensOut > 0);

    const sent = proxy.generations.at(-1)!;
    assert.equal(sent.path, '/v1/chat/completions');
    assert.equal(sent.authorization, 'Bearer site-key-1');
    assert.equal(sent.body?.stream, true);
    const format = sent.body?.response_format as {
      type: string;
      json_schema: { schema: { required: string[] } };
    };
    assert.equal(format.type, 'json_schema');
    assert.deepEqual(format.json_schema.schema.required, ['zone', 'level']);

    // The admin endpoint lists the server as a runtime.
    const res = await helper.request().get('/edge-llm/runtimes').expect(200);
    const listed = (res.body as { process: string; state: string; metrics: { requests: number } }[]).find(
      (r) => r.process === 'server',
    );
    assert.equal(listed?.state, 'ready');
    assert.ok((listed?.metrics.requests ?? 0) >= 1);
  });

  it('a plain prompt gets JSON too (completions endpoint with json_schema)', async function () {
    const runtime = direct();
    const result = await runtime.generateJson<{ zone: string; level: number }>('Zone C, level 7:', small, {
      maxTokens: 64,
    });
    assert.ok(new Ajv().compile(small)(result.value));
    assert.equal(proxy.generations.at(-1)!.path, '/v1/completions');
    assert.ok(proxy.generations.at(-1)!.body?.json_schema);
  });

  it('streams text as it is decoded, without holding the event loop', async function () {
    const runtime = direct();
    const pieces: string[] = [];
    const gaps = gapMonitor();
    const result = await runtime.complete('Once upon a time', {
      maxTokens: 200,
      onText: (t) => pieces.push(t),
    });
    assert.ok(gaps.stop() < 50, 'no block of 50 ms');
    assert.ok(pieces.length > 1, `several pieces (${pieces.length})`);
    assert.equal(pieces.join(''), result.text);
    assert.ok(result.tokensOut > 1 && result.ttftMs <= result.totalMs);

    const chatPieces: string[] = [];
    const chat = await runtime.chat([{ role: 'user', content: 'Tell a story.' }], {
      maxTokens: 24,
      onText: (t) => chatPieces.push(t),
    });
    assert.equal(chatPieces.join(''), chat.text);
    assert.ok(chatPieces.length > 1);
  });

  it('a request past its deadline is rejected as timeout and its connection to the server closed', async function () {
    proxy.reset({ kind: 'stall' });
    await load([serverRuntime(), parse({ timeout: '1', retries: '0' })]);
    const p1 = helper.getNode('p1') as Spied;
    const out = next('rejected');
    p1.receive({ payload: 'Zone B is at level 3', id: 'stalled' });
    const msg = await out;
    assert.equal(msg.id, 'stalled');
    assert.equal((msg.rejected as { reason: string }).reason, 'timeout');
    await until(() => proxy.clientAborts >= 1, 10_000, 'the stalled request closed');
  });

  it('a server that cannot be reached: the message reaches Catch with its original msg after the retries, and the runtime status turns red', async function () {
    const port = await freePort();
    await load([serverRuntime({ serverUrl: `http://127.0.0.1:${port}`, retries: '1' }), parse()]);
    const rt = helper.getNode('rt') as Spied;
    const caught = next('caught');
    (helper.getNode('p1') as Spied).receive({ payload: 'Zone B is at level 3', marker: 'original-42' });
    const msg = await caught;
    assert.equal(msg.marker, 'original-42');
    assert.equal(msg.payload, 'Zone B is at level 3');
    const error = msg.error as { message: string };
    assert.match(error.message, /did not answer after 2 tries: ECONNREFUSED/);
    assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    await until(() => callsBy(rt.error, rt).length > 0, 20_000, 'the runtime node reports the server');
    assert.match(String(callsBy(rt.error, rt)[0].args[0]), /server-failed.*cannot be reached/);
  });

  it('retries a 503 before any output and answers; a 503 that outlasts the retries fails as unavailable', async function () {
    const runtime = direct({ retries: 2 });
    proxy.reset({ kind: 'fail', status: 503, times: 2 });
    const result = await runtime.complete('Once upon a time', { maxTokens: 8 });
    assert.ok(result.tokensOut > 0);
    assert.equal(proxy.generations.length, 3, 'two 503s, then the answer');

    proxy.reset({ kind: 'fail', status: 503, times: 10 });
    const err = await rejects(runtime.complete('Once upon a time', { maxTokens: 8 }));
    assert.equal(err.code, 'unavailable');
    assert.match(err.message, /did not answer after 3 tries: .*HTTP 503: Loading model/);
    assert.equal(proxy.generations.length, 3);

    proxy.reset({ kind: 'fail', status: 400, times: 10 });
    const bad = await rejects(runtime.complete('Once upon a time', { maxTokens: 8 }));
    assert.equal(bad.code, 'bad_request', 'a 4xx is the request, not the server: not retried');
    assert.equal(proxy.generations.length, 1);
  });

  it('never sends a request again once part of its answer was delivered', async function () {
    const runtime = direct({ retries: 2 });
    proxy.reset({ kind: 'cut' });
    const pieces: string[] = [];
    const err = await rejects(
      runtime.complete('Once upon a time', { maxTokens: 200, onText: (t) => pieces.push(t) }),
    );
    assert.equal(err.code, 'unavailable');
    assert.match(err.message, /already delivered/);
    assert.ok(pieces.length >= 1, 'part of the answer came');
    assert.equal(proxy.generations.length, 1, 'not sent again');

    // Nothing streamed to the caller: a broken answer may be asked again.
    proxy.reset({ kind: 'cut' });
    const quiet = await rejects(runtime.complete('Once upon a time', { maxTokens: 200 }));
    assert.equal(quiet.code, 'unavailable');
    assert.equal(proxy.generations.length, 3);
  });

  it('the scheduler stands in front: the queue limit and cancellation work as with a local model', async function () {
    proxy.reset({ kind: 'stall' });
    const runtime = new ServerRuntime(
      { url: proxy.url },
      resolveContextSettings({ sequences: 1, queueLimit: 1 }),
    );
    runtimes.push(runtime);
    const first = new AbortController();
    const running = rejects(runtime.complete('a', { signal: first.signal }));
    const waiting = rejects(runtime.complete('b', { priority: 'high' }));
    const refused = await rejects(runtime.complete('c'));
    assert.equal(refused.code, 'queue_full');
    assert.equal(runtime.getMetrics().queued, 1);
    first.abort(new LlmError('cancelled', 'cancelled by the caller'));
    assert.equal((await running).code, 'cancelled');
    await until(() => proxy.clientAborts >= 1, 10_000, 'the cancelled request closed');
    await runtime.dispose();
    assert.equal((await waiting).code, 'closed');
  });
});
