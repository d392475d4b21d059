import * as assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile, appendFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  ModelLifecycle,
  RuntimeProcess,
  RuntimeRegistry,
  installModelFile,
  parseAdapters,
  type AdapterSpec,
  type LlmError,
  type Registry,
} from '../lib/runtime';
import { writeLoraGguf } from './support/lora';
import { testModel } from './support/models';

const SETTINGS = { threads: 1, sequences: 1, contextSize: 256 };
const PROMPT = 'Once upon a time';

describe('LoRA adapters per runtime (real model, adapters written at test time)', function () {
  this.timeout(120_000);
  let dir: string;
  let stories: string;
  let registry: Registry | undefined;

  before(async () => {
    stories = await testModel('stories');
    dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-lora-'));
    await writeLoraGguf({ model: stories, out: path.join(dir, 'tone.gguf'), targets: ['output.weight'] });
    await writeLoraGguf({
      model: stories,
      out: path.join(dir, 'tone16.gguf'),
      targets: ['output.weight', 'blk.0.attn_q.weight', 'blk.1.ffn_down.weight'],
      type: 'f16',
      seed: 11,
    });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await registry?.close();
    registry = undefined;
  });

  const answer = async (adapters?: AdapterSpec[]): Promise<{ text: string; id: string }> => {
    registry ??= new RuntimeRegistry({ modelsDir: dir });
    const lease = registry.acquire({ source: stories, settings: SETTINGS, adapters });
    try {
      const runtime = await lease.ready;
      const r = await runtime.complete(PROMPT, { maxTokens: 24, temperature: 0 });
      const infos = await registry.list();
      const id = (lease as unknown as { entryId: string }).entryId;
      assert.ok(infos.some((i) => i.id === id));
      return { text: r.text, id };
    } finally {
      await lease.release();
    }
  };

  it('parses the field: one "file scale" a line, scale 1 by default, comments skipped; bad scales refused', () => {
    assert.deepEqual(
      parseAdapters('tone@1.0.0 0.8\n\n# a comment\n/data/lora/terse.gguf\nwith space.gguf -0.5'),
      [
        { source: 'tone@1.0.0', scale: 0.8 },
        { source: '/data/lora/terse.gguf', scale: 1 },
        { source: 'with space.gguf', scale: -0.5 },
      ],
    );
    assert.deepEqual(parseAdapters(''), []);
    assert.deepEqual(parseAdapters([{ source: 'a.gguf', scale: 2 }]), [{ source: 'a.gguf', scale: 2 }]);
    assert.throws(() => parseAdapters('a.gguf 99'), /scale must be a number from -10 to 10/);
    assert.throws(() => parseAdapters([{ source: '' }]), /no file is named/);
    assert.throws(() => parseAdapters(Array.from({ length: 9 }, () => ({ source: 'a.gguf' }))), /At most 8/);
  });

  it('at temperature 0 the adapter changes the answer; at scale 0 the answer is the base model’s', async () => {
    const base = await answer();
    const tuned = await answer([{ source: 'tone.gguf', scale: 1 }]);
    const off = await answer([{ source: 'tone.gguf', scale: 0 }]);
    const tuned16 = await answer([{ source: path.join(dir, 'tone16.gguf'), scale: 1 }]);
    assert.ok(base.text.length > 0);
    assert.notEqual(tuned.text, base.text, 'the adapter changed nothing');
    assert.notEqual(tuned16.text, base.text, 'the F16 adapter changed nothing');
    assert.equal(off.text, base.text);
    assert.notEqual(tuned.id, base.id);
    assert.notEqual(off.id, tuned.id, 'another scale must not share the context');
  });

  it('runtimes sharing a model with different adapters get their own contexts, one model load', async () => {
    registry = new RuntimeRegistry({ modelsDir: dir });
    const reg = registry as RuntimeRegistry;
    const plain = reg.acquire({ source: stories, settings: SETTINGS });
    const tuned = reg.acquire({
      source: stories,
      settings: SETTINGS,
      adapters: [{ source: 'tone.gguf', scale: 1 }],
    });
    const same = reg.acquire({
      source: stories,
      settings: SETTINGS,
      adapters: [{ source: 'tone.gguf', scale: 1 }],
    });
    const [a, b, c] = await Promise.all([plain.ready, tuned.ready, same.ready]);
    assert.equal(reg.loadedModels, 1);
    assert.notEqual(a, b);
    assert.equal(b, c, 'the same adapter at the same scale shares one context');
    const infos = await reg.list();
    assert.equal(infos.length, 2);
    const withLora = infos.find((i) => i.adapters)!;
    assert.equal(withLora.adapters![0].scale, 1);
    assert.match(withLora.adapters![0].sha256, /^[0-9a-f]{64}$/);
    assert.match(withLora.id, /-lora[0-9a-f]{12}$/);
    const [x, y] = await Promise.all([
      a.complete(PROMPT, { maxTokens: 24, temperature: 0 }),
      b.complete(PROMPT, { maxTokens: 24, temperature: 0 }),
    ]);
    assert.notEqual(x.text, y.text);
  });

  describe('bad adapter files: a clear error, the runtime not loaded', () => {
    const cases: Array<[string, () => Promise<string>, RegExp]> = [
      ['a model file', async () => stories, /not an adapter \(general\.type is null/],
      ['not a GGUF file', async () => write('junk.gguf', 'hello, not a model'), /not a GGUF file/],
      [
        'another type of file',
        () => writeLoraGguf({ model: stories, out: path.join(dir, 'model-type.gguf'), generalType: 'model' }),
        /not an adapter \(general\.type is "model"/,
      ],
      [
        'another architecture',
        () => writeLoraGguf({ model: stories, out: path.join(dir, 'qwen.gguf'), architecture: 'qwen2' }),
        /made for the qwen2 architecture; the model is llama/,
      ],
      [
        'a broken pair',
        () => writeLoraGguf({ model: stories, out: path.join(dir, 'half.gguf'), dropB: true }),
        /output\.weight has only its lora_a tensor/,
      ],
      [
        'the wrong shape',
        () => writeLoraGguf({ model: stories, out: path.join(dir, 'shape.gguf'), wrongShape: true }),
        /output\.weight has the shape \[64, 512\] in the model, which lora_a \[65, 4\].*another model/,
      ],
      [
        'a truncated file',
        async () => {
          const file = path.join(dir, 'cut.gguf');
          await copyFile(path.join(dir, 'tone.gguf'), file);
          await truncate(file, 2000);
          return file;
        },
        /truncated/,
      ],
      [
        'a missing file',
        async () => path.join(dir, 'nowhere.gguf'),
        /LoRA adapter .*nowhere\.gguf.*not found/,
      ],
    ];
    const write = async (name: string, text: string): Promise<string> => {
      const file = path.join(dir, name);
      await writeFile(file, text);
      return file;
    };
    for (const [what, make, expected] of cases) {
      it(what, async () => {
        const file = await make();
        registry = new RuntimeRegistry({ modelsDir: dir });
        const lease = registry.acquire({
          source: stories,
          settings: SETTINGS,
          adapters: [{ source: file, scale: 1 }],
        });
        await assert.rejects(lease.ready, (err: LlmError) => {
          assert.equal(err.code, 'model_load');
          assert.match(err.message, expected);
          return true;
        });
        assert.equal(lease.status.state, 'error');
        await lease.release();
      });
    }
  });

  it('an adapter installed as name@version is verified against its manifest; a changed file is refused', async () => {
    const models = await mkdtemp(path.join(tmpdir(), 'edge-llm-lora-models-'));
    try {
      await installModelFile(models, { name: 'tone', version: '1.0.0' }, path.join(dir, 'tone.gguf'));
      registry = new RuntimeRegistry({ modelsDir: models });
      const lease = registry.acquire({
        source: stories,
        settings: SETTINGS,
        adapters: [{ source: 'tone@1.0.0', scale: 1 }],
      });
      await lease.ready;
      await lease.release();
      await appendFile(path.join(models, 'tone', '1.0.0', 'tone.gguf'), Buffer.alloc(1));
      const bad = registry.acquire({
        source: stories,
        settings: SETTINGS,
        adapters: [{ source: 'tone@1.0.0', scale: 1 }],
      });
      await assert.rejects(
        bad.ready,
        /LoRA adapter tone@1\.0\.0: Model tone@1\.0\.0 refused: .* has \d+ bytes, the manifest says/,
      );
      await bad.release();
      const missing = registry.acquire({
        source: stories,
        settings: SETTINGS,
        adapters: [{ source: 'tone@2.0.0', scale: 1 }],
      });
      await assert.rejects(missing.ready, /LoRA adapter tone@2\.0\.0: Model tone@2\.0\.0 not found/);
      await missing.release();
    } finally {
      await rm(models, { recursive: true, force: true });
    }
  });

  it('an update to a version the adapter does not fit is refused, the old version kept', async () => {
    const models = await mkdtemp(path.join(tmpdir(), 'edge-llm-lora-versions-'));
    let lifecycle: ModelLifecycle | undefined;
    try {
      await installModelFile(models, { name: 'story', version: '1.0.0' }, stories);
      await installModelFile(models, { name: 'story', version: '2.0.0' }, await testModel('tinyRandom'));
      await copyFile(path.join(dir, 'tone.gguf'), path.join(models, 'tone.gguf'));
      registry = new RuntimeRegistry({ modelsDir: models });
      lifecycle = new ModelLifecycle({
        registry,
        source: 'story@1.0.0',
        settings: SETTINGS,
        adapters: [{ source: 'tone.gguf', scale: 1 }],
        modelsDir: models,
      });
      const before = await (await lifecycle.ready).complete(PROMPT, { maxTokens: 8, temperature: 0 });
      const result = await lifecycle.update({ model: 'story@2.0.0' });
      assert.equal(result.ok, false);
      assert.match(
        result.reason ?? '',
        /LoRA adapter .*tone\.gguf: .*the adapter was made for another model/,
      );
      assert.equal(lifecycle.info().model, 'story@1.0.0');
      const after = await (await lifecycle.ready).complete(PROMPT, { maxTokens: 8, temperature: 0 });
      assert.equal(after.text, before.text);
    } finally {
      await lifecycle?.release();
      await rm(models, { recursive: true, force: true });
    }
  });

  it('works the same in the runtime child process', async () => {
    const child = new RuntimeProcess({ modelsDir: dir });
    registry = child;
    const plain = child.acquire({ source: stories, settings: SETTINGS });
    const tuned = child.acquire({
      source: stories,
      settings: SETTINGS,
      adapters: [{ source: 'tone.gguf', scale: 1 }],
    });
    const bad = child.acquire({
      source: stories,
      settings: SETTINGS,
      adapters: [{ source: stories, scale: 1 }],
    });
    const [a, b] = await Promise.all([plain.ready, tuned.ready]);
    const [x, y] = await Promise.all([
      a.complete(PROMPT, { maxTokens: 24, temperature: 0 }),
      b.complete(PROMPT, { maxTokens: 24, temperature: 0 }),
    ]);
    assert.notEqual(x.text, y.text);
    await assert.rejects(bad.ready, /not an adapter/);
    assert.equal((await child.list()).length, 2);
  });
});
