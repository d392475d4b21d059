import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  ModelLifecycle,
  RuntimeProcess,
  RuntimeRegistry,
  decryptModelToRam,
  encryptModelFile,
  hashFile,
  installModelFile,
  readEncryptedHeader,
  readManifest,
  type LlmError,
  type Registry,
} from '../lib/runtime';
import { main as encryptCli } from '../lib/runtime/encrypt-cli';
import { gapMonitor } from './support/gap-monitor';
import { testModel } from './support/models';

const SETTINGS = { threads: 1, sequences: 1, contextSize: 256 };
const KEY = 'correct horse battery staple';
const CHUNK = 64 * 1024;

describe('models encrypted at rest (AES-256-GCM chunks, decrypted only into memory)', function () {
  this.timeout(120_000);
  let dir: string;
  let ram: string;
  let stories: string;
  let sealed: string;
  let registry: Registry | undefined;
  let lifecycle: ModelLifecycle | undefined;

  before(async function () {
    if (!existsSync('/dev/shm')) this.skip();
    stories = await testModel('stories');
    dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-enc-'));
    ram = await mkdtemp('/dev/shm/edge-llm-test-');
    sealed = path.join(dir, 'stories.gguf.enc');
    await encryptModelFile(stories, sealed, KEY, { chunkBytes: CHUNK });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(ram, { recursive: true, force: true });
  });
  afterEach(async () => {
    await lifecycle?.release();
    lifecycle = undefined;
    await registry?.close();
    registry = undefined;
  });

  /** A copy of the sealed file with `change` applied to its bytes. */
  const tampered = async (
    name: string,
    change: (bytes: Buffer, dataOffset: number) => Buffer,
  ): Promise<string> => {
    const bytes = await readFile(sealed);
    const { dataOffset } = (await readEncryptedHeader(sealed))!;
    const file = path.join(dir, name);
    await writeFile(file, change(Buffer.from(bytes), dataOffset));
    return file;
  };
  const decryptFails = async (file: string, key: string, expected: RegExp): Promise<void> => {
    await assert.rejects(decryptModelToRam(file, key, { ramDir: ram }), (err: LlmError) => {
      assert.equal(err.code, 'model_load');
      assert.match(err.message, expected);
      return true;
    });
    assert.deepEqual(await readdir(ram), [], 'a failed decryption left plaintext behind');
  };

  it('the file holds no plaintext; it decrypts to the same bytes, mode 0600, in the RAM directory', async () => {
    const plain = await readFile(stories);
    const enc = await readFile(sealed);
    const header = (await readEncryptedHeader(sealed))!.header;
    assert.equal(header.size, plain.length);
    assert.equal(header.sha256, await hashFile(stories));
    assert.equal(enc.indexOf(plain.subarray(0, 32)), -1, 'the GGUF header is readable in the encrypted file');
    assert.equal(enc.indexOf(plain.subarray(5000, 5032)), -1);
    assert.equal(
      enc.length,
      12 + (await readEncryptedHeader(sealed))!.headerBytes.length + plain.length + 19 * 16,
    );
    const out = await decryptModelToRam(sealed, KEY, { ramDir: ram });
    try {
      assert.equal(path.dirname(out.path), ram);
      assert.equal((await stat(out.path)).mode & 0o777, 0o600);
      assert.ok((await readFile(out.path)).equals(plain));
      assert.equal(out.sha256, header.sha256);
    } finally {
      await rm(out.path, { force: true });
    }
  });

  it('a wrong key, a changed byte, swapped chunks, a changed header and a cut file are told apart', async () => {
    await decryptFails(
      sealed,
      'wrong key',
      /cannot be decrypted with this model key: it was encrypted with another one/,
    );
    await decryptFails(
      await tampered('flipped.enc', (b, at) => {
        b[at + 3 * (CHUNK + 16) + 100] ^= 1;
        return b;
      }),
      KEY,
      /fails its integrity check at chunk 4 of 19: it was changed or damaged after it was encrypted \(the key is right\)/,
    );
    await decryptFails(
      await tampered('swapped.enc', (b, at) => {
        const n = CHUNK + 16;
        const one = Buffer.from(b.subarray(at + n, at + 2 * n));
        b.copy(b, at + n, at + 2 * n, at + 3 * n);
        one.copy(b, at + 2 * n);
        return b;
      }),
      KEY,
      /fails its integrity check at chunk 2 of 19/,
    );
    await decryptFails(
      await tampered('header.enc', (b) => {
        // Another plaintext hash of the same length: the key check passes, every chunk's tag fails.
        const text = b.toString('latin1');
        const at = text.indexOf('"sha256":"') + 10;
        b[at] = b[at] === 0x30 ? 0x31 : 0x30;
        return b;
      }),
      KEY,
      /fails its integrity check at chunk 1 of 19/,
    );
    const cut = await tampered('cut.enc', (b) => b);
    await truncate(cut, (await stat(cut)).size - (CHUNK + 16));
    await decryptFails(cut, KEY, /was cut off or extended/);
    const plainFile = path.join(dir, 'plain-as-enc.bin');
    await writeFile(plainFile, 'GGUF');
    assert.equal(await readEncryptedHeader(plainFile), undefined);
  });

  it('refuses a directory on disk for the plaintext, and writes nothing there', async () => {
    const disk = await mkdtemp(path.join(tmpdir(), 'edge-llm-not-ram-'));
    try {
      await assert.rejects(
        decryptModelToRam(sealed, KEY, { ramDir: disk }),
        /is not a RAM-backed filesystem \(tmpfs\/ramfs\): refused, nothing was written/,
      );
      assert.deepEqual(await readdir(disk), []);
      await assert.rejects(
        decryptModelToRam(sealed, KEY, { ramDir: path.join(ram, 'missing') }),
        /decrypted only into memory, and .*missing cannot be used for that/,
      );
    } finally {
      await rm(disk, { recursive: true, force: true });
    }
  });

  it('decrypts a 48 MB file in bounded pieces without holding the event loop', async () => {
    const big = path.join(dir, 'big.bin');
    const handle = await open(big, 'w');
    for (let i = 0; i < 48; i++) await handle.write(randomBytes(1 << 20));
    await handle.close();
    await encryptModelFile(big, `${big}.enc`, KEY);
    await rm(big);
    const monitor = gapMonitor();
    const out = await decryptModelToRam(`${big}.enc`, KEY, { ramDir: ram });
    const longest = monitor.stop();
    await rm(out.path);
    assert.equal(out.size, 48 << 20);
    assert.ok(longest < 50, `the event loop was held ${longest} ms`);
  });

  it('the registry loads it with the key: the same answer as the plain file, its plaintext gone after the load', async () => {
    registry = new RuntimeRegistry({ modelsDir: dir, ramDir: ram });
    const plainLease = registry.acquire({ source: stories, settings: SETTINGS });
    const plain = await plainLease.ready;
    const expected = await plain.complete('Once upon a time', { maxTokens: 16, temperature: 0 });
    await plainLease.release();
    const lease = registry.acquire({ source: sealed, settings: SETTINGS, modelKey: KEY });
    const runtime = await lease.ready;
    assert.deepEqual(await readdir(ram), [], 'the decrypted model is still on the RAM filesystem');
    assert.equal(runtime.modelSha256, await hashFile(stories));
    const got = await runtime.complete('Once upon a time', { maxTokens: 16, temperature: 0 });
    assert.equal(got.text, expected.text);
    const [info] = await registry.list();
    assert.equal(info.model.path, sealed);
    assert.equal(info.model.size, (await stat(stories)).size);
  });

  for (const [what, key, expected] of [
    ['no key', undefined, /is an encrypted model file and no model key is set/],
    ['a wrong key', 'nope', /cannot be decrypted with this model key/],
  ] as const) {
    it(`${what}: a clear load error`, async () => {
      registry = new RuntimeRegistry({ modelsDir: dir, ramDir: ram });
      const lease = registry.acquire({ source: sealed, settings: SETTINGS, modelKey: key });
      await assert.rejects(lease.ready, expected);
      assert.equal(lease.status.state, 'error');
    });
  }

  it('without a RAM-backed directory the load is refused, never decrypted to disk', async () => {
    registry = new RuntimeRegistry({ modelsDir: dir, ramDir: dir });
    const before = await readdir(dir);
    const lease = registry.acquire({ source: sealed, settings: SETTINGS, modelKey: KEY });
    await assert.rejects(lease.ready, /not a RAM-backed filesystem/);
    assert.deepEqual(await readdir(dir), before);
  });

  it('as name@version: the manifest records the plaintext sha256; the runtime child and an update load it', async () => {
    const models = await mkdtemp(path.join(tmpdir(), 'edge-llm-enc-models-'));
    try {
      const env = { EDGE_LLM_MODEL_KEY: KEY };
      const lines: string[] = [];
      const code = await encryptCli(
        [stories, '--install', 'secret@1.0.0', '--models-dir', models],
        env,
        (l) => lines.push(l),
      );
      assert.equal(code, 0, lines.join('\n'));
      const manifest = await readManifest(models, { name: 'secret', version: '1.0.0' });
      assert.equal(manifest.sha256, await hashFile(stories));
      assert.equal(manifest.file, 'stories260K.gguf.enc');
      assert.ok(await readEncryptedHeader(path.join(models, 'secret', '1.0.0', manifest.file)));
      assert.deepEqual(
        (await readdir(models)).filter((f) => f.startsWith('.')),
        [],
        'the CLI left its work folder behind',
      );
      assert.equal(await encryptCli([stories], {}, (l) => lines.push(l)), 2);
      assert.match(lines.at(-1)!, /EDGE_LLM_MODEL_KEY holds no key/);

      await installModelFile(models, { name: 'plain', version: '1.0.0' }, stories);
      registry = new RuntimeProcess({ modelsDir: models, ramDir: ram });
      lifecycle = new ModelLifecycle({
        registry,
        source: 'plain@1.0.0',
        settings: SETTINGS,
        modelKey: KEY,
        modelsDir: models,
      });
      await lifecycle.ready;
      const result = await lifecycle.update({ model: 'secret@1.0.0' });
      assert.equal(result.ok, true, result.reason);
      assert.equal(result.sha256, manifest.sha256);
      assert.deepEqual(await readdir(ram), []);

      // A manifest that names other content is refused before any decryption.
      await installModelFile(models, { name: 'other', version: '1.0.0' }, await testModel('tinyRandom'));
      const other = await readManifest(models, { name: 'other', version: '1.0.0' });
      await writeFile(
        path.join(models, 'other', '1.0.0', 'manifest.json'),
        JSON.stringify({ ...other, file: 'x.enc', size: manifest.size }),
      );
      await writeFile(
        path.join(models, 'other', '1.0.0', 'x.enc'),
        await readFile(path.join(models, 'secret', '1.0.0', manifest.file)),
      );
      const refused = await lifecycle.update({ model: 'other@1.0.0' });
      assert.equal(refused.ok, false);
      assert.match(
        refused.reason!,
        /is encrypted from a file of \d+ bytes with sha256 [0-9a-f]{64}, the manifest expects/,
      );
    } finally {
      await rm(models, { recursive: true, force: true });
    }
  });
});
