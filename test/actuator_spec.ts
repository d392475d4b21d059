import * as assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Actuator,
  BrokerConnection,
  CommandRefused,
  ReplayStore,
  renderTopic,
  type AckInfo,
  type BrokerMessage,
  type Command,
  type CommandLink,
  type Failure,
  type PublishProperties,
} from '../lib/device/actuator';
import { Outbox } from '../lib/device/outbox';
import { type PolicyTrust, announcePolicy, fixedTrust, trustPolicy } from '../lib/guardrail/trust';
import { signAction, type Action, type SignedAction } from '../lib/device/signing';
import { MosquittoBroker, TestBroker } from './support/broker';
import { SimulatedDevice } from './support/device';
import * as sinon from 'sinon';

const KEY = 'test-signing-key';
const TOPIC = 'plant/{{device}}/cmd/{{action}}';

function sign(action: Partial<Action> = {}, opts: { ttlMs?: number; now?: number; key?: string } = {}) {
  return signAction(
    { action: 'set_valve', params: { open: true }, device: 'valve-1', ...action },
    { key: opts.key ?? KEY, policyHash: 'policy-1', ttlMs: opts.ttlMs ?? 60_000, now: opts.now },
  );
}

/**
 * Waits for a condition on a real interval: the tests that fake setTimeout move the ack timer
 * themselves, and setInterval stays real.
 */
async function poll(predicate: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        clearInterval(tick);
        resolve();
      }, 10);
    });
  }
}

/** Settled outcomes of an actuator, in the order they happened. */
class Outcomes {
  readonly acked: { command: Command; info: AckInfo }[] = [];
  readonly failed: { command: Command; failure: Failure }[] = [];
  private readonly events = new EventEmitter();
  constructor(actuator: Actuator) {
    actuator.on('acked', (command, info) => {
      this.acked.push({ command, info });
      this.events.emit('settled');
    });
    actuator.on('failed', (command, failure) => {
      this.failed.push({ command, failure });
      this.events.emit('settled');
    });
  }
  get count(): number {
    return this.acked.length + this.failed.length;
  }
  async until(count: number): Promise<void> {
    while (this.count < count) await once(this.events, 'settled');
  }
}

