import * as assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Node } from 'node-red';
import type * as sinon from 'sinon';
import { chatMessages, chatText } from '../lib/llm/chat';
import type { SessionStore } from '../lib/session';
import { coreNode, initHelper, stopServer, until } from './support/flow';
import { gapMonitor } from './support/gap-monitor';
import { testModel, testModelsDir } from './support/models';

import runtimeNode = require('../nodes/llm-runtime');
import chatNode = require('../nodes/llm-chat');
import storeNode from '../nodes/kv-session-store';
const helper = initHelper();

type Spied = Node & { status: sinon.SinonSpy; error: sinon.SinonSpy; receive: (msg: object) => void };
type Msg = Record<string, unknown>;

function runtime(id: string, model: string, extra: object = {}) {
  return { id, type: 'llm-runtime', model, sequences: '2', contextSize: '1024', queueLimit: '8', ...extra };
}

function chat(id: string, extra: object = {}) {
  return {
    id,
    type: 'llm-chat',
    z: 'f1',
    runtime: 'rt1',
    system: 'You tell short stories.',
    maxTokens: '48',
    temperature: '0',
    overrides: true,
    stream: true,
    outputs: 2,
    wires: [['answer'], ['parts']],
    ...extra,
  };
}

const sinks = [
  { id: 'f1', type: 'tab' },
  { id: 'answer', type: 'helper', z: 'f1' },
  { id: 'parts', type: 'helper', z: 'f1' },
  { id: 'catcher', type: 'catch', z: 'f1', scope: null, uncaught: false, wires: [['caught']] },
  { id: 'caught', type: 'helper', z: 'f1' },
];

const catchNode = coreNode('common/25-catch.js');

/** Every message that leaves the chat node (stream, answer, Catch), in the order they arrive. */
function record(): Array<{ at: string; msg: Msg }> {
  const seen: Array<{ at: string; msg: Msg }> = [];
  for (const at of ['answer', 'parts', 'caught'])
    helper.getNode(at).on('input', (msg: Msg) => seen.push({ at, msg }));
  return seen;
}

function next(id: string): Promise<Msg> {
  return new Promise((resolve) => helper.getNode(id).once('input', resolve));
}

describe('llm-chat: the message helpers', function () {
  it('takes text, numbers and booleans, and refuses anything else with what was sent', function () {
    assert.equal(chatText('Hello'), 'Hello');
    assert.equal(chatText(42), '42');
    assert.throws(() => chatText({ q: 1 }), /msg\.payload must be the text .* not object/);
    assert.throws(() => chatText(['a']), /not an array/);
    assert.throws(() => chatText(null), /not null/);
    assert.throws(() => chatText('  '), /empty/);
  });

  it('leaves a blank system prompt out', function () {
    assert.deepEqual(chatMessages('', 'Hi'), [{ role: 'user', content: 'Hi' }]);
    assert.equal(chatMessages('Be brief.', 'Hi')[0].role, 'system');
  });
});

