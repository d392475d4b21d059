import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node, NodeMessage } from 'node-red';
import type { SinonSpy } from 'sinon';
import privacyGuardNode from '../nodes/privacy-guard';
import { callsBy, collect, coreNode, initHelper } from './support/flow';
import { assertLoopFree, gapMonitor } from './support/gap-monitor';

/** The part of node-red-node-test-helper these tests use (it ships no types). */
interface TestHelper {
  init(runtimePath: string, settings?: object): void;
  startServer(): Promise<void>;
  stopServer(): Promise<void>;
  load(nodes: unknown[], flow: object[], credentials?: object): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): SpiedNode;
}
type SpiedNode = Node & { error: SinonSpy; status: SinonSpy; log: SinonSpy; warn: SinonSpy; debug: SinonSpy };

// Through test/support/flow so that the compat run (NODE_RED_PATH) covers Node-RED 5 too.
const helper = initHelper() as unknown as TestHelper;
const catchNode = coreNode('common/25-catch.js');
/** The helper's RED._ returns the key: assertions name keys. */
const NS = 'node-red-contrib-edge-llm/privacy-guard:privacy-guard';

const lastStatus = (node: SpiedNode) =>
  callsBy(node.status, node).at(-1)?.args[0] as { fill?: string; text?: string };

const TEXT = 'Operator Lisa Meyer (lisa.meyer@example.com, +44 20 7946 0958) reset pump 3 at 10.0.0.7.';

/** A tab with the guard, its two outputs and `extra` nodes (flow context and Catch need the tab). */
function flow(config: Record<string, unknown> = {}, extra: object[] = []) {
  const nodes = [
    {
      id: 'pg',
      type: 'privacy-guard',
      name: 'guard',
      mode: 'protect',
      fields: 'payload',
      wires: [['out'], ['blocked']],
      ...config,
    },
    { id: 'out', type: 'helper' },
    { id: 'blocked', type: 'helper' },
    ...extra,
  ];
  // x and y make them flow nodes; without them the runtime takes them for config nodes.
  return [{ id: 'tab', type: 'tab' }, ...nodes.map((n) => ({ ...n, z: 'tab', x: 0, y: 0 }))];
}