describe('actuator', function () {
  let dir: string;
  const cleanup: (() => Promise<unknown>)[] = [];

  const sandbox = sinon.createSandbox();

  beforeEach(async function () {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'actuator-'));
  });
  afterEach(async function () {
    sandbox.restore();
    for (const fn of cleanup.splice(0).reverse()) await fn();
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function broker(): Promise<TestBroker> {
    const b = await TestBroker.start();
    cleanup.push(() => b.stop());
    return b;
  }

  async function device(
    url: string,
    options: Partial<ConstructorParameters<typeof SimulatedDevice>[0]> = {},
  ) {
    const d = await SimulatedDevice.connect({ url, topic: 'plant/+/cmd/#', ...options });
    cleanup.push(() => d.close());
    return d;
  }

  async function connection(url: string): Promise<BrokerConnection> {
    const link = new BrokerConnection({ url, protocolVersion: 4, reconnectPeriodMs: 100 });
    link.register('test');
    cleanup.push(() => link.deregister('test'));
    if (!link.ready) await once(link, 'ready');
    return link;
  }

  async function actuator(
    link: CommandLink,
    options: Partial<ConstructorParameters<typeof Actuator>[0]> = {},
    capacity = 200,
  ) {
    const outbox = await Outbox.open<Command>({ dir: path.join(dir, 'outbox'), capacity });
    const replay = await ReplayStore.open({ dir: path.join(dir, 'outbox') });
    const a = new Actuator({
      link,
      outbox,
      replyTopic: 'edge-llm/ack/test',
      ackTimeoutMs: 500,
      retries: 2,
      deadlineMs: 30_000,
      ...options,
    });
    const outcomes = new Outcomes(a);
    await a.start();
    const stop = async () => {
      await a.stop();
      await outbox.close();
      await replay.close();
    };
    cleanup.push(stop);
    const submit = (signed: unknown) => a.submit(signed, { key: KEY, replay, topicTemplate: TOPIC });
    return { actuator: a, outbox, replay, outcomes, submit, stop };
  }

  describe('topic template', function () {
    it('fills in signed fields only and refuses values that would change the topic levels', function () {
      const action: Action = { action: 'set_valve', params: {}, device: 'valve-1' };
      assert.equal(renderTopic(TOPIC, action), 'plant/valve-1/cmd/set_valve');
      assert.throws(() => renderTopic(TOPIC, { ...action, device: 'a/b' }), { code: 'bad_topic' });
      assert.throws(() => renderTopic(TOPIC, { ...action, device: '#' }), { code: 'bad_topic' });
      assert.throws(() => renderTopic(TOPIC, { action: 'x', params: {} }), /lacks/);
    });
  });

  it('sends a signed action and reports the ack the device sent back', async function () {
    const b = await broker();
    const d = await device(b.url);
    const { submit, outcomes, outbox } = await actuator(await connection(b.url));
    const signed = sign();
    const command = await submit(signed);
    await outcomes.until(1);

    assert.equal(outcomes.failed.length, 0);
    const { info } = outcomes.acked[0];
    assert.deepEqual(info.reply, {
      idempotencyKey: command.idempotencyKey,
      ok: true,
      result: { done: 'set_valve' },
    });
    assert.equal(info.attempts, 1);
    assert.deepEqual(d.executions, [
      { idempotencyKey: command.idempotencyKey, topic: 'plant/valve-1/cmd/set_valve', action: signed.action },
    ]);
    assert.equal(outbox.depth, 0);
  });

  describe('refuses', function () {
    async function refusal(signed: unknown) {
      const link = new FakeLink();
      const { submit, outbox } = await actuator(link);
      const depth = outbox.depth;
      const err = await submit(signed).then(
        () => assert.fail('accepted'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof CommandRefused, String(err));
      assert.equal(outbox.depth, depth);
      assert.deepEqual(link.published, []);
      return err;
    }

    it('an action without a signature', async function () {
      const { action } = sign();
      assert.equal((await refusal({ action })).code, 'missing_signature');
      assert.equal((await refusal(undefined)).code, 'missing_signature');
    });

    it('an action whose content differs from what was signed', async function () {
      const signed = sign();
      const tampered = structuredClone(signed);
      tampered.action.params.open = false;
      assert.equal((await refusal(tampered)).code, 'bad_signature');
      const redirected = structuredClone(signed);
      redirected.action.device = 'valve-2';
      assert.equal((await refusal(redirected)).code, 'bad_signature');
    });

    it('an action signed with another key', async function () {
      assert.equal((await refusal(sign({}, { key: 'someone-else' }))).code, 'bad_signature');
    });

    it('an expired signature', async function () {
      assert.equal((await refusal(sign({}, { ttlMs: 1000, now: Date.now() - 5000 }))).code, 'expired');
    });

    it('a replayed signature, also after a restart', async function () {
      const signed = sign();
      const link = new FakeLink();
      link.ready = true;
      const first = await actuator(link);
      await first.submit(signed);
      await assert.rejects(first.submit(structuredClone(signed)), { code: 'replayed' });
      await first.stop();
      const err = await refusal(structuredClone(signed));
      assert.equal(err.code, 'replayed');
    });

    it('a signed action with a getter or a Proxy, without calling either', async function () {
      const signed = sign();
      let reads = 0;
      const params = {
        get open() {
          reads++;
          return true;
        },
      };
      const getter = { ...signed, action: { ...signed.action, params } };
      const err = await refusal(getter);
      assert.equal(err.code, 'malformed');
      assert.match(err.message, /payload\.action\.params\.open is a getter or setter/);
      assert.equal(reads, 0);
      let traps = 0;
      const proxy = new Proxy(signed.action, {
        get: (t, k) => {
          traps++;
          return Reflect.get(t, k);
        },
      });
      assert.equal((await refusal({ ...signed, action: proxy })).code, 'malformed');
      assert.equal(traps, 0);
    });

    it('an action whose device cannot be a topic level', async function () {
      assert.equal((await refusal(sign({ device: 'valve/../boiler' }))).code, 'bad_topic');
    });
  });

  describe('policy trust (stale_policy)', function () {
    const P1 = '1'.repeat(64);
    const P2 = '2'.repeat(64);
    const T = 1_700_000_000_000;
    const announcement = (
      policyHash: string | null,
      previous: { policyHash: string; until: number }[] = [],
    ) => announcePolicy(KEY, { node: 'g1', policyHash, since: T, previous });

    it('trusts the policy a guardrail with its key holds, and nothing else', function () {
      assert.deepEqual(trustPolicy(P1, [announcement(P1)], KEY, { graceMs: 0, now: T }), { ok: true });
      const stale = trustPolicy(P2, [announcement(P1)], KEY, { graceMs: 0, now: T });
      assert.equal(!stale.ok && stale.code, 'stale_policy');
      assert.equal(!stale.ok && stale.unknown, false);
    });

    it('ignores announcements made with another key, and one altered after signing', function () {
      const foreign = announcePolicy('another-key', { node: 'g1', policyHash: P1, since: T, previous: [] });
      const v = trustPolicy(P1, [foreign], KEY, { graceMs: 0, now: T });
      assert.equal(!v.ok && v.unknown, true);
      const altered = { ...announcement(P2), policyHash: P1 };
      assert.equal(trustPolicy(P1, [altered], KEY, { graceMs: 0, now: T }).ok, false);
    });

    it('trusts the previous policy for the grace period after it changed, and not a millisecond longer', function () {
      const a = announcement(P2, [{ policyHash: P1, until: T }]);
      assert.equal(trustPolicy(P1, [a], KEY, { graceMs: 0, now: T }).ok, false, 'grace 0: at once');
      assert.equal(trustPolicy(P1, [a], KEY, { graceMs: 5000, now: T + 4999 }).ok, true);
      assert.equal(trustPolicy(P1, [a], KEY, { graceMs: 5000, now: T + 5000 }).ok, false);
    });

    it('trusts nothing of a guardrail that has no policy (a bad deploy)', function () {
      const a = announcement(null, [{ policyHash: P1, until: T }]);
      assert.equal(trustPolicy(P1, [a], KEY, { graceMs: 0, now: T + 1 }).ok, false);
    });

    it('refuses at admission a command signed under a policy it does not trust', async function () {
      const link = new FakeLink();
      const { actuator: a, replay } = await actuator(link);
      const err = await a
        .submit(sign(), { key: KEY, replay, topicTemplate: TOPIC, trust: fixedTrust([P1]) })
        .then(
          () => assert.fail('accepted'),
          (e: unknown) => e as CommandRefused,
        );
      assert.equal(err.code, 'stale_policy');
      assert.deepEqual(link.published, []);
    });

    it('fails a waiting command whose policy went stale before it was sent, and sends what is trusted', async function () {
      const link = new FakeLink();
      let trusted = new Set(['policy-1']);
      const trust: PolicyTrust = {
        check: (hash) =>
          trusted.has(hash)
            ? { ok: true }
            : { ok: false, code: 'stale_policy', unknown: false, message: 'stale' },
      };
      const { actuator: a, replay, outcomes } = await actuator(link, { trust });
      const opts = { key: KEY, replay, topicTemplate: TOPIC };
      await a.submit(sign({ params: { n: 1 } }), opts);
      trusted = new Set(['policy-2']);
      await a.submit(
        signAction(
          { action: 'set_valve', params: { n: 2 }, device: 'valve-1' },
          { key: KEY, policyHash: 'policy-2', ttlMs: 60_000 },
        ),
        opts,
      );
      link.ready = true;
      link.emit('ready');
      assert.equal(outcomes.failed.length, 1);
      assert.equal(outcomes.failed[0].failure.code, 'stale_policy');
      assert.equal(outcomes.failed[0].command.signed.action.params.n, 1);
      assert.deepEqual(
        link.published.map((p) => JSON.parse(p.payload).action.params.n),
        [2],
      );
    });

    it('holds waiting commands while no guardrail has said which policy it holds', async function () {
      const link = new FakeLink();
      let known = false;
      const trust: PolicyTrust = {
        check: () =>
          known ? { ok: true } : { ok: false, code: 'stale_policy', unknown: true, message: 'nobody yet' },
      };
      const { actuator: a, replay, outcomes } = await actuator(link, { trust, sweepIntervalMs: 20 });
      await a.submit(sign(), { key: KEY, replay, topicTemplate: TOPIC, trust: fixedTrust(['policy-1']) });
      link.ready = true;
      link.emit('ready');
      await new Promise((r) => setTimeout(r, 60));
      assert.deepEqual(link.published, []);
      assert.equal(outcomes.count, 0);
      known = true;
      while (link.published.length === 0) await new Promise((r) => setTimeout(r, 10));
    });
  });

  it('reports a disk that refuses to drop a settled command as a problem, never an unhandled rejection', async function () {
    const b = await broker();
    await device(b.url);
    const { actuator: a, submit, outcomes, outbox } = await actuator(await connection(b.url));
    const fault = new Error('ENOSPC: no space left on device');
    const remove = sandbox.stub(outbox, 'remove').rejects(fault);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const problem = once(a, 'problem');
      await submit(sign());
      await outcomes.until(1);
      assert.deepEqual(await problem, [fault]);
      assert.equal(outcomes.acked.length, 1, 'the ack is still reported');
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(unhandled, []);
      assert.ok(remove.calledOnce);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('sends again with the same idempotency key when an ack is lost, and the device runs it once', async function () {
    const b = await broker();
    const d = await device(b.url, { loseAcks: 1, loseDeliveries: 1 });
    const link = await connection(b.url);
    // The ack timer moves only when the test moves it, once the device has had the send: a slow
    // machine cannot time out an ack that is still on its way and add a send.
    const clock = sandbox.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { submit, outcomes } = await actuator(link, { ackTimeoutMs: 200, retries: 3 });
    const command = await submit(sign());
    await poll(() => d.deliveries.length === 1, 'the first send, lost on the way');
    clock.tick(200);
    await poll(() => d.executions.length === 1, 'the second send, run, its ack lost');
    clock.tick(200);
    await outcomes.until(1);

    assert.equal(outcomes.acked.length, 1);
    assert.equal(outcomes.acked[0].info.attempts, 3);
    assert.deepEqual(d.deliveries, [command.idempotencyKey, command.idempotencyKey, command.idempotencyKey]);
    assert.equal(d.executions.length, 1);
  });

  it('fails a command the device never acks, after its retries', async function () {
    const b = await broker();
    const d = await device(b.url, { silent: true });
    const link = await connection(b.url);
    const clock = sandbox.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { submit, outcomes } = await actuator(link, { ackTimeoutMs: 100, retries: 2 });
    await submit(sign());
    for (let sends = 1; sends <= 3; sends++) {
      await poll(() => d.deliveries.length === sends, `send ${sends} at the device`);
      clock.tick(100);
    }
    await outcomes.until(1);

    assert.equal(outcomes.failed[0].failure.code, 'ack_timeout');
    assert.match(outcomes.failed[0].failure.message, /after 3 sends/);
    assert.equal(d.deliveries.length, 3);
    assert.equal(d.executions.length, 1);
  });

  it('reports a command the device refused', async function () {
    const b = await broker();
    await device(b.url, { refuse: () => 'interlock: door open' });
    const { submit, outcomes } = await actuator(await connection(b.url));
    await submit(sign());
    await outcomes.until(1);
    assert.deepEqual(outcomes.failed[0].failure, {
      code: 'device_rejected',
      message: 'the device refused the command: interlock: door open',
    });
  });

  it('holds 100 commands while the broker is down and delivers each once, in order, after it returns', async function () {
    this.timeout(60_000);
    const b = await broker();
    const d = await device(b.url);
    const link = await connection(b.url);
    const { submit, outcomes, outbox } = await actuator(link, { ackTimeoutMs: 1000, retries: 5 });

    await b.stop();
    if (link.ready) await once(link, 'offline');
    const commands: Command[] = [];
    for (let i = 0; i < 100; i++) commands.push(await submit(sign({ params: { step: i } })));
    assert.equal(outbox.depth, 100);
    assert.equal(d.executions.length, 0);

    const back = d.resubscribed();
    await b.start();
    await back;
    await outcomes.until(100);

    assert.equal(outcomes.failed.length, 0);
    assert.deepEqual(
      outcomes.acked.map((o) => o.command.idempotencyKey),
      commands.map((c) => c.idempotencyKey),
    );
    assert.deepEqual(
      d.executions.map((e) => e.action.params.step),
      commands.map((_, i) => i),
    );
    assert.equal(outbox.depth, 0);
  });

  it('fails the commands whose deadline passed while the broker was down, without sending them', async function () {
    const b = await broker();
    const d = await device(b.url);
    const link = await connection(b.url);
    const clock = { now: Date.now() };
    const { submit, outcomes } = await actuator(link, {
      deadlineMs: 10_000,
      now: () => clock.now,
      sweepIntervalMs: 20,
    });
    await b.stop();
    if (link.ready) await once(link, 'offline');
    await submit(sign({ params: { step: 'old' } }));
    clock.now += 6_000;
    await submit(sign({ params: { step: 'new' } }));
    clock.now += 6_000;
    await outcomes.until(1);
    assert.equal(outcomes.failed[0].failure.code, 'deadline');
    assert.match(outcomes.failed[0].failure.message, /waiting in the outbox for the broker .* not sent/);

    const back = d.resubscribed();
    await b.start();
    await back;
    await outcomes.until(2);
    assert.deepEqual(
      d.executions.map((e) => e.action.params.step),
      ['new'],
    );
  });

  it('never sends a command after its guardrail approval expired, whatever its own deadline', async function () {
    const b = await broker();
    const d = await device(b.url);
    const link = await connection(b.url);
    const clock = { now: Date.now() };
    const { submit, outcomes } = await actuator(link, {
      deadlineMs: 600_000,
      now: () => clock.now,
      sweepIntervalMs: 20,
    });
    await b.stop();
    if (link.ready) await once(link, 'offline');
    await submit(sign({}, { ttlMs: 5_000, now: clock.now }));
    clock.now += 6_000;
    await outcomes.until(1);
    assert.equal(outcomes.failed[0].failure.code, 'deadline');
    assert.match(
      outcomes.failed[0].failure.message,
      /approval expired while waiting in the outbox .* not sent/,
    );
    const back = d.resubscribed();
    await b.start();
    await back;
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(d.executions, []);
  });

  it('sends after a restart what the outbox held, with the keys it had', async function () {
    const b = await broker();
    const d = await device(b.url);
    const offline = new FakeLink();
    const first = await actuator(offline);
    const held = [
      await first.submit(sign({ params: { n: 1 } })),
      await first.submit(sign({ params: { n: 2 } })),
    ];
    await first.stop();

    const second = await actuator(await connection(b.url));
    await second.outcomes.until(2);
    assert.deepEqual(
      second.outcomes.acked.map((o) => o.command.idempotencyKey),
      held.map((c) => c.idempotencyKey),
    );
    assert.deepEqual(
      d.executions.map((e) => e.idempotencyKey),
      held.map((c) => c.idempotencyKey),
    );
  });

  it('over a real MQTT 5 broker, matches the ack by correlation data alone (mosquitto, where installed)', async function () {
    const mosquitto = await MosquittoBroker.start();
    if (!mosquitto) this.skip();
    cleanup.push(() => mosquitto.stop());
    const d = await device(mosquitto.url, { protocolVersion: 5, propertiesOnly: true });
    const link = new BrokerConnection({ url: mosquitto.url, protocolVersion: 5 });
    link.register('test');
    cleanup.push(() => link.deregister('test'));
    if (!link.ready) await once(link, 'ready');
    const { submit, outcomes } = await actuator(link);
    const command = await submit(sign());
    await outcomes.until(1);
    assert.equal(outcomes.failed.length, 0);
    assert.deepEqual(outcomes.acked[0].info.reply, { ok: true, result: { done: 'set_valve' } });
    assert.deepEqual(
      d.executions.map((e) => e.idempotencyKey),
      [command.idempotencyKey],
    );
  });

  it('with MQTT 5 puts the response topic and correlation data in properties and matches the ack by them', async function () {
    const link = new FakeLink();
    link.ready = true;
    const { submit, outcomes } = await actuator(link);
    const command = await submit(sign());
    const [sent] = link.published;
    assert.equal(sent.topic, 'plant/valve-1/cmd/set_valve');
    assert.deepEqual(sent.properties, {
      responseTopic: 'edge-llm/ack/test',
      correlationData: Buffer.from(command.idempotencyKey),
    });
    const envelope = JSON.parse(sent.payload);
    assert.equal(envelope.idempotencyKey, command.idempotencyKey);
    assert.equal(envelope.replyTo, 'edge-llm/ack/test');
    assert.deepEqual((envelope as SignedAction).action, command.signed.action);

    // An ack that carries the key only in its correlation data.
    link.emit('message', {
      topic: 'edge-llm/ack/test',
      payload: Buffer.from(JSON.stringify({ ok: true, result: 42 })),
      correlationData: Buffer.from(command.idempotencyKey),
    } satisfies BrokerMessage);
    await outcomes.until(1);
    assert.deepEqual(outcomes.acked[0].info.reply, { ok: true, result: 42 });
  });
});

/** A broker link under the test's control, for what needs no broker or an exact view of a send. */
class FakeLink extends EventEmitter implements CommandLink {
  ready = false;
  readonly protocolVersion = 5;
  readonly published: { topic: string; payload: string; properties?: PublishProperties }[] = [];
  async publish(topic: string, payload: string, properties?: PublishProperties): Promise<void> {
    this.published.push({ topic, payload, properties });
  }
  async subscribe(): Promise<void> {}
  async unsubscribe(): Promise<void> {}
}
