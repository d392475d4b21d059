import * as assert from 'node:assert/strict';
import os from 'node:os';
import * as path from 'node:path';
import * as sinon from 'sinon';
import { RuntimeProcess, RuntimeRegistry, type LlmError, type RuntimeProcessOptions } from '../lib/runtime';
import { until } from './support/flow';
import { testModel } from './support/models';

describe('the runtime child process (real model)', function () {
  this.timeout(60_000);
  let stories: string;
  let rp: RuntimeProcess;
  const logs: string[] = [];
  const open = (options: Partial<RuntimeProcessOptions> = {}) =>
    (rp = new RuntimeProcess({
      modelsDir: path.dirname(stories),
      gpu: false,
      onLog: (level, message) => logs.push(`${level}: ${message}`),
      ...options,
    }));

  before(async () => (stories = await testModel('stories')));
  afterEach(async () => {
    logs.length = 0;
    await rp?.close();
  });

  it('answers as the in-process runtime does: the same text, streamed, and the same token counts', async function () {
    const settings = { threads: 1, sequences: 1, contextSize: 1024 };
    const remote = await open().acquire({ source: stories, settings }).ready;
    const registry = new RuntimeRegistry({ modelsDir: path.dirname(stories), gpu: false });
    try {
      const local = await registry.acquire({ source: stories, settings }).ready;
      const chunks: string[] = [];
      const a = await remote.complete('Once upon a time', { maxTokens: 40, onText: (t) => chunks.push(t) });
      const b = await local.complete('Once upon a time', { maxTokens: 40 });
      assert.equal(a.text, b.text, 'greedy decoding gives the same answer on both sides');
      assert.equal(chunks.join(''), a.text, 'the streamed text adds up to the answer');
      assert.deepEqual(await remote.tokenCounts(['hello world', 'x']), [
        local.countTokens('hello world'),
        local.countTokens('x'),
      ]);
      assert.equal(remote.modelSha256, local.modelSha256);
      assert.equal(remote.contextSize, local.contextSize);
      // Metrics follow within the child's 50 ms batching.
      await until(() => remote.getMetrics().requests >= 1, 2_000, 'metrics from the child');
    } finally {
      await registry.close();
    }
  });

  it('takes a blank thread count from the child, which resolves it for the model it loaded', async function () {
    // This process believes in 64 cores; the child sees the machine's own (the module itself is stubbed:
    // lib/ reads it through a namespace object).
    const cores = sinon.stub(os, 'availableParallelism').returns(64);
    try {
      const lease = open().acquire({ source: stories, settings: { sequences: 1, contextSize: 512 } });
      assert.equal(lease.settings.threads, 8, "before the child answers: this process's guess");
      const runtime = await lease.ready;
      assert.notEqual(runtime.settings.threads, 8);
      assert.equal(lease.settings.threads, runtime.settings.threads);
    } finally {
      cores.restore();
    }
  });

  it('cancels across the boundary and frees the sequence for the next request', async function () {
    const runtime = await open().acquire({
      source: stories,
      settings: { threads: 1, sequences: 1, contextSize: 2048 },
    }).ready;
    const controller = new AbortController();
    const cancelled = runtime.complete('Once upon a time', { maxTokens: 1900, signal: controller.signal });
    const next = runtime.complete('The little dog', { maxTokens: 8 });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(cancelled, (e: LlmError) => e.code === 'cancelled');
    assert.ok((await next).tokensOut > 0);
  });

  it('after a SIGKILL: runtime_crashed for what was decoding, the queued answered by a new child, a log line', async function () {
    const lease = open({ restartBaseMs: 200 }).acquire({
      source: stories,
      settings: { threads: 1, sequences: 1, contextSize: 2048 },
    });
    const runtime = await lease.ready;
    const first = rp.pid!;
    const states: string[] = [];
    lease.on('status', (s) => states.push(s.state));
    let decodingStarted!: () => void;
    const started = new Promise<void>((r) => (decodingStarted = r));
    const decoding = runtime.complete('Once upon a time', {
      maxTokens: 1900,
      onText: () => decodingStarted(),
    });
    const queued = [1, 2].map(() => runtime.complete('The dog', { maxTokens: 8 }));
    await started; // text has come back: the first request is decoding in the child
    process.kill(first, 'SIGKILL');
    await assert.rejects(
      decoding,
      (e: LlmError) => e.code === 'runtime_crashed' && /SIGKILL/.test(e.message),
    );
    for (const r of await Promise.all(queued)) assert.ok(r.tokensOut > 0);
    assert.notEqual(rp.pid, first);
    assert.deepEqual([states[0], states.at(-1)], ['restarting', 'ready']);
    assert.ok(
      logs.some((l) => /^error: The model runtime process ended \(signal SIGKILL\)/.test(l)),
      logs.join(),
    );
  });

  it('fails requests at once while its model cannot be loaded', async function () {
    const lease = open().acquire({ source: path.join(path.dirname(stories), 'no-such-model.gguf') });
    await assert.rejects(lease.ready, (e: LlmError) => e.code === 'model_load');
    assert.equal(lease.runtime, undefined);
  });
});
