import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import type { Node } from 'node-red';
import * as sinon from 'sinon';
import { MISSION_SCHEMA } from '../lib/llm/parse';
import { coreNode, initHelper, stopServer, until } from './support/flow';
import { collectGarbage } from './support/gc';
import { testModel, testModelsDir } from './support/models';

import runtimeNode = require('../nodes/llm-runtime');
import parseNode = require('../nodes/llm-parse');
import storeNode from '../nodes/kv-session-store';
import { SessionStore } from '../lib/session';
import type { CompiledSchema, RuntimeMetrics } from '../lib/runtime';
import type { LlmRuntimeNode } from '../nodes/types';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
const helper = initHelper();

type Spied = Node & {
  status: sinon.SinonSpy;
  error: sinon.SinonSpy;
  warn: sinon.SinonSpy;
  receive: (msg: object) => void;
};

const small = {
  type: 'object',
  properties: { zone: { type: 'string', maxLength: 12 }, level: { type: 'integer', minimum: 0, maximum: 9 } },
  required: ['zone', 'level'],
  additionalProperties: false,
};

function runtime(id: string, model: string, extra: object = {}) {
  return { id, type: 'llm-runtime', model, sequences: '2', contextSize: '1024', queueLimit: '8', ...extra };
}

function parse(id: string, rt: string, extra: object = {}) {
  return {
    id,
    type: 'llm-parse',
    z: 'f1',
    runtime: rt,
    schema: JSON.stringify(small),
    maxTokens: '64',
    wires: [['valid'], ['rejected']],
    ...extra,
  };
}

const sinks = [
  { id: 'f1', type: 'tab' },
  { id: 'valid', type: 'helper', z: 'f1' },
  { id: 'rejected', type: 'helper', z: 'f1' },
  {
    id: 'catcher',
    type: 'catch',
    z: 'f1',
    x: 100,
    y: 100,
    scope: null,
    uncaught: false,
    wires: [['caught']],
  },
  { id: 'caught', type: 'helper', z: 'f1' },
];

const catchNode = coreNode('common/25-catch.js');

function next(id: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => helper.getNode(id).once('input', resolve));
}

