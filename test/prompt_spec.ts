import * as assert from 'node:assert/strict';
import * as sinon from 'sinon';
import { buildMessages, generateValidJson, inputLength } from '../lib/llm/prompt';
import { RuntimeRegistry, compileSchema, loadNodeLlamaCpp, type LlmError } from '../lib/runtime';
import { testModel, testModelsDir } from './support/models';

describe('answers that must validate (real model)', function () {
  this.timeout(60_000);
  const sandbox = sinon.createSandbox();
  let registry: RuntimeRegistry;
  beforeEach(() => (registry = new RuntimeRegistry({ modelsDir: testModelsDir(), gpu: false })));
  afterEach(async () => {
    sandbox.restore();
    await registry.close();
  });

  const schema = compileSchema({
    type: 'object',
    properties: { zone: { type: 'string', maxLength: 8 } },
    required: ['zone'],
  });

  it('keeps one deadline for a message across all its retries', async function () {
    const runtime = await registry.acquire({ source: await testModel('stories') }).ready;
    // The message's clock is the test's: each answer "takes" 25 s of it, however long the machine
    // really needs, so the deadline of 60 s allows exactly three answers.
    const clock = sandbox.useFakeTimers({ now: Date.now(), toFake: ['Date'] });
    const generate = runtime.generateJson.bind(runtime);
    const given: Array<number | undefined> = [];
    runtime.generateJson = ((messages, s, options) => {
      given.push(options?.timeoutMs);
      return generate(messages, s, options);
    }) as typeof runtime.generateJson;
    let answers = 0;
    await assert.rejects(
      generateValidJson(
        runtime,
        buildMessages('Name a zone.', [], 'which zone?'),
        schema,
        { retries: 1000, timeoutMs: 60_000, maxTokens: 24 },
        () => {
          answers++;
          clock.tick(25_000);
          return 'never good enough';
        },
      ),
      (e: LlmError) => e.code === 'timeout' && /after 3 answers/.test(e.message),
    );
    assert.equal(answers, 3, 'gave up at the deadline, not after 1000 answers');
    assert.deepEqual(given, [60_000, 35_000, 10_000], 'each try gets what is left of the one deadline');
  });

  it('keeps the answer when the KV snapshot cannot be written, and says so', async function () {
    const runtime = await registry.acquire({ source: await testModel('stories') }).ready;
    const { LlamaContextSequence } = await loadNodeLlamaCpp();
    sandbox
      .stub(LlamaContextSequence.prototype, 'saveStateToFile')
      .rejects(new Error('ENOSPC: no space left'));
    const result = await runtime.generateJson(buildMessages('Name a zone.', [], 'which zone?'), schema, {
      snapshot: { save: '/nonexistent/kv' },
    });
    assert.equal(typeof (result.value as { zone: string }).zone, 'string');
    assert.equal(result.snapshotSaved, false);
  });

  it('measures an input only up to its bound: a 10 MB payload is never walked whole', function () {
    const big = 'x'.repeat(10 * 2 ** 20);
    assert.equal(inputLength(big, 32_000), big.length);
    let visited = 0;
    const readings = new Proxy(
      Array.from({ length: 200_000 }, (_, i) => ({ sensor: `s${i}`, value: i })),
      {
        get(target, key, receiver) {
          if (typeof key === 'string' && /^\d+$/.test(key)) visited++;
          return Reflect.get(target, key, receiver) as unknown;
        },
      },
    );
    assert.ok(inputLength({ readings }, 32_000) > 32_000);
    assert.ok(visited < 2_000, `${visited} of 200,000 readings looked at`);
    const cyclic: Record<string, unknown> = { a: 'text' };
    cyclic.self = cyclic;
    assert.ok(inputLength(cyclic, 32_000) < 100, 'a cycle is counted once');
    const measured = inputLength({ a: 1, b: [true, 'x'] }, 32_000);
    const real = JSON.stringify({ a: 1, b: [true, 'x'] }).length;
    assert.ok(measured >= real && measured <= real + 6, `${measured} for ${real} characters`);
  });
});
