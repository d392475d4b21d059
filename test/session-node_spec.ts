import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Node } from 'node-red';
import type { SinonSpy } from 'sinon';
import { MISSION_STATES } from '../lib/session';
import sessionNode from '../nodes/kv-session';
import storeNode, { type KvSessionStoreNode } from '../nodes/kv-session-store';
import { coreNode, initHelper, stopServer, until } from './support/flow';

const helper = initHelper();
const catchNode = coreNode('common/25-catch.js');

type Spied = Node & { status: SinonSpy; error: SinonSpy; warn: SinonSpy; receive: (msg: object) => void };
type Msg = Record<string, unknown> & {
  mission?: { state: string; spec?: unknown };
  error?: { message: string };
};

const getNode = (id: string) => helper.getNode(id) as unknown as Spied;

function next(id: string): Promise<Msg> {
  return new Promise((resolve) => helper.getNode(id).once('input', resolve));
}

/** A store, a transition node, a get node routing by state, and a Catch node. */
function flow(extra: object[] = [], storeExtra: object = {}) {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'store', type: 'kv-session-store', name: 'missions', maxSessions: '10', ...storeExtra },
    {
      id: 'move',
      type: 'kv-session',
      z: 'f1',
      store: 'store',
      action: 'transition',
      toState: '',
      key: '',
      keyType: 'msg',
      wires: [['moved']],
    },
    {
      id: 'route',
      type: 'kv-session',
      z: 'f1',
      store: 'store',
      action: 'get',
      key: '',
      keyType: 'msg',
      routeByState: true,
      outputs: MISSION_STATES.length,
      wires: MISSION_STATES.map((s) => [`out-${s}`]),
    },
    { id: 'moved', type: 'helper', z: 'f1' },
    ...MISSION_STATES.map((s) => ({ id: `out-${s}`, type: 'helper', z: 'f1' })),
    { id: 'catcher', type: 'catch', z: 'f1', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'f1' },
    ...extra,
  ];
}