describe('llm-chat in a flow (real model)', function () {
  this.timeout(60_000);
  let stories: string;
  let tinyRandom: string;
  before(async function () {
    stories = await testModel('stories');
    tinyRandom = await testModel('tinyRandom');
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
    helper.load([runtimeNode, chatNode, catchNode, storeNode], [...sinks, ...flow] as never);

  it('streams the answer in order while it is decoded, then sends the whole answer: the pieces joined', async function () {
    // The random-weight model runs on to max tokens: a long answer. Text is sent on every 50 ms, so how
    // many pieces a fast model's answer makes depends on the machine; the long-answer test counts them.
    await load([runtime('rt1', tinyRandom), chat('c1', { temperature: '0' })]);
    const seen = record();
    (helper.getNode('c1') as Spied).receive({ payload: 'Once upon a time', topic: 'story' });
    await until(() => seen.some((s) => s.at !== 'parts'), 30_000, 'the answer');
    await new Promise((r) => setTimeout(r, 100));
    const outcomes = seen.filter((s) => s.at !== 'parts');
    assert.deepEqual(
      outcomes.map((s) => s.at),
      ['answer'],
      `one outcome: ${JSON.stringify(outcomes.map((s) => s.msg.error))}`,
    );
    const answerAt = seen.findIndex((s) => s.at === 'answer');
    const parts = seen.filter((s) => s.at === 'parts').map((s) => s.msg);
    assert.ok(parts.length >= 2, `text, then the closing piece: ${parts.length}`);
    assert.ok(
      seen.slice(answerAt + 1).every((s) => s.at !== 'parts'),
      'every piece comes before the whole answer',
    );
    parts.forEach((p, i) => {
      const stream = p.stream as { index: number; done: boolean };
      assert.equal(stream.index, i, 'pieces numbered in the order they arrive');
      assert.equal(stream.done, i === parts.length - 1, 'only the last piece is done');
      assert.equal(p.topic, 'story', 'a piece keeps the topic');
    });
    assert.equal(parts[parts.length - 1].payload, '', 'the closing piece has no text');
    const answer = seen[answerAt].msg;
    assert.equal(typeof answer.payload, 'string');
    assert.ok((answer.payload as string).length > 0);
    assert.equal(answer.payload, parts.map((p) => p.payload).join(''), 'the answer is the pieces joined');
    assert.equal(answer.topic, 'story', 'the input message is reused');
    assert.equal(parts[0]._msgid, answer._msgid, 'pieces carry the input _msgid');
    const llm = answer.llm as Record<string, unknown>;
    assert.ok((llm.tokensOut as number) > 0 && (llm.tokensIn as number) > 0);
    assert.ok(['eos', 'maxTokens', 'stop'].includes(llm.stopReason as string));
    assert.equal(llm.schemaHash, undefined);
  });

  it('streams a long answer in pieces as it is decoded, without blocking the event loop over 50 ms', async function () {
    // The random-weight model's answer runs on to max tokens; the stories model's greedy story ends after 27 pieces.
    await load([
      runtime('rt1', tinyRandom, { contextSize: '1024' }),
      chat('c1', { maxTokens: '600', temperature: '0' }),
    ]);
    const c1 = helper.getNode('c1') as Spied;
    await until(() => c1.status.args.some(([s]) => String(s.text).endsWith('status.ready')), 20_000, 'ready');
    const seen = record();
    const monitor = gapMonitor();
    try {
      c1.receive({ payload: 'Once upon a time there was a little girl' });
      await until(() => seen.some((s) => s.at !== 'parts'), 45_000, 'the answer');
    } finally {
      const longest = monitor.stop();
      assert.ok(longest < 50, `the event loop was blocked ${longest} ms`);
    }
    const parts = seen.filter((s) => s.at === 'parts');
    // Pieces are sent every 50 ms while decoding: an answer held back to the end would be one piece.
    const ms = (seen.find((s) => s.at === 'answer')?.msg.llm as { totalMs: number }).totalMs;
    const expected = Math.min(5, Math.floor(ms / 150));
    assert.ok(
      parts.length >= expected,
      `${parts.length} pieces in ${Math.round(ms)} ms, expected ${expected}`,
    );
    assert.equal(seen.find((s) => s.at === 'answer')?.msg.payload, parts.map((p) => p.msg.payload).join(''));
  });

  it('answers on one output without streaming when Stream is off', async function () {
    await load([runtime('rt1', stories), chat('c1', { stream: false, outputs: 1, wires: [['answer']] })]);
    const seen = record();
    (helper.getNode('c1') as Spied).receive({ payload: 'The cat' });
    await until(() => seen.length > 0, 30_000, 'the answer');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      seen.map((s) => s.at),
      ['answer'],
    );
  });

  it('continues a session: the history goes into the prompt and the turn is stored, the mission untouched', async function () {
    const dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-chat-sessions-'));
    helper.settings({ userDir: dir });
    try {
      await load([
        { id: 'store', type: 'kv-session-store', maxTokens: '2048' },
        runtime('rt1', stories),
        chat('c1', { sessions: 'store', maxTokens: '24' }),
      ]);
      const c1 = helper.getNode('c1') as Spied;
      const llm: Msg[] = [];
      for (const msg of [
        { payload: 'Lily had a red ball.', session: 'kid-1' },
        { payload: 'What did Lily have?', session: 'kid-1' },
        { payload: 'What did Lily have?' },
      ]) {
        const out = next('answer');
        c1.receive(msg);
        llm.push((await out).llm as Msg);
      }
      assert.ok(
        (llm[1].tokensIn as number) > (llm[2].tokensIn as number),
        `the first turn is in the second prompt: ${llm[1].tokensIn} > ${llm[2].tokensIn} tokens without it`,
      );
      const store = (helper.getNode('store') as unknown as { store: SessionStore }).store;
      const rec = store.get('kid-1');
      assert.deepEqual(
        rec.conversation.map((m) => [m.role, m.role === 'user' ? m.content : typeof m.content]),
        [
          ['user', 'Lily had a red ball.'],
          ['assistant', 'string'],
          ['user', 'What did Lily have?'],
          ['assistant', 'string'],
        ],
      );
      assert.equal(rec.mission.state, 'Idle', 'a chat does not move the mission');
      assert.deepEqual(store.keys(), ['kid-1'], 'a message without a session key leaves no session');
    } finally {
      await helper.unload();
      helper.settings({ userDir: undefined });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('sends bad input to Catch with the original message, once, and nothing on either output', async function () {
    await load([runtime('rt1', stories), chat('c1', { maxInput: '40' })]);
    const seen = record();
    const c1 = helper.getNode('c1') as Spied;
    const bad = [
      {
        payload: { question: 'why' },
        error: /msg\.payload must be the text to send to the model, not object/,
      },
      { payload: '   ', error: /empty/ },
      { payload: 'x'.repeat(41), error: /too long: 41 characters, and this node accepts at most 40/ },
      { payload: 'Hi', temperature: 5, error: /msg\.temperature must be a number from 0 to 2, not 5/ },
      { payload: 'Hi', maxTokens: 2.5, error: /msg\.maxTokens must be a whole number from 1 to 32768/ },
      { payload: 'Hi', priority: 'urgent', error: /msg\.priority must be "high", "normal" or "low"/ },
      { payload: 'Hi', timeout: -1, error: /msg\.timeout must be a number from 0 to 3600/ },
    ];
    for (const [i, b] of bad.entries()) c1.receive({ ...b, error: undefined, n: i });
    await until(() => seen.length >= bad.length, 20_000, 'every outcome');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(seen.length, bad.length, 'one outcome each');
    for (const { at, msg } of seen) {
      assert.equal(at, 'caught');
      const b = bad[msg.n as number];
      assert.deepEqual(msg.payload, b.payload, 'the original payload');
      assert.match((msg.error as { message: string }).message, b.error);
    }
  });

  it('takes msg overrides where allowed and ignores them where not', async function () {
    await load([
      runtime('rt1', stories),
      chat('c1', { maxTokens: '64' }),
      chat('c2', { maxTokens: '64', overrides: false }),
    ]);
    const out1 = next('answer');
    (helper.getNode('c1') as Spied).receive({ payload: 'Once upon a time', maxTokens: 3, priority: 'high' });
    const llm1 = (await out1).llm as Msg;
    assert.equal(llm1.tokensOut, 3);
    assert.equal(llm1.stopReason, 'maxTokens');
    const out2 = next('answer');
    (helper.getNode('c2') as Spied).receive({ payload: 'Once upon a time', maxTokens: 3, temperature: 9 });
    assert.ok((((await out2).llm as Msg).tokensOut as number) > 3, 'msg.maxTokens ignored');
  });

  it('sends a timeout to Catch with the original message (there is no rejected output)', async function () {
    await load([runtime('rt1', stories), chat('c1', { timeout: '0.001' })]);
    const c1 = helper.getNode('c1') as Spied;
    await until(() => c1.status.args.some(([s]) => String(s.text).endsWith('status.ready')), 20_000, 'ready');
    const seen = record();
    (helper.getNode('c1') as Spied).receive({ payload: 'Once upon a time' });
    await until(() => seen.some((s) => s.at !== 'parts'), 20_000, 'the outcome');
    const outcome = seen.find((s) => s.at !== 'parts')!;
    assert.equal(outcome.at, 'caught');
    assert.match((outcome.msg.error as { message: string }).message, /deadline/);
    assert.equal(outcome.msg.payload, 'Once upon a time', 'the original message');
  });

  it('cancels its requests when the node is stopped: each message ends once, as cancelled at Catch', async function () {
    await load([
      runtime('rt1', stories, { sequences: '1', contextSize: '2048' }),
      chat('c1', { maxTokens: '1900' }),
      chat('c2', { stream: false, outputs: 1, wires: [['answer']] }),
    ]);
    const c1 = helper.getNode('c1') as Spied;
    await until(() => c1.status.args.some(([s]) => String(s.text).endsWith('status.ready')), 20_000, 'ready');
    const seen = record();
    for (let i = 0; i < 3; i++) c1.receive({ payload: `Tell story ${i}` });
    await until(() => seen.some((s) => s.at === 'parts'), 20_000, 'the first piece');
    await (c1 as unknown as { close(removed: boolean): Promise<void> }).close(false);
    await until(() => seen.filter((s) => s.at !== 'parts').length >= 3, 5_000, 'three outcomes');
    await new Promise((r) => setTimeout(r, 100));
    const outcomes = seen.filter((s) => s.at !== 'parts');
    assert.deepEqual(
      outcomes.map((o) => o.at),
      ['caught', 'caught', 'caught'],
    );
    for (const { msg } of outcomes)
      assert.match((msg.error as { message: string }).message, /stopped \(redeploy or shutdown\)/);
    // The shared runtime is free at once for the node that stays.
    const out = next('answer');
    (helper.getNode('c2') as Spied).receive({ payload: 'The dog' });
    assert.ok(((await out).llm as { totalMs: number }).totalMs < 5_000);
  });
});