describe('llm-runtime and llm-parse in a flow (real model)', function () {
  this.timeout(60_000);
  let stories: string;
  before(async function () {
    stories = await testModel('stories');
    process.env.EDGE_LLM_MODELS_DIR = testModelsDir();
  });
  beforeEach((done) => {
    helper.startServer(done);
  });
  afterEach(async function () {
    await helper.unload();
    await stopServer();
  });

  const load = (flow: object[]) =>
    helper.load([runtimeNode, parseNode, catchNode], [...sinks, ...flow] as never);

  it('shares one model between two config nodes naming the same file, and parses to valid JSON', async function () {
    await load([
      runtime('rt1', stories),
      runtime('rt2', 'stories260K'),
      parse('p1', 'rt1'),
      parse('p2', 'rt2', { wires: [['valid'], ['rejected']] }),
    ]);
    const p1 = helper.getNode('p1') as Spied;
    await until(() => p1.status.args.some(([s]) => s.text?.endsWith('status.ready')), 20_000, 'ready');

    const res = await helper.request().get('/edge-llm/runtimes?probe=1').expect(200);
    assert.equal(res.body.length, 1, 'one runtime for two config nodes');
    assert.equal(res.body[0].users, 2);
    assert.equal(
      res.body[0].model.sha256,
      '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d',
    );
    assert.equal(res.body[0].probe.ok, true);
    assert.deepEqual(
      {
        architecture: res.body[0].model.info.architecture,
        trainContextSize: res.body[0].model.info.trainContextSize,
      },
      { architecture: 'llama', trainContextSize: 2048 },
    );
    assert.ok(res.body[0].model.info.parameters > 200_000);

    const out = next('valid');
    p1.receive({ payload: 'Zone B is at level 3', topic: 't' });
    const msg = await out;
    const payload = msg.payload as { zone: string; level: number };
    assert.equal(typeof payload.zone, 'string');
    assert.ok(Number.isInteger(payload.level) && payload.level >= 0 && payload.level <= 9);
    assert.equal(msg.topic, 't', 'the input message is reused');
    const llm = msg.llm as Record<string, number | string>;
    assert.ok((llm.tokensOut as number) > 0 && (llm.totalMs as number) > 0);
    assert.equal(typeof llm.schemaHash, 'string');
  });

  it('frees the model when the last user leaves, and 20 redeploys do not grow the process memory', async function () {
    this.timeout(240_000);
    const deploy = async () => {
      await load([
        runtime('rt1', stories, { sequences: '4' }),
        runtime('rt2', stories, { sequences: '4' }),
        parse('p1', 'rt1'),
      ]);
      const out = next('valid');
      (helper.getNode('p1') as Spied).receive({ payload: 'Zone C level 1' });
      await out;
      assert.equal((await helper.request().get('/edge-llm/runtimes').expect(200)).body[0].users, 2);
      await helper.unload();
      assert.deepEqual(
        (await helper.request().get('/edge-llm/runtimes').expect(200)).body,
        [],
        'freed on redeploy',
      );
    };
    // Allocator pools, grammar and module caches fill during the first deploys.
    for (let i = 0; i < 8; i++) await deploy();
    collectGarbage();
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 20; i++) await deploy();
    collectGarbage();
    const grownMb = (process.memoryUsage().rss - before) / 2 ** 20;
    // A leaked 4-sequence context of this model alone is ~10 MB: 20 leaks would be ~200 MB.
    assert.ok(grownMb < 40, `RSS grew by ${grownMb.toFixed(1)} MB over 20 redeploys`);
  });

  it('continues a session: history in the prompt, its sequence reused, the turn stored, the mission advanced', async function () {
    const dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-parse-sessions-'));
    helper.settings({ userDir: dir });
    try {
      await helper.load([runtimeNode, parseNode, storeNode, catchNode], [
        ...sinks,
        { id: 'store', type: 'kv-session-store', maxTokens: '2048' },
        runtime('rt1', stories),
        parse('p1', 'rt1', { sessions: 'store' }),
      ] as never);
      const p1 = helper.getNode('p1') as Spied;
      const answers: Array<Record<string, unknown>> = [];
      for (const text of ['Zone A is at level 2', 'And zone B is at level 5']) {
        const out = next('valid');
        p1.receive({ payload: text, session: 'mission-7' });
        answers.push((await out).llm as Record<string, unknown>);
      }
      assert.equal(answers[0].prefix, 'cold');
      assert.equal(answers[1].prefix, 'warm', 'the session goes back to the sequence that holds it');
      assert.ok(
        (answers[1].tokensIn as number) > (answers[0].tokensIn as number),
        'the history is in the prompt',
      );
      const none = next('valid');
      p1.receive({ payload: 'no session here' });
      await none;
      const store = (helper.getNode('store') as unknown as { store: SessionStore }).store;
      const record = store.get('mission-7');
      assert.deepEqual(
        record.conversation.map((m) => m.role),
        ['user', 'assistant', 'user', 'assistant'],
      );
      assert.equal(record.conversation[2].content, 'And zone B is at level 5');
      assert.equal(record.mission.state, 'Parse', 'Idle → ReceiveCmd → Parse');
      assert.deepEqual(record.mission.spec, JSON.parse(record.conversation[3].content));
      assert.equal(
        record.snapshot?.modelSha256,
        '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d',
      );
      assert.equal(store.keys().length, 1, 'a message without a session key leaves no session');
      const kv = await readdir(path.join(dir, 'edge-llm', 'sessions', 'store', 'kv'));
      assert.ok(kv.length >= 1, 'the KV snapshot is on disk');
    } finally {
      await helper.unload();
      helper.settings({ userDir: undefined });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('uses the mission spec by default', async function () {
    await load([
      runtime('rt1', stories, { contextSize: '2048' }),
      parse('p1', 'rt1', { schema: '', maxTokens: '400' }),
    ]);
    const rt = helper.getNode('rt1') as unknown as LlmRuntimeNode;
    const model = await rt.lease!.ready;
    // Which schema the node asks for, whatever the tiny model then answers.
    const generate = model.generateJson.bind(model);
    const asked: unknown[] = [];
    model.generateJson = ((messages, schema, options) => {
      asked.push((schema as CompiledSchema).schema ?? schema);
      return generate(messages, schema, options);
    }) as typeof model.generateJson;
    const out = Promise.race([next('valid'), next('rejected')]);
    (helper.getNode('p1') as Spied).receive({
      payload: 'Inspect pump 4 and measure vibration. Keep speed under 2 m/s.',
    });
    const msg = await out;
    assert.ok(asked.length >= 1, 'the model was asked');
    for (const schema of asked) assert.deepEqual(schema, MISSION_SCHEMA);
    if (msg.rejected) {
      // A 260K-parameter story model may run out of tokens on this schema; it must say so.
      assert.match((msg.rejected as { reason: string }).reason, /truncated|invalid/);
    } else {
      assert.deepEqual(
        Object.keys(msg.payload as object).sort(),
        Object.keys(MISSION_SCHEMA.properties).sort(),
      );
    }
  });

  it('rejects a truncated answer on the second output with its reason', async function () {
    await load([runtime('rt1', stories), parse('p1', 'rt1', { maxTokens: '3', retries: '1' })]);
    const out = next('rejected');
    (helper.getNode('p1') as Spied).receive({ payload: 'Zone A level 2' });
    const msg = await out;
    assert.equal(msg.payload, 'Zone A level 2');
    assert.deepEqual(
      {
        reason: (msg.rejected as { reason: string }).reason,
        attempts: (msg.rejected as { attempts: number }).attempts,
      },
      { reason: 'truncated', attempts: 2 },
    );
  });

  it('takes msg overrides only where ticked, and refuses one out of range to Catch with the original message', async function () {
    await load([
      runtime('rt1', stories),
      parse('p1', 'rt1', { overrides: true, retries: '0' }),
      parse('p2', 'rt1', { retries: '0' }),
    ]);
    const truncated = next('rejected');
    (helper.getNode('p1') as Spied).receive({ payload: 'Zone A level 2', maxTokens: 3, temperature: 0.5 });
    assert.equal(((await truncated).rejected as { reason: string }).reason, 'truncated');
    const ignored = Promise.race([next('valid'), next('rejected')]);
    (helper.getNode('p2') as Spied).receive({ payload: 'Zone A level 2', maxTokens: 3 });
    assert.notEqual(
      ((await ignored).rejected as { reason: string } | undefined)?.reason,
      'truncated',
      'not ticked: msg.maxTokens is ignored',
    );
    const caught = next('caught');
    (helper.getNode('p1') as Spied).receive({ payload: 'Zone A level 2', temperature: '3', _tag: 'z' });
    const msg = await caught;
    assert.equal(msg._tag, 'z');
    assert.match(
      String((msg.error as { message: string }).message),
      /msg\.temperature must be a number from 0 to 2, not "3"/,
    );
  });

  it("shows each node's own work, not its runtime's: a node with nothing to do stays ready", async function () {
    await load([runtime('rt1', stories), parse('p1', 'rt1'), parse('p2', 'rt1')]);
    const [p1, p2] = ['p1', 'p2'].map((id) => helper.getNode(id) as Spied);
    // The helper spies status on the prototype: each node's own calls are those made on it.
    const statuses = (p: Spied) =>
      p.status
        .getCalls()
        .filter((c) => c.thisValue === p)
        .map((c) => c.args[0] as { fill?: string; text?: string });
    const ready = (p: Spied) => statuses(p).some((s) => String(s.text).endsWith('status.ready'));
    await until(() => ready(p1) && ready(p2), 20_000, 'ready');
    p1.status.resetHistory();
    const out = next('valid');
    p1.receive({ payload: 'Zone A level 2' });
    await out;
    const texts = statuses(p1).map((s) => String(s.text));
    assert.ok(
      texts.some((t) => t.endsWith('status.working')),
      texts.join(),
    );
    assert.ok(texts.at(-1)!.endsWith('status.ok'), texts.join());
    const other = statuses(p2).filter((s) => !String(s.text).endsWith('status.ready'));
    assert.deepEqual(other, [], 'p2 shows ready while only p1 works');
  });

  it('rejects with timeout when the deadline passes', async function () {
    await load([runtime('rt1', stories), parse('p1', 'rt1', { timeout: '0.001' })]);
    const out = next('rejected');
    (helper.getNode('p1') as Spied).receive({ payload: 'Zone A level 2' });
    assert.equal(((await out).rejected as { reason: string }).reason, 'timeout');
  });

  it('rejects with queue_full when the runtime queue is full', async function () {
    await load([runtime('rt1', stories, { sequences: '1', queueLimit: '0' }), parse('p1', 'rt1')]);
    const p1 = helper.getNode('p1') as Spied;
    await until(() => p1.status.args.some(([s]) => s.text?.endsWith('status.ready')), 20_000, 'ready');
    const out = next('rejected');
    p1.receive({ payload: 'Zone A level 2' });
    p1.receive({ payload: 'Zone B level 3' });
    assert.equal(((await out).rejected as { reason: string }).reason, 'queue_full');
  });

  it('cancels its requests when the node is stopped: each message ends once, as cancelled at Catch', async function () {
    const long = {
      type: 'object',
      properties: { story: { type: 'string', maxLength: 6000 } },
      required: ['story'],
    };
    await load([
      runtime('rt1', stories, { sequences: '1', contextSize: '2048' }),
      parse('p1', 'rt1', { schema: JSON.stringify(long), maxTokens: '1900' }),
      parse('p2', 'rt1'),
    ]);
    const p1 = helper.getNode('p1') as Spied;
    await until(() => p1.status.args.some(([s]) => String(s.text).endsWith('status.ready')), 20_000, 'ready');
    const outputs: Array<{ id: string; msg: Record<string, unknown> }> = [];
    for (const id of ['valid', 'rejected', 'caught'])
      helper.getNode(id).on('input', (msg: Record<string, unknown>) => outputs.push({ id, msg }));
    for (let i = 0; i < 3; i++) p1.receive({ payload: `Tell story ${i}` });
    const metrics = async () =>
      (await helper.request().get('/edge-llm/runtimes').expect(200)).body[0].metrics as RuntimeMetrics;
    // Closing comes while the first story is being told.
    for (let m = await metrics(); m.active === 0; m = await metrics())
      await new Promise((r) => setImmediate(r));
    await (p1 as unknown as { close(removed: boolean): Promise<void> }).close(false);
    await until(() => outputs.length >= 3, 30_000, 'three outcomes');
    // Anything sent on after the three would come now.
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      outputs.map((o) => o.id),
      ['caught', 'caught', 'caught'],
      'a stopped node sends nothing on; its messages end at Catch',
    );
    for (const { msg } of outputs) {
      assert.match(String((msg.error as { message: string }).message), /stopped \(redeploy or shutdown\)/);
    }
    // The stories were cut, not told to the end (1900 tokens each), and the shared runtime is free
    // for the node that stays: nothing of p1's is running or queued.
    let after = await metrics();
    while (after.active + after.queued > 0) after = await metrics();
    assert.ok(after.tokensOut < 1900, `${after.tokensOut} tokens decoded for three stories of up to 1900`);
    const out = next('valid');
    (helper.getNode('p2') as Spied).receive({ payload: 'Zone A level 1' });
    assert.ok(((await out).llm as { tokensOut: number }).tokensOut > 0);
  });

  it('shows loading progress a few times a second at most, and runs in-process where asked', async function () {
    for (const isolation of ['child', 'in-process']) {
      const started = Date.now();
      await load([runtime('rt1', stories, { isolation }), parse('p1', 'rt1')]);
      const p1 = helper.getNode('p1') as Spied;
      await until(() => p1.status.args.some(([s]) => s.text?.endsWith('status.ready')), 20_000, 'ready');
      const loading = p1.status.args.filter(([s]) => String(s.text).includes('status.loading')).length;
      const allowed = 2 + Math.ceil((Date.now() - started) / 500);
      assert.ok(loading <= allowed, `${loading} loading updates (at most ${allowed})`);
      const out = next('valid');
      p1.receive({ payload: 'Zone A level 2' });
      assert.ok(((await out).llm as { tokensOut: number }).tokensOut > 0);
      const [info] = (await helper.request().get('/edge-llm/runtimes').expect(200)).body;
      assert.equal(info.process, isolation);
      assert.equal(info.settings.contextSize, 1024);
      await helper.unload();
    }
  });

  it('refuses an empty or missing payload, and one over its max input, with a clear error to Catch', async function () {
    await load([runtime('rt1', stories), parse('p1', 'rt1', { maxInput: '40' })]);
    const p1 = helper.getNode('p1') as Spied;
    const cases: Array<[unknown, RegExp]> = [
      [undefined, /empty-input/],
      [null, /empty-input/],
      ['   ', /empty-input/],
      ['x'.repeat(41), /too long: 41 characters.*at most 40/],
      [{ reading: 'y'.repeat(40) }, /too long: more than 40 characters/],
    ];
    for (const [payload, pattern] of cases) {
      const caught = next('caught');
      p1.receive({ payload });
      assert.match(String(((await caught).error as { message: string }).message), pattern);
    }
  });

  it('refuses an invalid schema at deploy with a red status and an error', async function () {
    await load([
      runtime('rt1', stories),
      parse('p1', 'rt1', { schema: '{"type": "object", "properties": {"a": {"type": 7}}}' }),
    ]);
    const p1 = helper.getNode('p1') as Spied;
    // The schema is checked off the event loop: a message sent at once waits for the check and
    // ends once, at Catch, with the reason.
    const outcomes: string[] = [];
    for (const id of ['valid', 'rejected', 'caught']) helper.getNode(id).on('input', () => outcomes.push(id));
    const caught = next('caught');
    p1.receive({ payload: 'zone A level 3' });
    assert.match(String(((await caught).error as { message: string }).message), /Invalid JSON Schema/);
    assert.ok(p1.status.calledWithMatch({ fill: 'red' }));
    assert.ok(
      p1.error.args.some(([m]) => /bad-config: Invalid JSON Schema/.test(String(m))),
      p1.error.args.join(),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(outcomes, ['caught']);
  });

  it('refuses at deploy an example whose output the schema refuses', async function () {
    await load([
      runtime('rt1', stories),
      parse('p1', 'rt1', {
        examples: JSON.stringify([
          { input: 'zone A level 3', output: { zone: 'A', level: 3 } },
          { input: 'zone B level 12', output: { zone: 'B', level: 12 } },
        ]),
      }),
    ]);
    const p1 = helper.getNode('p1') as Spied;
    await until(() => p1.error.args.length > 0, 10_000, 'a configuration error');
    assert.ok(p1.status.calledWithMatch({ fill: 'red' }));
    assert.match(String(p1.error.args[0][0]), /bad-config: .*errors\.bad-example/);
  });

  it('sends a refused msg.schema override to a Catch node with the original message', async function () {
    await load([runtime('rt1', stories), parse('p1', 'rt1')]);
    const caught = next('caught');
    (helper.getNode('p1') as Spied).receive({ payload: 'x', schema: { type: 'object' }, _tag: 42 });
    const msg = await caught;
    assert.equal(msg._tag, 42);
    assert.match(String((msg.error as { message: string }).message), /override-refused/);
  });

  it('follows msg.schema where allowed', async function () {
    await load([runtime('rt1', stories), parse('p1', 'rt1', { allowOverride: true })]);
    const out = next('valid');
    const schema = {
      type: 'object',
      properties: { ok: { type: 'boolean' } },
      required: ['ok'],
      additionalProperties: false,
    };
    (helper.getNode('p1') as Spied).receive({ payload: 'is it ok?', schema });
    assert.equal(typeof ((await out).payload as { ok: boolean }).ok, 'boolean');
  });

  it('shows a red status and an error for a missing model, while another flow keeps parsing', async function () {
    await load([
      runtime('bad', path.join(testModelsDir(), 'no-such-model.gguf')),
      runtime('good', stories),
      parse('pbad', 'bad'),
      parse('pgood', 'good'),
    ]);
    const pbad = helper.getNode('pbad') as Spied;
    await until(() => pbad.status.args.some(([s]) => s.fill === 'red'), 20_000, 'red status');
    const caught = next('caught');
    pbad.receive({ payload: 'Zone A level 2' });
    assert.match(String(((await caught).error as { message: string }).message), /not found/);
    const out = next('valid');
    (helper.getNode('pgood') as Spied).receive({ payload: 'Zone A level 2' });
    assert.ok(((await out).llm as { tokensOut: number }).tokensOut > 0);
  });
});
