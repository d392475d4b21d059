import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as sinon from 'sinon';
import { RuntimeRegistry, type ChatMessage, type ModelRuntime } from '../lib/runtime';
import {
  MISSION_STATES,
  SessionError,
  SessionStore,
  TRANSITIONS,
  checkTransition,
  idOf,
  messagesFor,
  type SessionStoreOptions,
} from '../lib/session';
import { testModel, testModelsDir } from './support/models';

const words = (text: string) => text.split(/\s+/).filter(Boolean).length;
const sessionFiles = (dir: string) => fs.readdirSync(path.join(dir, 'sessions'));

describe('session store (lib)', function () {
  this.timeout(60_000);
  const sandbox = sinon.createSandbox();
  let dir: string;
  const stores: SessionStore[] = [];
  const open = (options: Partial<SessionStoreOptions> = {}) => {
    const store = SessionStore.open({ dir, ...options });
    stores.push(store);
    return store;
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(tmpdir(), 'edge-llm-sessions-'));
  });
  afterEach(async () => {
    sandbox.restore();
    await Promise.all(stores.splice(0).map((s) => s.close().catch(() => undefined)));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('mission state machine', function () {
    it('walks a mission through every state of the seed', function () {
      const store = open();
      const path1 = ['ReceiveCmd', 'Parse', 'Execute', 'Monitor', 'Adjust', 'Execute', 'Monitor', 'Complete'];
      for (const to of path1) store.transition('m1', to as never);
      assert.equal(store.get('m1').mission.state, 'Complete');
      store.transition('m1', 'Idle');
      for (const end of ['Failed', 'Aborted'] as const) {
        store.transition('m1', 'ReceiveCmd');
        store.transition('m1', end);
        store.transition('m1', 'Idle');
      }
      assert.equal(store.get('m1').mission.state, 'Idle');
    });

    it('rejects every transition the machine does not have, with a clear error, and changes nothing', function () {
      const store = open();
      store.transition('m', 'ReceiveCmd', { spec: { goal: 'x' } });
      assert.throws(
        () => store.transition('m', 'Monitor'),
        (e: SessionError) =>
          e.code === 'invalid_transition' &&
          e.message ===
            'A mission cannot go from ReceiveCmd to Monitor (session "m"); from ReceiveCmd it can go to Parse or Failed or Aborted.',
      );
      assert.equal(store.get('m').mission.state, 'ReceiveCmd');
      assert.deepEqual(store.get('m').mission.spec, { goal: 'x' });
      assert.throws(
        () => store.transition('m', 'Running' as never),
        (e: SessionError) => e.code === 'unknown_state' && /not a mission state/.test(e.message),
      );
      assert.throws(() => store.transition('fresh', 'Execute'), /from Idle to Execute/);
      assert.equal(store.has('fresh'), false, 'a refused transition creates no session');
      let allowed = 0;
      for (const from of MISSION_STATES) {
        for (const to of MISSION_STATES) {
          const ok = TRANSITIONS[from].includes(to);
          if (ok) allowed++;
          assert.equal(
            (() => {
              try {
                checkTransition(from, to);
                return true;
              } catch {
                return false;
              }
            })(),
            ok,
            `${from} → ${to}`,
          );
        }
      }
      assert.equal(allowed, 21);
    });

    it('keeps mission data across states and forgets it back in Idle', function () {
      const store = open();
      store.transition('m', 'ReceiveCmd', { spec: { goal: 'inspect pump 4' } });
      store.transition('m', 'Parse');
      store.transition('m', 'Execute', { plan: { steps: [1, 2] }, step: 0 });
      store.transition('m', 'Monitor', { feedback: { ok: true } });
      const m = store.get('m').mission;
      assert.deepEqual(
        { spec: m.spec, plan: m.plan, step: m.step, feedback: m.feedback },
        { spec: { goal: 'inspect pump 4' }, plan: { steps: [1, 2] }, step: 0, feedback: { ok: true } },
      );
      store.transition('m', 'Complete');
      store.transition('m', 'Idle');
      assert.deepEqual(Object.keys(store.get('m').mission).sort(), ['since', 'state']);
    });

    it('advances along the allowed states of a path and leaves a mission elsewhere where it is', function () {
      const store = open();
      assert.equal(store.advance('m', ['ReceiveCmd', 'Parse'], { spec: 1 }).mission.state, 'Parse');
      assert.equal(store.get('m').mission.spec, 1);
      assert.equal(
        store.advance('m', ['Monitor'], { feedback: 'x' }).mission.state,
        'Parse',
        'Parse → Monitor is no edge',
      );
      assert.equal(store.get('m').mission.feedback, 'x');
      assert.equal(store.advance('m', ['Execute']).mission.state, 'Execute');
    });
  });

  describe('conversation window', function () {
    const conversation: ChatMessage[] = [];
    for (let i = 0; i < 10; i++) {
      conversation.push({ role: 'user', content: `question ${i} ` + 'word '.repeat(10) });
      conversation.push({ role: 'assistant', content: `answer ${i} ` + 'word '.repeat(10) });
    }

    it('keeps the instruction and the newest whole turns within the budget', function () {
      // words() is this test's tokenizer: 12 words + 4 overhead = 16 per message, 32 per turn.
      const sent = messagesFor({ conversation }, 'You are a planner.', 'what now?', 150, words);
      assert.equal(sent[0].role, 'system');
      assert.equal(sent[0].content, 'You are a planner.');
      assert.deepEqual(sent.at(-1), { role: 'user', content: 'what now?' });
      // Fixed: system (4 words + 4) + new (2 + 4) = 14; 136 left = 4 whole turns of 32.
      assert.deepEqual(
        sent.slice(1, -1).map((m) => m.content.split(' ').slice(0, 2).join(' ')),
        [
          'question 6',
          'answer 6',
          'question 7',
          'answer 7',
          'question 8',
          'answer 8',
          'question 9',
          'answer 9',
        ],
      );
      const total = sent.reduce((n, m) => n + words(m.content) + 4, 0);
      assert.ok(total <= 150, `${total} tokens`);
      assert.equal(messagesFor({ conversation }, 'x', 'y', 10_000, words).length, 22);
    });

    it('sends the instruction and the new text even when nothing else fits', function () {
      const sent = messagesFor({ conversation }, 'system', 'new', 5, words);
      assert.deepEqual(
        sent.map((m) => m.role),
        ['system', 'user'],
      );
      assert.equal(messagesFor({ conversation: [] }, undefined, 'hi', 100).length, 1);
    });

    it('bounds the stored conversation to maxTokens, dropping the oldest turns', async function () {
      const store = open({ maxTokens: 100, countTokens: words });
      for (let i = 0; i < 10; i++)
        await store.appendTurn('c', `q${i} ` + 'w '.repeat(10), `a${i} ` + 'w '.repeat(10));
      const kept = store.get('c').conversation;
      // 15 tokens a message, 30 a turn: 3 turns fit in 100.
      assert.deepEqual(
        kept.map((m) => m.content.split(' ')[0]),
        ['q7', 'a7', 'q8', 'a8', 'q9', 'a9'],
      );
      assert.equal(store.list()[0].tokens, 90);
    });
  });

  describe('bounded memory', function () {
    it('evicts the least recently used session beyond maxSessions, on disk too', async function () {
      const store = open({ maxSessions: 3 });
      for (const key of ['a', 'b', 'c']) store.transition(key, 'ReceiveCmd');
      store.get('a'); // a is now more recent than b
      store.transition('d', 'ReceiveCmd');
      assert.deepEqual(store.keys().sort(), ['a', 'c', 'd']);
      await store.flush();
      assert.deepEqual(sessionFiles(dir).sort(), ['a', 'c', 'd'].map((k) => `${idOf(k)}.json`).sort());
      assert.equal(store.get('b').mission.state, 'Idle', 'b starts again from nothing');
    });

    it('expires sessions idle for longer than idleMs (fake clock)', async function () {
      const clock = sandbox.useFakeTimers({
        now: 1_000_000,
        toFake: ['Date', 'setInterval', 'clearInterval'],
      });
      const store = open({ idleMs: 60_000, sweepMs: 10_000 });
      store.transition('old', 'ReceiveCmd');
      clock.tick(30_000);
      store.transition('new', 'ReceiveCmd');
      clock.tick(30_000);
      assert.equal(store.size, 2, 'old is idle exactly 60 s: not yet expired');
      clock.tick(10_000); // the sweep at 70 s finds old idle for 70 s
      assert.deepEqual(store.keys(), ['new']);
      await store.flush();
      assert.deepEqual(sessionFiles(dir), [`${idOf('new')}.json`]);
      clock.tick(25_000); // new idle 65 s, the next sweep not yet run: a read still expires it
      assert.equal(store.has('new'), false);
    });

    it('keeps KV snapshots within the byte budget, dropping the least recently used', async function () {
      const sha = 'a'.repeat(64);
      const store = open({ snapshotBytes: 2500 });
      const turn = async (key: string) => {
        const snap = store.snapshotFor(store.get(key), sha)!;
        fs.writeFileSync(snap.save, Buffer.alloc(1000));
        await store.appendTurn(key, 'u', 'a', { snapshotFile: snap.save, modelSha256: sha });
        return snap.save;
      };
      const first = await turn('s1');
      const second = await turn('s1');
      assert.equal(fs.existsSync(first), false, "a session's older snapshot is removed with its next one");
      await turn('s2');
      await turn('s3');
      assert.equal(store.totalSnapshotBytes, 2000);
      assert.equal(store.get('s1').snapshot, undefined, 's1 was least recently used');
      assert.equal(fs.existsSync(second), false);
      assert.equal(fs.readdirSync(path.join(dir, 'kv')).length, 2);
      assert.equal(store.snapshotFor(store.get('s2'), sha)?.load?.endsWith('.kv'), true);
    });
  });

  describe('persistence', function () {
    it('survives a restart: sessions, states, conversations and order', async function () {
      const a = open({ maxSessions: 2 });
      a.transition('x', 'ReceiveCmd', { spec: { goal: 'g' } });
      await a.appendTurn('x', 'hello', 'hi there');
      a.transition('y', 'ReceiveCmd');
      a.get('x');
      await a.close();
      const b = open({ maxSessions: 2 });
      assert.deepEqual(b.keys(), ['y', 'x'], 'least recently used first');
      const x = b.get('x');
      assert.equal(x.mission.state, 'ReceiveCmd');
      assert.deepEqual(x.mission.spec, { goal: 'g' });
      assert.deepEqual(x.conversation, [
        { role: 'user', content: 'hello' },
        { role: 'assistant', content: 'hi there' },
      ]);
      b.transition('z', 'ReceiveCmd');
      assert.deepEqual(b.keys().sort(), ['x', 'z'], 'eviction order survived the restart');
      assert.deepEqual(b.problems, []);
    });

    it('leaves a consistent earlier or later version when the writer is killed mid-write', async function () {
      this.timeout(120_000);
      const lib = path.join(__dirname, '..', 'lib', 'session');
      // Each version carries 1 MB so that a kill often lands inside a write.
      const writer = `
        const { SessionStore } = require(${JSON.stringify(lib)});
        const store = SessionStore.open({ dir: ${JSON.stringify(dir)}, maxTokens: 1e9 });
        (async () => {
          let n = store.get('torn').conversation.length / 2;
          for (;;) {
            store.update('torn', { data: { n: n + 1, blob: String(n + 1).repeat(1e6 / String(n + 1).length) } });
            await store.appendTurn('torn', 'u' + n, 'a' + n);
            n++;
            process.stdout.write(n + '\\n');
          }
        })();`;
      let killsInsideWrite = 0;
      for (let round = 0; round < 6; round++) {
        const child = spawn(process.execPath, ['-e', writer], { stdio: ['ignore', 'pipe', 'inherit'] });
        let last = -1;
        let startAt = -1;
        child.stdout.on('data', (c: Buffer) => {
          last = Number(c.toString().trim().split('\n').at(-1));
          if (startAt < 0) startAt = last;
        });
        while (last < 0 || last - startAt < 3) await new Promise((r) => setTimeout(r, 5));
        await new Promise((r) => setTimeout(r, Math.random() * 30));
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
        if (sessionFiles(dir).some((n) => n.includes('.tmp-'))) killsInsideWrite++;

        const store = open({ maxTokens: 1e9 });
        assert.deepEqual(store.problems, [], `round ${round}`);
        const record = store.get('torn');
        const n = record.conversation.length / 2;
        assert.ok(
          n >= last && n <= last + 1,
          `round ${round}: ${n} turns on disk, the writer had reported ${last}`,
        );
        record.conversation.forEach((m, i) =>
          assert.equal(m.content, `${i % 2 ? 'a' : 'u'}${Math.floor(i / 2)}`, `round ${round}: message ${i}`),
        );
        const data = record.mission.data as { n: number; blob: string };
        assert.equal(data.n, n, 'the mission data and the conversation are of the same version');
        assert.equal(data.blob.length, 1e6 - (1e6 % String(n).length));
        assert.equal(sessionFiles(dir).filter((f) => f.includes('.tmp-')).length, 0, 'temp files cleaned');
        await store.close();
        stores.pop();
      }
      console.log(`      (${killsInsideWrite} of 6 kills left a half-written temporary file behind)`);
    });

    it('skips an unreadable session file and reports it, keeping the others', async function () {
      const a = open();
      a.transition('good', 'ReceiveCmd');
      a.transition('bad', 'ReceiveCmd');
      await a.close();
      fs.writeFileSync(path.join(dir, 'sessions', `${idOf('bad')}.json`), '{"v":1,"key":"ba');
      const b = open();
      assert.deepEqual(b.keys(), ['good']);
      assert.equal(b.problems.length, 1);
      assert.match(b.problems[0], new RegExp(idOf('bad')));
    });
  });

  describe('encryption at rest', function () {
    it('keeps no conversation text in the clear and reopens with the same key', async function () {
      const a = open({ encryptionKey: 'correct horse' });
      await a.appendTurn('secret-mission', 'the valve code is 4711', 'noted: 4711');
      await a.close();
      for (const sub of ['sessions', '.']) {
        for (const name of fs.readdirSync(path.join(dir, sub))) {
          const file = path.join(dir, sub, name);
          if (fs.statSync(file).isFile())
            assert.doesNotMatch(fs.readFileSync(file, 'utf8'), /4711|secret-mission/);
        }
      }
      const b = open({ encryptionKey: 'correct horse' });
      assert.equal(b.get('secret-mission').conversation[1].content, 'noted: 4711');
      assert.equal(
        b.snapshotFor(b.get('secret-mission'), 'a'.repeat(64)),
        undefined,
        'no plaintext KV cache',
      );
    });

    it('refuses a wrong key or a missing key with a clear error and returns no data', async function () {
      const a = open({ encryptionKey: 'correct horse' });
      a.transition('m', 'ReceiveCmd', { spec: 'top secret' });
      await a.close();
      assert.throws(
        () => open({ encryptionKey: 'battery staple' }),
        (e: SessionError) =>
          e instanceof SessionError &&
          e.code === 'wrong_key' &&
          /The encryption key is not the one this session store .* was written with; no session was read\./.test(
            e.message,
          ) &&
          !/top secret/.test(e.message),
      );
      assert.throws(
        () => open(),
        (e: SessionError) => e.code === 'no_key' && /is encrypted/.test(e.message),
      );
      // A record sealed under another key is refused on its own too, not read as garbage.
      const other = fs.mkdtempSync(path.join(tmpdir(), 'edge-llm-sessions-'));
      try {
        const c = SessionStore.open({ dir: other, encryptionKey: 'battery staple' });
        await c.close();
        fs.copyFileSync(
          path.join(dir, 'sessions', `${idOf('m')}.json`),
          path.join(other, 'sessions', `${idOf('m')}.json`),
        );
        const d = SessionStore.open({ dir: other, encryptionKey: 'battery staple' });
        assert.equal(d.size, 0);
        assert.match(d.problems[0], /fails its integrity check/);
        await d.close();
      } finally {
        fs.rmSync(other, { recursive: true, force: true });
      }
      assert.equal(open({ encryptionKey: 'correct horse' }).get('m').mission.spec, 'top secret');
    });
  });

  describe('damage and tampering', function () {
    it('tells a tampered session file from a wrong key, and never overwrites it on the next turn', async function () {
      const a = open({ encryptionKey: 'correct horse' });
      await a.appendTurn('m', 'the valve code is 4711', 'noted');
      await a.appendTurn('other', 'hello', 'hi');
      await a.close();
      const file = path.join(dir, 'sessions', `${idOf('m')}.json`);
      const sealed = JSON.parse(fs.readFileSync(file, 'utf8')) as { data: string };
      const bytes = Buffer.from(sealed.data, 'base64');
      bytes[3] ^= 0x01;
      fs.writeFileSync(file, JSON.stringify({ ...sealed, data: bytes.toString('base64') }));
      const tampered = fs.readFileSync(file);

      const b = open({ encryptionKey: 'correct horse' });
      assert.deepEqual(b.keys(), ['other'], 'the sound session opens with the key');
      assert.match(b.problems[0], /fails its integrity check.*the store key is right/);
      assert.doesNotMatch(b.problems[0], /wrong key|cannot be decrypted with this key/);
      for (const attempt of [
        () => b.appendTurn('m', 'next turn', 'answer'),
        async () => b.get('m'),
        async () => b.transition('m', 'ReceiveCmd'),
      ]) {
        await assert.rejects(
          attempt(),
          (e: SessionError) => e.code === 'unreadable' && /left as it is/.test(e.message),
        );
      }
      await b.flush();
      assert.deepEqual(fs.readFileSync(file), tampered, 'the tampered file is untouched');
      assert.equal(b.delete('m'), true, 'clearing the session is the way out');
      assert.ok(
        sessionFiles(dir).some((n) => n.startsWith(`${idOf('m')}.json.unreadable-`)),
        'kept beside',
      );
      await b.appendTurn('m', 'a new start', 'ok');
      assert.equal(b.get('m').conversation.length, 2);
    });

    it('tells a damaged store.json from a wrong key', async function () {
      const a = open({ encryptionKey: 'correct horse' });
      a.transition('m', 'ReceiveCmd');
      await a.close();
      const meta = path.join(dir, 'store.json');
      const sound = fs.readFileSync(meta, 'utf8');
      const parsed = JSON.parse(sound) as { encryption: { check: string } };
      const check = parsed.encryption.check;
      const flipped = check.slice(0, 40) + (check[40] === 'A' ? 'B' : 'A') + check.slice(41);
      fs.writeFileSync(
        meta,
        JSON.stringify({ ...parsed, encryption: { ...parsed.encryption, check: flipped } }),
      );
      assert.throws(
        () => open({ encryptionKey: 'correct horse' }),
        (e: SessionError) => e.code === 'corrupt' && /damaged.*the key is not the problem/.test(e.message),
      );
      fs.writeFileSync(meta, sound.slice(0, 30));
      assert.throws(
        () => open({ encryptionKey: 'correct horse' }),
        (e: SessionError) => e.code === 'corrupt' && /damaged/.test(e.message),
      );
      fs.writeFileSync(meta, sound);
      assert.throws(
        () => open({ encryptionKey: 'battery staple' }),
        (e: SessionError) => e.code === 'wrong_key',
      );
      assert.equal(open({ encryptionKey: 'correct horse' }).get('m').mission.state, 'ReceiveCmd');
    });

    it('refuses mission data that cannot be stored as JSON, and keeps what it had', async function () {
      const a = open();
      a.update('m', { data: { level: 1 } });
      const cyclic: Record<string, unknown> = { level: 2 };
      cyclic.self = cyclic;
      assert.throws(
        () => a.update('m', { data: cyclic }),
        (e: SessionError) => e.code === 'bad_data' && /without cycles/.test(e.message),
      );
      assert.throws(
        () => a.update('m', { data: { big: 10n } as never }),
        (e: SessionError) => e.code === 'bad_data',
      );
      await a.close();
      stores.pop();
      assert.deepEqual(open().get('m').mission.data, { level: 1 });
    });
  });

  describe('KV snapshots on the real runtime', function () {
    this.timeout(120_000);
    let registry: RuntimeRegistry;
    beforeEach(() => (registry = new RuntimeRegistry({ modelsDir: testModelsDir(), gpu: false })));
    afterEach(() => registry.close());

    const settings = { sequences: 1, contextSize: 512 };
    const chat = (runtime: ModelRuntime, messages: ChatMessage[], affinity: string, snapshot?: object) =>
      runtime.chat(messages, { maxTokens: 8, affinity, snapshot });

    it('resumes a conversation from its snapshot on the same model file, never on another', async function () {
      const [storiesFile, randomFile] = await Promise.all([testModel('stories'), testModel('tinyRandom')]);
      const store = open();
      const system = 'You tell stories about a robot that inspects valves.';
      const key = 'mission-7';

      const a = await registry.acquire({ source: storiesFile, settings }).ready;
      const first = store.snapshotFor(store.get(key), a.modelSha256);
      assert.ok(first && first.load === undefined, 'nothing to load yet');
      const messages = messagesFor(store.get(key), system, 'Tell me about valve 7.', 400);
      const r1 = await chat(a, messages, idOf(key), first);
      assert.equal(r1.prefix, 'cold');
      await store.appendTurn(key, 'Tell me about valve 7.', r1.text, {
        snapshotFile: first.save,
        modelSha256: a.modelSha256,
      });
      assert.equal(store.get(key).snapshot?.modelSha256, a.modelSha256);

      // Model B: another file, another sha256: the snapshot is not offered.
      const b = await registry.acquire({ source: randomFile, settings }).ready;
      assert.notEqual(b.modelSha256, a.modelSha256);
      const forB = store.snapshotFor(store.get(key), b.modelSha256);
      assert.equal(forB?.load, undefined, 'a snapshot of model A is never loaded into model B');
      const next = messagesFor(store.get(key), system, 'And valve 8?', 400);
      const rb = await chat(b, next, idOf(key), { load: forB?.load });
      assert.equal(rb.prefix, 'cold');

      // Model A after a restart: a fresh runtime resumes from the snapshot.
      await registry.close();
      registry = new RuntimeRegistry({ modelsDir: testModelsDir(), gpu: false });
      const a2 = await registry.acquire({ source: storiesFile, settings }).ready;
      const forA = store.snapshotFor(store.get(key), a2.modelSha256);
      assert.ok(forA?.load, 'the same model file gets its snapshot');
      const ra = await chat(a2, next, idOf(key), forA);
      assert.equal(ra.prefix, 'snapshot');
      await store.appendTurn(key, 'And valve 8?', ra.text, {
        snapshotFile: forA.save,
        modelSha256: a2.modelSha256,
      });
      assert.equal(fs.existsSync(forA.load), false, 'the replaced snapshot is removed');
      assert.equal(fs.readdirSync(path.join(dir, 'kv')).length, 1);
    });
  });

  it('holds 1,000 sessions correctly and no more', async function () {
    const store = open({ maxSessions: 1000 });
    const started = performance.now();
    for (let i = 0; i < 1200; i++) {
      const key = `s${i}`;
      store.transition(key, 'ReceiveCmd', { data: { i } });
      store.transition(key, 'Parse');
      if (i % 3 === 0) store.transition(key, 'Failed');
    }
    const turns = [];
    for (let i = 1100; i < 1200; i++) turns.push(store.appendTurn(`s${i}`, `q${i}`, `a${i}`));
    await Promise.all(turns);
    await store.flush();
    const writtenMs = performance.now() - started;
    assert.equal(store.size, 1000);
    assert.equal(sessionFiles(dir).length, 1000);
    assert.equal(store.has('s199'), false);
    for (let i = 200; i < 1200; i++) {
      const r = store.get(`s${i}`);
      assert.equal(r.mission.state, i % 3 === 0 ? 'Failed' : 'Parse', `s${i}`);
      assert.deepEqual(r.mission.data, { i });
      assert.equal(r.conversation.length, i >= 1100 ? 2 : 0);
    }
    await store.close();
    const reopenedAt = performance.now();
    const again = open({ maxSessions: 1000 });
    const reopenMs = performance.now() - reopenedAt;
    assert.equal(again.size, 1000);
    assert.equal(again.get('s1150').conversation[1].content, 'a1150');
    console.log(
      `      1,200 sessions written (1,000 kept) in ${writtenMs.toFixed(0)} ms; reopened in ${reopenMs.toFixed(0)} ms`,
    );
  });
});