describe('kv-session nodes in a flow', function () {
  this.timeout(30_000);
  let dir: string;

  beforeEach(async function () {
    dir = fs.mkdtempSync(path.join(tmpdir(), 'kv-session-node-'));
    helper.settings({ userDir: dir });
    await helper.startServer();
  });
  afterEach(async function () {
    await helper.unload();
    await stopServer();
    helper.settings({ userDir: undefined });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const load = (nodes: object[], credentials: object = {}) =>
    helper.load([storeNode, sessionNode, catchNode], nodes as never, credentials as never);

  const move = async (key: string, state: string) => {
    const out = next('moved');
    getNode('move').receive({ session: key, state });
    return out;
  };

  it('moves missions through their states and routes each to the output of its state', async function () {
    await load(flow());
    for (const state of ['ReceiveCmd', 'Parse', 'Execute']) await move('m1', state);
    const moved = await move('m2', 'ReceiveCmd');
    assert.equal(moved.mission?.state, 'ReceiveCmd');
    assert.equal(moved.session, 'm2');

    const routed = next('out-Execute');
    getNode('route').receive({ topic: 'm1', payload: 'keep me' });
    const msg = await routed;
    assert.equal(msg.payload, 'keep me', 'the input message is reused');
    assert.equal(msg.session, 'm1', 'the key from msg.topic is put on msg.session');
    assert.deepEqual(msg.conversation, []);

    const idle = next('out-Idle');
    getNode('route').receive({ session: 'never-seen' });
    assert.equal((await idle).mission?.state, 'Idle');

    const route = getNode('route');
    await until(
      () => route.status.args.some(([s]) => /status\.summary$/.test(s.text)),
      5000,
      'a status with the states',
    );
  });

  it('refuses an invalid transition: the original message reaches a Catch node, the session is unchanged', async function () {
    await load(flow());
    await move('m1', 'ReceiveCmd');
    let sent = false;
    helper.getNode('moved').on('input', () => (sent = true));
    const caught = next('caught');
    getNode('move').receive({ session: 'm1', state: 'Complete', _tag: 42 });
    const msg = await caught;
    assert.equal(msg._tag, 42);
    assert.match(
      msg.error?.message ?? '',
      /A mission cannot go from ReceiveCmd to Complete \(session "m1"\); from ReceiveCmd it can go to Parse or Failed or Aborted\./,
    );
    assert.ok(
      getNode('move').status.args.some(
        ([s]) => s.fill === 'red' && /status\.invalid-transition$/.test(s.text),
      ),
    );
    const store = (helper.getNode('store') as unknown as KvSessionStoreNode).store!;
    assert.equal(store.get('m1').mission.state, 'ReceiveCmd');
    assert.equal(sent, false, 'nothing is sent for a refused transition');
  });

  it('sets mission data, clears a session, and lists sessions without their content', async function () {
    // Ids unlike any property value: Node-RED takes a property equal to a node id for a reference.
    const extra = [
      {
        id: 'setter',
        type: 'kv-session',
        z: 'f1',
        store: 'store',
        action: 'set',
        key: 'cell-3',
        keyType: 'str',
        wires: [['set-out']],
      },
      {
        id: 'clearer',
        type: 'kv-session',
        z: 'f1',
        store: 'store',
        action: 'clear',
        key: '',
        wires: [['clear-out']],
      },
      {
        id: 'lister',
        type: 'kv-session',
        z: 'f1',
        store: 'store',
        action: 'list',
        key: '',
        wires: [['list-out']],
      },
      ...['set-out', 'clear-out', 'list-out'].map((id) => ({ id, type: 'helper', z: 'f1' })),
    ];
    await load(flow(extra));
    const set = next('set-out');
    getNode('setter').receive({ payload: { spec: { goal: 'inspect valve 7' }, step: 2 } });
    const setMsg = await set;
    assert.equal(setMsg.session, 'cell-3');
    assert.deepEqual(setMsg.mission?.spec, { goal: 'inspect valve 7' });

    const caught = next('caught');
    getNode('setter').receive({ payload: { state: 'Execute' } });
    assert.match((await caught).error?.message ?? '', /kv-session.errors.bad-update/);

    // Cyclic data cannot survive a restart: an error to Catch, and the mission keeps what it had.
    const cyclic: Record<string, unknown> = { goal: 'loop' };
    cyclic.self = cyclic;
    const refused = next('caught');
    getNode('setter').receive({ payload: { data: cyclic } });
    assert.match((await refused).error?.message ?? '', /cannot be stored.*without cycles/);
    const kept = (helper.getNode('store') as unknown as KvSessionStoreNode).store!.get('cell-3').mission;
    assert.deepEqual([kept.spec, kept.data], [{ goal: 'inspect valve 7' }, undefined]);

    const list = next('list-out');
    getNode('lister').receive({});
    const listed = (await list).payload as Array<Record<string, unknown>>;
    assert.deepEqual(
      listed.map((s) => [s.key, s.state]),
      [['cell-3', 'Idle']],
    );
    assert.doesNotMatch(JSON.stringify(listed), /valve 7/);

    const cleared = next('clear-out');
    getNode('clearer').receive({ session: 'cell-3' });
    assert.equal((await cleared).mission?.spec, undefined);
    const store = (helper.getNode('store') as unknown as KvSessionStoreNode).store!;
    assert.equal(store.size, 0);

    const noKey = next('caught');
    getNode('route').receive({ payload: 'no key' });
    assert.match((await noKey).error?.message ?? '', /kv-session.errors.no-key/);
  });

  it('survives a redeploy and a restart of Node-RED', async function () {
    await load(flow());
    for (const state of ['ReceiveCmd', 'Parse']) await move('m1', state);
    const store = (helper.getNode('store') as unknown as KvSessionStoreNode).store!;
    await store.appendTurn('m1', 'inspect pump 4', 'plan ready');
    await helper.unload();
    await stopServer();
    assert.ok(fs.existsSync(path.join(dir, 'edge-llm', 'sessions', 'store', 'store.json')));

    await helper.startServer();
    await load(flow());
    const routed = next('out-Parse');
    getNode('route').receive({ session: 'm1' });
    const msg = await routed;
    assert.deepEqual(msg.conversation, [
      { role: 'user', content: 'inspect pump 4' },
      { role: 'assistant', content: 'plan ready' },
    ]);
    await move('m1', 'Execute');
  });

  it('lists keys and states on the admin endpoint, never conversation text or mission data', async function () {
    await load(flow());
    await move('m1', 'ReceiveCmd');
    const store = (helper.getNode('store') as unknown as KvSessionStoreNode).store!;
    store.update('m1', { spec: { goal: 'the secret goal' } });
    await store.appendTurn('m1', 'my name is Ada Lovelace', 'hello Ada');
    const res = await helper.request().get('/edge-llm/sessions').expect(200);
    assert.equal(res.body.length, 1);
    assert.equal(res.body[0].id, 'store');
    assert.equal(res.body[0].name, 'missions');
    const [session] = res.body[0].sessions;
    assert.equal(session.key, 'm1');
    assert.equal(session.state, 'ReceiveCmd');
    assert.equal(session.turns, 1);
    assert.ok(session.bytes > 0 && session.tokens > 0);
    assert.doesNotMatch(JSON.stringify(res.body), /Ada|secret goal/);
  });

  it('with a wrong encryption key: a clear error, red status, and no session data in any message', async function () {
    await load(flow(), { store: { encryptionKey: 'right key' } });
    await move('m1', 'ReceiveCmd');
    await helper.unload();

    await load(flow(), { store: { encryptionKey: 'wrong key' } });
    const config = helper.getNode('store') as unknown as KvSessionStoreNode & { error: SinonSpy };
    assert.equal(config.store, undefined);
    assert.ok(
      config.error.args.some(([m]) =>
        /kv-session-store.errors.bad-config.*The encryption key is not the one/.test(String(m)),
      ),
      config.error.args.join(),
    );
    const route = getNode('route');
    assert.ok(route.status.args.some(([s]) => s.fill === 'red' && /status\.config-error$/.test(s.text)));
    assert.ok(route.error.args.some(([m]) => /kv-session.errors.bad-store/.test(String(m))));
    const caught = next('caught');
    route.receive({ session: 'm1' });
    const msg = await caught;
    assert.equal(msg.mission, undefined);
    assert.match(msg.error?.message ?? '', /kv-session.errors.bad-store/);

    await helper.unload();
    await load(flow(), { store: { encryptionKey: 'right key' } });
    const routed = next('out-ReceiveCmd');
    getNode('route').receive({ session: 'm1' });
    assert.equal((await routed).mission?.state, 'ReceiveCmd', 'the right key still opens the sessions');
  });

  it('takes the encryption key from the environment variable it names when the credential is blank', async function () {
    const name = 'EDGE_LLM_TEST_SESSION_KEY';
    const viaEnv = flow([], { encryptionKeyEnv: name });
    process.env[name] = 'right key';
    try {
      await load(viaEnv);
      await move('m1', 'ReceiveCmd');
      await helper.unload();

      // The sessions were sealed with the variable's key: the credential with the same key opens them.
      await load(flow(), { store: { encryptionKey: 'right key' } });
      let routed = next('out-ReceiveCmd');
      getNode('route').receive({ session: 'm1' });
      assert.equal((await routed).mission?.state, 'ReceiveCmd');
      await helper.unload();

      // The credential wins over the variable.
      await load(viaEnv, { store: { encryptionKey: 'wrong key' } });
      let config = helper.getNode('store') as unknown as KvSessionStoreNode & { error: SinonSpy };
      assert.equal(config.store, undefined);
      await helper.unload();

      // Without the variable (and no credential) the encrypted store does not open.
      delete process.env[name];
      await load(viaEnv);
      config = helper.getNode('store') as unknown as KvSessionStoreNode & { error: SinonSpy };
      assert.equal(config.store, undefined);
      assert.ok(config.error.args.some(([m]) => /kv-session-store.errors.bad-config/.test(String(m))));
      await helper.unload();

      process.env[name] = 'right key';
      await load(viaEnv);
      routed = next('out-ReceiveCmd');
      getNode('route').receive({ session: 'm1' });
      assert.equal((await routed).mission?.state, 'ReceiveCmd');
      await helper.unload();

      await load(flow([], { encryptionKeyEnv: 'not a name' }));
      config = helper.getNode('store') as unknown as KvSessionStoreNode & { error: SinonSpy };
      assert.ok(
        config.error.args.some(([m]) => /Key variable must be an environment variable name/.test(String(m))),
      );
    } finally {
      delete process.env[name];
    }
  });

  it('reports bad configuration with a red status and an error, without throwing', async function () {
    await load([
      { id: 'f1', type: 'tab' },
      { id: 'orphan', type: 'kv-session', z: 'f1', store: 'missing', action: 'get', wires: [[]] },
      { id: 'store', type: 'kv-session-store', maxSessions: 'lots' },
      { id: 'bad', type: 'kv-session', z: 'f1', store: 'store', action: 'get', wires: [[]] },
    ]);
    const orphan = getNode('orphan');
    assert.ok(orphan.status.calledWithMatch({ fill: 'red' }));
    assert.ok(orphan.error.args.some(([m]) => /errors\.no-store$/.test(String(m))));
    const config = helper.getNode('store') as unknown as { error: SinonSpy };
    assert.ok(config.error.args.some(([m]) => /Maximum sessions must be from 1/.test(String(m))));
    assert.ok(getNode('bad').status.calledWithMatch({ fill: 'red' }));
  });
});
