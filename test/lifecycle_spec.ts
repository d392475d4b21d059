import * as assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  ModelLifecycle,
  RuntimeProcess,
  RuntimeRegistry,
  downloadModel,
  hashFile,
  healthCheck,
  installModelFile,
  parseModelRef,
  parseUpdateRequest,
  readManifest,
  signManifest,
  writeManifest,
  type LlmError,
  type LlmRuntime,
  type ModelLifecycleOptions,
  type Registry,
} from '../lib/runtime';
import { gapMonitor } from './support/gap-monitor';
import { until } from './support/flow';
import { testModel } from './support/models';

const SETTINGS = { threads: 1, sequences: 1, contextSize: 512 };

function keyPair(): { publicPem: string; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return {
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** A local HTTP server for one file, with Range support; it can drop the first answer midway. */
async function fileServer(file: string, dropAfter?: number) {
  const size = (await stat(file)).size;
  const requests: Array<{ range: string | undefined }> = [];
  let dropped = 0;
  const server: Server = createServer((req: IncomingMessage, res) => {
    requests.push({ range: req.headers.range });
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'content-length': size - start,
      'accept-ranges': 'bytes',
    };
    if (m) headers['content-range'] = `bytes ${start}-${size - 1}/${size}`;
    res.writeHead(m ? 206 : 200, headers);
    if (dropAfter !== undefined && dropped === 0) {
      // The first answer stops after dropAfter bytes and the socket is destroyed: a lost link.
      dropped++;
      const stream = createReadStream(file, { start, end: start + dropAfter - 1 });
      stream.on('data', (chunk) => res.write(chunk));
      stream.on('end', () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    createReadStream(file, { start }).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${path.basename(file)}`;
  return { url, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('model lifecycle: versions, verification, update, rollback, download (real models)', function () {
  this.timeout(120_000);
  let stories: string;
  let tiny: string;
  let dir: string;
  let registry: Registry | undefined;
  let lifecycle: ModelLifecycle | undefined;
  const logs: string[] = [];

  const start = (options: Partial<ModelLifecycleOptions> & { source: string }) => {
    registry ??= new RuntimeRegistry({ modelsDir: dir, gpu: false });
    lifecycle = new ModelLifecycle({
      registry,
      modelsDir: dir,
      settings: SETTINGS,
      onLog: (level, message) => logs.push(`${level}: ${message}`),
      ...options,
    });
    return lifecycle;
  };

  before(async () => {
    stories = await testModel('stories');
    tiny = await testModel('tinyRandom');
  });
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-models-'));
    await installModelFile(dir, { name: 'inspector', version: '1.0.0' }, stories);
    await installModelFile(dir, { name: 'inspector', version: '1.1.0' }, tiny);
  });
  afterEach(async () => {
    await lifecycle?.release();
    await registry?.close();
    lifecycle = undefined;
    registry = undefined;
    logs.length = 0;
    await rm(dir, { recursive: true, force: true });
  });

  it('reads name@version references and leaves paths, URIs and file names alone', () => {
    assert.deepEqual(parseModelRef('inspector@1.3.0'), { name: 'inspector', version: '1.3.0' });
    assert.equal(parseModelRef('/models/inspector.gguf'), undefined);
    assert.equal(parseModelRef('hf:user/repo/file.gguf'), undefined);
    assert.equal(parseModelRef('model@2.gguf'), undefined);
    assert.equal(parseModelRef('../x@1'), undefined);
  });

  it('loads a version whose file matches its manifest, and says which version and hash it runs', async () => {
    const manifest = await readManifest(dir, { name: 'inspector', version: '1.0.0' });
    const lc = start({ source: 'inspector@1.0.0' });
    const runtime = await lc.ready;
    assert.equal(runtime.modelSha256, manifest.sha256);
    assert.equal(manifest.sha256, '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d');
    assert.ok((await runtime.complete('Once upon a time', { maxTokens: 4 })).tokensOut > 0);
    const health = await lc.health();
    assert.equal(health.loaded, true);
    assert.equal(health.model, 'inspector@1.0.0');
    assert.equal(health.sha256, manifest.sha256);
    assert.equal(health.probe?.ok, true, JSON.stringify(health.probe));
    assert.ok((health.probe?.tokens ?? 0) > 0);
    const again = await lc.health();
    assert.equal(again.probe?.at, health.probe?.at, 'a second call within 10 s reuses the probe');
  });

  it('refuses a file whose sha256 differs from its manifest, naming the file and both hashes', async () => {
    const manifest = await installModelFile(dir, { name: 'inspector', version: '2.0.0' }, stories);
    const file = path.join(dir, 'inspector', '2.0.0', manifest.file);
    // The same size, one byte changed near the end (in tensor data): only the hash can tell.
    const handle = await open(file, 'r+');
    const at = manifest.size - 100;
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, at);
    await handle.write(Buffer.from([byte[0] ^ 0xff]), 0, 1, at);
    await handle.close();
    const actual = await hashFile(file);
    const lc = start({ source: 'inspector@2.0.0' });
    await assert.rejects(lc.ready, (e: LlmError) => {
      assert.equal(e.code, 'model_load');
      assert.ok(e.message.includes(file), e.message);
      assert.ok(e.message.includes(manifest.sha256) && e.message.includes(actual), e.message);
      return true;
    });
    assert.equal(lc.status.state, 'error');
    assert.equal((await lc.health()).loaded, false);
  });

  it('with a signing key: loads what it signed, refuses a bad signature, an unsigned manifest and a plain path', async () => {
    const good = keyPair();
    const other = keyPair();
    await installModelFile(dir, { name: 'signed', version: '1.0.0' }, stories, {
      privateKeyPem: good.privatePem,
    });
    await installModelFile(dir, { name: 'forged', version: '1.0.0' }, stories, {
      privateKeyPem: other.privatePem,
    });

    const ok = start({ source: 'signed@1.0.0', publicKey: good.publicPem });
    assert.ok((await (await ok.ready).complete('Once', { maxTokens: 2 })).tokensOut > 0);
    await ok.release();

    const forged = start({ source: 'forged@1.0.0', publicKey: good.publicPem });
    await assert.rejects(forged.ready, /forged@1\.0\.0.*bad signature/);
    await forged.release();

    const unsigned = start({ source: 'inspector@1.0.0', publicKey: good.publicPem });
    await assert.rejects(unsigned.ready, /not signed/);
    await unsigned.release();

    // A signed manifest changed afterwards (another source) no longer verifies.
    const manifest = await readManifest(dir, { name: 'signed', version: '1.0.0' });
    await writeManifest(dir, { ...manifest, source: 'https://elsewhere.example/x.gguf' });
    const tampered = start({ source: 'signed@1.0.0', publicKey: good.publicPem });
    await assert.rejects(tampered.ready, /bad signature/);
    await tampered.release();

    const plain = start({ source: stories, publicKey: good.publicPem });
    await assert.rejects(plain.ready, /only signed versions .* name@version/);
  });

  it('updates to a new version after its health check, then rolls back one step', async () => {
    const lc = start({ source: 'inspector@1.0.0' });
    const before = await lc.ready;
    const sha100 = before.modelSha256;
    const rollbackFirst = await lc.rollback();
    assert.equal(rollbackFirst.ok, false);
    assert.match(rollbackFirst.reason ?? '', /no previous version/);

    const update = await lc.update({ model: 'inspector@1.1.0' });
    assert.equal(update.ok, true, update.reason);
    assert.equal(update.check?.ok, true);
    assert.ok((update.check?.answer?.tokens ?? 0) > 0);
    assert.equal(typeof (update.check?.json?.value as { ok: unknown }).ok, 'boolean');
    assert.deepEqual([lc.info().model, lc.info().previous], ['inspector@1.1.0', 'inspector@1.0.0']);
    const after = lc.runtime!;
    assert.notEqual(after.modelSha256, sha100);
    assert.ok((await after.complete('Hello', { maxTokens: 3 })).tokensOut > 0);
    // What still holds the old view is served (by the new version once the old one is unloaded).
    assert.ok((await before.complete('Hello', { maxTokens: 3 })).tokensOut > 0);

    const back = await lc.rollback();
    assert.equal(back.ok, true, back.reason);
    assert.deepEqual([back.from, back.to], ['inspector@1.1.0', 'inspector@1.0.0']);
    assert.equal(lc.runtime!.modelSha256, sha100);
    assert.equal(lc.info().previous, 'inspector@1.1.0', 'one step: rolling back again returns to 1.1.0');
    const same = await lc.update({ model: 'inspector@1.0.0' });
    assert.equal(same.unchanged, true);
  });

  it('after an update keeps the newest N versions: never the active one, the rollback target or a file in use', async () => {
    // Installed one after another: 1.0.0 oldest, 1.4.0 newest (by manifest time).
    for (const version of ['1.2.0', '1.3.0', '1.4.0'])
      await installModelFile(dir, { name: 'inspector', version }, stories);
    await mkdir(path.join(dir, 'inspector', 'scratch'));
    const t0 = Date.now() / 1000 - 100;
    for (const [i, version] of ['1.0.0', '1.1.0', '1.2.0', '1.3.0', '1.4.0'].entries())
      await utimes(path.join(dir, 'inspector', version, 'manifest.json'), t0 + i, t0 + i);
    registry = new RuntimeRegistry({ modelsDir: dir, gpu: false });
    // Another runtime of this Node-RED has 1.0.0 loaded: its file is in use.
    const other = registry.acquire({ source: 'inspector@1.0.0', settings: SETTINGS });
    await other.ready;
    const lc = start({ source: 'inspector@1.1.0', keepVersions: 2 });
    await lc.ready;
    const update = await lc.update({ model: 'inspector@1.4.0' });
    assert.equal(update.ok, true, update.reason);
    // Kept: 1.4.0 and 1.3.0 (the newest two), 1.1.0 (the rollback target), 1.0.0 (in use).
    assert.deepEqual(update.removed, ['inspector@1.2.0']);
    const left = (await readdir(path.join(dir, 'inspector'))).sort();
    assert.deepEqual(left, ['1.0.0', '1.1.0', '1.3.0', '1.4.0', 'scratch']);
    assert.ok(
      logs.some((l) => /Removed old versions of inspector .*\(keeping 2\): inspector@1\.2\.0\./.test(l)),
      logs.join('\n'),
    );
    assert.ok((await (await other.ready).complete('Once', { maxTokens: 2 })).tokensOut > 0);
    const back = await lc.rollback();
    assert.equal(back.ok, true, back.reason);
    assert.equal(back.removed, undefined, 'a rollback removes nothing');
    await other.release();

    // The runtime of 1.0.0 is gone: the next update may remove it; keepVersions 0 removes nothing.
    const again = await lc.update({ model: 'inspector@1.3.0' });
    assert.deepEqual(again.removed, ['inspector@1.0.0']);
    await lc.release();
    const none = start({ source: 'inspector@1.3.0', keepVersions: 0 });
    await none.ready;
    const kept = await none.update({ model: 'inspector@1.1.0' });
    assert.equal(kept.ok, true, kept.reason);
    assert.equal(kept.removed, undefined);
    assert.deepEqual((await readdir(path.join(dir, 'inspector'))).sort(), [
      '1.1.0',
      '1.3.0',
      '1.4.0',
      'scratch',
    ]);
  });

  it('a failed update keeps the old version serving and says why: unloadable file, bad hash, missing version', async () => {
    // A version whose manifest matches its file, but the file is cut short: it cannot load.
    const manifest = await installModelFile(dir, { name: 'inspector', version: '1.2.0' }, stories);
    const file = path.join(dir, 'inspector', '1.2.0', manifest.file);
    await truncate(file, 600_000);
    await writeManifest(dir, { ...manifest, size: 600_000, sha256: await hashFile(file) });

    const lc = start({ source: 'inspector@1.0.0' });
    const sha = (await lc.ready).modelSha256;
    const states: string[] = [];
    lc.on('lifecycle', (info: { update?: { phase: string } }) => states.push(info.update?.phase ?? ''));

    const broken = await lc.update({ model: 'inspector@1.2.0' });
    assert.equal(broken.ok, false);
    assert.match(broken.reason ?? '', /truncated/);
    assert.equal(lc.info().model, 'inspector@1.0.0');
    assert.equal(lc.info().update?.phase, 'failed');
    assert.equal(lc.info().update?.reason, broken.reason);
    assert.ok(states.includes('loading') && states.at(-1) === 'failed', states.join());
    assert.equal(lc.runtime!.modelSha256, sha);
    assert.ok((await lc.runtime!.complete('Once', { maxTokens: 3 })).tokensOut > 0);

    const bad = await installModelFile(dir, { name: 'inspector', version: '1.3.0' }, tiny);
    await writeManifest(dir, { ...bad, sha256: '0'.repeat(64) });
    const mismatch = await lc.update({ model: 'inspector@1.3.0' });
    assert.equal(mismatch.ok, false);
    assert.match(mismatch.reason ?? '', /has sha256 81f226c6\w+, the manifest expects 0{64}/);
    assert.equal(lc.runtime!.modelSha256, sha);

    const missing = await lc.update({ model: 'inspector@9.9.9' });
    assert.equal(missing.ok, false);
    assert.match(missing.reason ?? '', /inspector@9\.9\.9 not found/);
    assert.ok(
      logs.some((l) => /^warn: Model update to inspector@1\.2\.0 failed, inspector@1\.0\.0 kept/.test(l)),
    );
    assert.equal(lc.status.state, 'ready');
  });

  it('the health check fails on a model that cannot finish the JSON object in its token budget', async () => {
    const lc = start({ source: 'inspector@1.0.0' });
    const runtime = await lc.ready;
    const good = await healthCheck(runtime);
    assert.equal(good.ok, true, good.error);
    // A schema that needs more tokens than allowed: the grammar keeps it JSON, the budget cuts it.
    const bad = await healthCheck(runtime, {
      maxTokens: 1,
      schema: {
        type: 'object',
        properties: {
          words: {
            type: 'array',
            minItems: 8,
            maxItems: 8,
            items: { type: 'string', minLength: 8, maxLength: 8 },
          },
        },
        required: ['words'],
        additionalProperties: false,
      },
    });
    assert.equal(bad.ok, false);
    assert.match(bad.error ?? '', /^truncated/);
  });

  it('remembers the version an update switched to across a restart, unless the flow names another model', async () => {
    const stateFile = path.join(dir, 'state', 'rt.json');
    const lc = start({ source: 'inspector@1.0.0', stateFile });
    await lc.ready;
    assert.equal((await lc.update({ model: 'inspector@1.1.0' })).ok, true);
    await lc.release();
    const restarted = start({ source: 'inspector@1.0.0', stateFile });
    await restarted.ready;
    assert.deepEqual(
      [restarted.info().model, restarted.info().previous],
      ['inspector@1.1.0', 'inspector@1.0.0'],
    );
    await restarted.release();
    const reconfigured = start({ source: stories, stateFile });
    assert.equal(reconfigured.info().model, stories);
  });

  it('downloads a version over HTTP, resuming with a Range request after the connection drops midway', async () => {
    const size = (await stat(tiny)).size;
    const server = await fileServer(tiny, Math.floor(size / 2));
    try {
      const progress: number[] = [];
      const result = await downloadModel({
        modelsDir: dir,
        ref: { name: 'fetched', version: '1.0.0' },
        source: server.url,
        sha256: '81f226c62d28ed4a1a9b9fa080fcd9f0cc40e0f9d5680036583ff98fbcd035cb',
        retryMs: 50,
        onProgress: (p) => progress.push(p.received),
      });
      assert.equal(result.resumes, 1);
      assert.equal(result.bytes, size);
      assert.equal(server.requests[0].range, undefined);
      assert.match(server.requests[1].range ?? '', /^bytes=\d+-$/);
      const resumedAt = Number(/\d+/.exec(server.requests[1].range!)![0]);
      assert.ok(resumedAt >= Math.floor(size / 2) - 65_536 && resumedAt > 0, `resumed at ${resumedAt}`);
      assert.ok(progress.at(-1) === size && progress.some((n) => n < size));
      const manifest = await readManifest(dir, { name: 'fetched', version: '1.0.0' });
      assert.equal(manifest.sha256, result.manifest.sha256);
      assert.equal(manifest.source, server.url);
      assert.deepEqual(await readFile(result.file), await readFile(tiny));
    } finally {
      await server.close();
    }
  });

  it('resumes a part file left by an interrupted earlier download, and deletes a download with the wrong hash', async () => {
    const size = (await stat(stories)).size;
    const partDir = path.join(dir, 'later', '1.0.0');
    await mkdir(partDir, { recursive: true });
    const head = (await readFile(stories)).subarray(0, 400_000);
    await writeFile(path.join(partDir, `.${path.basename(stories)}.part`), head);
    const server = await fileServer(stories);
    try {
      const result = await downloadModel({
        modelsDir: dir,
        ref: { name: 'later', version: '1.0.0' },
        source: server.url,
      });
      assert.equal(result.resumedFrom, 400_000);
      assert.equal(server.requests[0].range, 'bytes=400000-');
      assert.equal(result.bytes, size);
      assert.equal(
        result.manifest.sha256,
        '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d',
      );

      await assert.rejects(
        downloadModel({
          modelsDir: dir,
          ref: { name: 'wrong', version: '1.0.0' },
          source: server.url,
          sha256: '0'.repeat(64),
        }),
        /not the expected file \(sha256 270cba.*expected 0{64}\); it was deleted/,
      );
      await assert.rejects(readManifest(dir, { name: 'wrong', version: '1.0.0' }), /not found/);
    } finally {
      await server.close();
    }
  });

  it('updates from a URL: downloads, verifies, checks, switches', async () => {
    const server = await fileServer(tiny);
    try {
      const lc = start({ source: 'inspector@1.0.0' });
      await lc.ready;
      const request = parseUpdateRequest({
        name: 'inspector',
        version: '1.5.0',
        source: server.url,
        sha256: '81f226c62d28ed4a1a9b9fa080fcd9f0cc40e0f9d5680036583ff98fbcd035cb',
      });
      const result = await lc.update(request);
      assert.equal(result.ok, true, result.reason);
      assert.equal(result.download?.bytes, 1_750_560);
      assert.equal(lc.info().model, 'inspector@1.5.0');
      assert.equal(
        lc.runtime!.modelSha256,
        '81f226c62d28ed4a1a9b9fa080fcd9f0cc40e0f9d5680036583ff98fbcd035cb',
      );
    } finally {
      await server.close();
    }
  });

  it('updates over the air from a signed manifest: downloads its source, keeps the signature, verifies it at load', async () => {
    const keys = keyPair();
    await installModelFile(dir, { name: 'inspector', version: '1.0.0' }, stories, {
      privateKeyPem: keys.privatePem,
    });
    const server = await fileServer(tiny);
    try {
      const lc = start({ source: 'inspector@1.0.0', publicKey: keys.publicPem });
      await lc.ready;
      const manifest = signManifest(
        {
          name: 'inspector',
          version: '2.0.0',
          file: 'inspector.gguf',
          sha256: '81f226c62d28ed4a1a9b9fa080fcd9f0cc40e0f9d5680036583ff98fbcd035cb',
          size: 1_750_560,
          source: server.url,
        },
        keys.privatePem,
      );
      const ok = await lc.update(parseUpdateRequest({ manifest }));
      assert.equal(ok.ok, true, ok.reason);
      assert.equal(lc.info().model, 'inspector@2.0.0');
      assert.deepEqual(await readManifest(dir, { name: 'inspector', version: '2.0.0' }), manifest);
      // A manifest signed by someone else is refused before anything is downloaded.
      const forged = signManifest({ ...manifest, version: '2.0.1' }, keyPair().privatePem);
      const served = server.requests.length;
      const refused = await lc.update({ manifest: forged });
      assert.equal(refused.ok, false);
      assert.match(refused.reason ?? '', /inspector@2\.0\.1 .*bad signature/);
      assert.equal(server.requests.length, served, 'nothing downloaded');
      assert.equal(lc.info().model, 'inspector@2.0.0');
    } finally {
      await server.close();
    }
  });

  it('refuses malformed update requests with a clear reason', () => {
    assert.throws(() => parseUpdateRequest('inspector@1.0.0'), /needs an object/);
    assert.throws(() => parseUpdateRequest({}), /needs "model"/);
    assert.throws(() => parseUpdateRequest({ source: 'https://x/y.gguf', name: 'a' }), /needs "version"/);
    assert.throws(
      () => parseUpdateRequest({ source: 'https://x/y.gguf', name: 'a', version: '1', sha256: 'abc' }),
      /64 lowercase hex/,
    );
    assert.throws(
      () => parseUpdateRequest({ source: 'https://x/y.gguf', name: '../a', version: '1' }),
      /name/,
    );
    assert.deepEqual(parseUpdateRequest({ model: ' inspector@1.0.0 ' }), { model: 'inspector@1.0.0' });
  });

  it('hashes a 64 MB file without holding the event loop 50 ms', async () => {
    const big = path.join(dir, 'big.bin');
    await writeFile(big, Buffer.alloc(64 << 20, 7));
    const monitor = gapMonitor();
    await hashFile(big);
    assert.ok(monitor.stop() < 50);
  });
});

describe('model update under load in the runtime child process (real models)', function () {
  this.timeout(180_000);
  let dir: string;
  let rp: RuntimeProcess | undefined;
  let lifecycle: ModelLifecycle | undefined;

  afterEach(async () => {
    await lifecycle?.release();
    await rp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('every request gets exactly one answer while the model is updated and rolled back', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-models-'));
    const keys = keyPair();
    await installModelFile(dir, { name: 'inspector', version: '1.0.0' }, await testModel('stories'), {
      privateKeyPem: keys.privatePem,
    });
    await installModelFile(dir, { name: 'inspector', version: '1.1.0' }, await testModel('tinyRandom'), {
      privateKeyPem: keys.privatePem,
    });
    rp = new RuntimeProcess({ modelsDir: dir, gpu: false });
    lifecycle = new ModelLifecycle({
      registry: rp,
      source: 'inspector@1.0.0',
      modelsDir: dir,
      publicKey: keys.publicPem,
      settings: { threads: 1, sequences: 2, contextSize: 512, queueLimit: 500 },
    });
    const lc = lifecycle;
    const first = await lc.ready;
    const answers = new Map<number, number>();
    const failures: string[] = [];
    const bySha = new Map<string, number>();
    let sent = 0;
    let stop = false;
    const ask = async (n: number): Promise<void> => {
      // As a node does: the runtime the lease has now, for the whole of this request.
      const runtime: LlmRuntime = lc.runtime ?? (await lc.ready);
      const sha = runtime.modelSha256;
      try {
        const r = await runtime.complete(`Once upon a time ${n}`, { maxTokens: 6, timeoutMs: 60_000 });
        assert.ok(r.tokensOut > 0);
        answers.set(n, (answers.get(n) ?? 0) + 1);
        bySha.set(sha, (bySha.get(sha) ?? 0) + 1);
      } catch (err) {
        failures.push(`${n}: ${(err as Error).message}`);
      }
    };
    // Eight clients, each asking again as soon as it has its answer: the queue never empties.
    const clients = Array.from({ length: 8 }, async () => {
      while (!stop) await ask(sent++);
    });
    await until(() => sent >= 20, 30_000, 'requests under way');
    const update = await lc.update({ model: 'inspector@1.1.0' });
    assert.equal(update.ok, true, update.reason);
    await until(() => bySha.size >= 2 || failures.length > 0, 60_000, 'answers from the new version');
    const rollback = await lc.rollback();
    assert.equal(rollback.ok, true, rollback.reason);
    const afterRollback = sent;
    await until(() => sent >= afterRollback + 20, 30_000, 'requests after the rollback');
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.equal(answers.size, sent, `${answers.size} of ${sent} requests answered`);
    assert.ok(
      [...answers.values()].every((n) => n === 1),
      'each answered once',
    );
    assert.equal(bySha.size, 2, 'both versions answered');
    assert.equal(lc.runtime!.modelSha256, first.modelSha256);
    assert.ok((update.drained ?? 0) > 0, 'the old version held requests at the switch');
    assert.equal(lc.counts.retried, 0, 'none was closed under it: they finished on the old version');
    console.log(
      `      (${sent} requests; update switched after ${update.ms} ms with ${update.drained} on the old version, rollback after ${rollback.ms} ms)`,
    );
  });
});