describe('privacy-guard node', function () {
  this.timeout(30_000);
  let dir: string;

  beforeEach(async function () {
    dir = mkdtempSync(join(tmpdir(), 'privacy-node-'));
    await helper.startServer();
  });

  afterEach(async function () {
    await helper.unload();
    await helper.stopServer();
    rmSync(dir, { recursive: true, force: true });
  });

  it('protects the payload, keeps the map in msg._privacy and shows the counts', async function () {
    await helper.load([privacyGuardNode], flow());
    const pg = helper.getNode('pg');
    const out = collect(helper.getNode('out'));
    pg.receive({ payload: TEXT } as NodeMessage);
    await out.until(1);
    const msg = out.messages[0];
    assert.equal(msg.payload, 'Operator <PERSON_1> (<EMAIL_1>, <PHONE_1>) reset pump 3 at <IPV4_1>.');
    assert.deepEqual(msg.privacy, { counts: { PERSON: 1, EMAIL: 1, PHONE: 1, IPV4: 1 }, total: 4 });
    assert.equal(
      (msg._privacy as { tokens: Record<string, string> }).tokens['<EMAIL_1>'],
      'lisa.meyer@example.com',
    );
    assert.deepEqual(lastStatus(pg), {
      fill: 'green',
      shape: 'dot',
      text: 'PERSON 1, EMAIL 1, PHONE 1, IPV4 1',
    });
  });

  it('restores the originals into the model answer and drops the map', async function () {
    await helper.load(
      [privacyGuardNode],
      flow({}, [
        { id: 'rs', type: 'privacy-guard', mode: 'restore', fields: 'payload', wires: [['restored'], []] },
        { id: 'restored', type: 'helper' },
      ]),
    );
    const out = collect(helper.getNode('out'));
    const restored = collect(helper.getNode('restored'));
    helper.getNode('pg').receive({ payload: TEXT } as NodeMessage);
    await out.until(1);
    const answer = 'I will e-mail < EMAIL_1 > and call <PHONE_1>; <PERSON_1> is on shift.';
    helper.getNode('rs').receive({ payload: answer, _privacy: out.messages[0]._privacy } as NodeMessage);
    await restored.until(1);
    assert.equal(
      restored.messages[0].payload,
      'I will e-mail lisa.meyer@example.com and call +44 20 7946 0958; Lisa Meyer is on shift.',
    );
    assert.equal(restored.messages[0]._privacy, undefined);
  });

  it('round-trips a deep JSON payload and other fields exactly', async function () {
    await helper.load(
      [privacyGuardNode],
      flow({ fields: 'payload, topic', operators: { SECRET: 'pseudonym' } }, [
        {
          id: 'rs',
          type: 'privacy-guard',
          mode: 'restore',
          fields: 'payload, topic',
          wires: [['restored'], []],
        },
        { id: 'restored', type: 'helper' },
      ]),
    );
    const payload = {
      ticket: { reporter: 'Lisa Meyer', contact: ['lisa.meyer@example.com', '+44 20 7946 0958'] },
      body: 'token ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ12 leaked',
      n: 7,
    };
    const out = collect(helper.getNode('out'));
    const restored = collect(helper.getNode('restored'));
    helper.getNode('pg').receive({
      payload: JSON.parse(JSON.stringify(payload)),
      topic: 'from lisa.meyer@example.com',
    } as NodeMessage);
    await out.until(1);
    assert.equal(out.messages[0].topic, 'from <EMAIL_1>');
    assert.ok(!JSON.stringify(out.messages[0].payload).includes('lisa'));
    helper.getNode('rs').receive(out.messages[0]);
    await restored.until(1);
    assert.deepEqual(restored.messages[0].payload, payload);
    assert.equal(restored.messages[0].topic, 'from lisa.meyer@example.com');
  });

  it('blocks binary data on the second output and passes nothing on', async function () {
    await helper.load([privacyGuardNode], flow());
    const pg = helper.getNode('pg');
    const out = collect(helper.getNode('out'));
    const blocked = collect(helper.getNode('blocked'));
    pg.receive({ payload: Buffer.from([0xff, 0x00, 0xfe, 0x10]) } as NodeMessage);
    await blocked.until(1);
    assert.match(String((blocked.messages[0].privacy as { blocked: string }).blocked), /binary/);
    assert.equal(out.messages.length, 0);
    assert.equal(lastStatus(pg).fill, 'red');
  });

  it('handles cycles and huge strings without throwing', async function () {
    await helper.load([privacyGuardNode], flow({ maxChars: '100000' }));
    const pg = helper.getNode('pg');
    const out = collect(helper.getNode('out'));
    const blocked = collect(helper.getNode('blocked'));
    const cyclic: Record<string, unknown> = { mail: 'ann@example.com' };
    cyclic.self = cyclic;
    pg.receive({ payload: cyclic } as NodeMessage);
    await out.until(1);
    const p = out.messages[0].payload as Record<string, unknown>;
    assert.equal(p.mail, '<EMAIL_1>');
    assert.equal(p.self, p);
    pg.receive({ payload: 'x'.repeat(200_000) } as NodeMessage);
    await blocked.until(1);
    assert.match(String((blocked.messages[0].privacy as { blocked: string }).blocked), /characters/);
  });

  it('shares pseudonyms across the messages of a session', async function () {
    await helper.load([privacyGuardNode], flow({ store: 'flow', sessionProperty: 'mission.id' }));
    const pg = helper.getNode('pg');
    const out = collect(helper.getNode('out'));
    pg.receive({ payload: 'ask bob@example.com', mission: { id: 'm1' } } as NodeMessage);
    pg.receive({ payload: 'ann@example.com then bob@example.com', mission: { id: 'm1' } } as NodeMessage);
    pg.receive({ payload: 'ann@example.com', mission: { id: 'm2' } } as NodeMessage);
    await out.until(3);
    assert.deepEqual(
      out.messages.map((m) => m.payload),
      ['ask <EMAIL_1>', '<EMAIL_2> then <EMAIL_1>', '<EMAIL_1>'],
    );
    const binding = out.messages[0]._privacy as Record<string, unknown>;
    assert.equal(binding.tokens, undefined, 'the originals stay in the session store');
    assert.deepEqual(Object.keys(binding).sort(), ['request', 'session', 'version']);
  });

  /** A protect and a restore node sharing a session store, as a chat flow has them. */
  const sessionFlow = (extra: Record<string, unknown> = {}) =>
    flow({ store: 'flow', ...extra }, [
      {
        id: 'rs',
        type: 'privacy-guard',
        mode: 'restore',
        fields: 'payload',
        store: 'flow',
        ...extra,
        wires: [['restored'], []],
      },
      { id: 'restored', type: 'helper' },
    ]);

  it('restores what the request gave the model, and nothing a user typed', async function () {
    await helper.load([privacyGuardNode], sessionFlow());
    const out = collect(helper.getNode('out'));
    const restored = collect(helper.getNode('restored'));
    const pg = helper.getNode('pg');
    const rs = helper.getNode('rs');
    pg.receive({ payload: 'mail bob@example.com', sessionId: 's1' } as NodeMessage);
    await out.until(1);
    assert.equal(out.messages[0].payload, 'mail <EMAIL_1>');
    // The model answers the first request: its placeholder comes back.
    rs.receive({ ...out.messages[0], payload: 'Done: <EMAIL_1>' } as NodeMessage);
    await restored.until(1);
    assert.equal(restored.messages[0].payload, 'Done: bob@example.com');
    // A later message of the same session types the placeholder; the model echoes it.
    pg.receive({ payload: 'who is <EMAIL_1>?', sessionId: 's1' } as NodeMessage);
    await out.until(2);
    assert.equal(out.messages[1].payload, 'who is <EMAIL_1>?');
    rs.receive({ ...out.messages[1], payload: 'That is <EMAIL_1>.' } as NodeMessage);
    await restored.until(2);
    assert.equal(restored.messages[1].payload, 'That is <EMAIL_1>.');
    // Another session types it: nothing either.
    pg.receive({ payload: 'tell me <EMAIL_1>', sessionId: 's2' } as NodeMessage);
    await out.until(3);
    rs.receive({ ...out.messages[2], payload: '<EMAIL_1>' } as NodeMessage);
    await restored.until(3);
    assert.equal(restored.messages[2].payload, '<EMAIL_1>');
    // Nor does a message that claims another session's request.
    rs.receive({ payload: '<EMAIL_1>', sessionId: 's2', _privacy: out.messages[0]._privacy } as NodeMessage);
    await restored.until(4);
    assert.equal(restored.messages[3].payload, '<EMAIL_1>');
  });

  it('keeps at most maxSessions session maps, and drops those unused past their age', async function () {
    await helper.load([privacyGuardNode], sessionFlow({ maxSessions: '3', sessionTtl: '1' }));
    const pg = helper.getNode('pg');
    const out = collect(helper.getNode('out'));
    for (let i = 0; i < 5; i++)
      pg.receive({ payload: `mail u${i}@example.com`, sessionId: `s${i}` } as NodeMessage);
    await out.until(5);
    const flowContext = pg.context().flow;
    const kept = (flowContext.keys() as string[]).filter((k) => k.startsWith('privacy-guard:session:'));
    assert.deepEqual(kept.sort(), [
      'privacy-guard:session:s2',
      'privacy-guard:session:s3',
      'privacy-guard:session:s4',
    ]);
    // Past the age limit a request's placeholders restore nothing, and the next use clears the old maps.
    await new Promise((r) => setTimeout(r, 1_100));
    const restored = collect(helper.getNode('restored'));
    helper.getNode('rs').receive({ ...out.messages[4], payload: '<EMAIL_1>' } as NodeMessage);
    await restored.until(1);
    assert.equal(restored.messages[0].payload, '<EMAIL_1>');
    pg.receive({ payload: 'mail late@example.com', sessionId: 'late' } as NodeMessage);
    await out.until(6);
    const left = (flowContext.keys() as string[]).filter((k) => k.startsWith('privacy-guard:session:'));
    assert.deepEqual(left, ['privacy-guard:session:late']);
  });

  it('recognises national numbers of its configured regions and names without cues', async function () {
    await helper.load([privacyGuardNode], flow({ regions: 'DE, GB' }));
    const out = collect(helper.getNode('out'));
    helper.getNode('pg').receive({
      payload: 'Anna Schmidt asked for a call back on 030 12345678; Oliver Smith on 020 7946 0958.',
    } as NodeMessage);
    await out.until(1);
    assert.equal(
      out.messages[0].payload,
      '<PERSON_1> asked for a call back on <PHONE_1>; <PERSON_2> on <PHONE_2>.',
    );
  });

  it('hashes with the key from the credentials', async function () {
    await helper.load([privacyGuardNode], flow({ operators: { EMAIL: 'hash' } }), {
      pg: { key: 'secret-key' },
    });
    const out = collect(helper.getNode('out'));
    helper.getNode('pg').receive({ payload: 'ann@example.com' } as NodeMessage);
    await out.until(1);
    assert.match(String(out.messages[0].payload), /^\[EMAIL:[0-9a-f]{16}\]$/);
  });

  it('with a bad configuration shows red, logs an error and sends every message to Catch', async function () {
    await helper.load(
      [privacyGuardNode, catchNode],
      flow({ customPatterns: '[{"name": "TAG", "pattern": "("}]' }, [
        { id: 'catch', type: 'catch', scope: ['pg'], uncaught: false, wires: [['caught']] },
        { id: 'caught', type: 'helper' },
      ]),
    );
    const pg = helper.getNode('pg');
    assert.equal(lastStatus(pg).fill, 'red');
    assert.equal(callsBy(pg.error, pg)[0].args[0], `${NS}.errors.config`);
    const caught = collect(helper.getNode('caught'));
    const out = collect(helper.getNode('out'));
    pg.receive({ payload: TEXT, marker: 42 } as NodeMessage);
    await caught.until(1);
    assert.equal(caught.messages[0].marker, 42);
    assert.equal(caught.messages[0].payload, TEXT);
    assert.ok(caught.messages[0].error);
    assert.equal(out.messages.length, 0);
  });

  it('a hash operator without a key is a configuration error', async function () {
    await helper.load([privacyGuardNode], flow({ operators: { EMAIL: 'hash' } }));
    const pg = helper.getNode('pg');
    assert.equal(lastStatus(pg).fill, 'red');
    assert.equal(callsBy(pg.error, pg)[0].args[0], `${NS}.errors.config`);
  });

  it('writes an audit line per message with counts and a keyed hash, never the values', async function () {
    const file = join(dir, 'audit.jsonl');
    await helper.load([privacyGuardNode], flow({ audit: 'file', auditFile: file }), { pg: { key: 'k' } });
    const out = collect(helper.getNode('out'));
    const blocked = collect(helper.getNode('blocked'));
    helper.getNode('pg').receive({ payload: TEXT } as NodeMessage);
    helper.getNode('pg').receive({ payload: () => 1 } as unknown as NodeMessage);
    await out.until(1);
    await blocked.until(1);
    await helper.unload(); // the close handler waits for the writer
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    assert.equal(lines.length, 2);
    const [first, second] = lines.map((l) => JSON.parse(l));
    assert.deepEqual(first.counts, { PERSON: 1, EMAIL: 1, PHONE: 1, IPV4: 1 });
    assert.equal(first.node, 'pg');
    assert.match(first.inputHash, /^[0-9a-f]{64}$/);
    assert.match(second.blocked, /function/);
    for (const secret of ['Lisa', 'lisa.meyer', '7946', '10.0.0.7'])
      assert.ok(!lines.join('').includes(secret), secret);
  });

  it('logs the audit record at the chosen level without the values', async function () {
    await helper.load([privacyGuardNode], flow({ audit: 'log', auditLevel: 'info' }));
    const pg = helper.getNode('pg');
    const out = collect(helper.getNode('out'));
    pg.receive({ payload: TEXT } as NodeMessage);
    await out.until(1);
    const logged = callsBy(pg.log, pg).map((c) => String(c.args[0]));
    assert.equal(logged.length, 1);
    assert.match(logged[0], /"inputHash":"[0-9a-f]{64}"/);
    assert.ok(!logged[0].includes('lisa'));
  });

  it('keeps every event-loop block under 50 ms for a message just under the size limit', async function () {
    this.timeout(180_000);
    // Telemetry lines with a line of contact data every fifth, each with its own address and number.
    const lines: string[] = [];
    let size = 0;
    for (let i = 0; size < 3_990_000; i++) {
      const n = String(i % 1000).padStart(4, '0');
      const line =
        i % 5 === 4
          ? `Ticket ${i}: operator Lisa Meyer (lisa.meyer${i % 1000}@example.com, +44 20 7946 ${n}) reset pump 3 at 10.0.${i % 250}.7; Keller, Maria called back.`
          : `Line 3 pump P-${i % 900} running at 1480 rpm, discharge pressure 4.2 bar, temperature 61.5 C.`;
      lines.push(line);
      size += line.length + 1;
    }
    const big = lines.join('\n').slice(0, 3_990_000);
    const audit = { audit: 'log', auditLevel: 'trace' };
    // The message arrives as soon as the flow is deployed: the warm-up runs in front of it.
    await helper.load([privacyGuardNode], sessionFlow(audit));
    const out = collect(helper.getNode('out'));
    const restored = collect(helper.getNode('restored'));
    const monitor = gapMonitor();
    helper.getNode('pg').receive({ payload: big, sessionId: 'line-3' } as NodeMessage);
    await out.until(1);
    assert.ok(!String(out.messages[0].payload).includes('lisa.meyer'));
    // What the model would answer: the protected text, which the restore node turns back.
    helper.getNode('rs').receive(out.messages[0]);
    await restored.until(1);
    await new Promise((resolve) => setTimeout(resolve, 30)); // a block at the end shows at the next tick
    const report = monitor.report();
    // The round trip is whole: every original came back where it was.
    assert.equal(restored.messages[0].payload, big);
    // Detection only computes: what counts is the CPU time the loop thread ran without letting a
    // timer fire (a loaded box deschedules this process for 100-300 ms in the middle of a 10 ms step,
    // which the wall clock counts as a block).
    assertLoopFree(report, 50);
  });
});
