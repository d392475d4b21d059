import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Node } from 'node-red';
import * as mqtt from 'mqtt';
import type { SinonSpy } from 'sinon';
import { telemetryRecord, type TelemetryRecord } from '../lib/runtime';
import brokerNode from '../nodes/edge-mqtt-broker';
import { MosquittoBroker } from './support/broker';
import { callsBy, initHelper, stopServer, until } from './support/flow';
import { testModel, testModelsDir } from './support/models';

import runtimeNode = require('../nodes/llm-runtime');
import parseNode = require('../nodes/llm-parse');

const helper = initHelper();

type Spied = Node & { status: SinonSpy; error: SinonSpy; warn: SinonSpy; receive: (msg: object) => void };

const schema = {
  type: 'object',
  properties: { zone: { type: 'string', maxLength: 24 }, level: { type: 'integer', minimum: 0, maximum: 9 } },
  required: ['zone', 'level'],
  additionalProperties: false,
};

describe('llm-runtime telemetry over MQTT (real mosquitto, real model)', function () {
  this.timeout(90_000);
  let broker: MosquittoBroker | undefined;
  let stories: string;
  let client: mqtt.MqttClient | undefined;

  before(async function () {
    broker = await MosquittoBroker.start();
    if (!broker) {
      console.log('    (skipped: no mosquitto binary on this machine; install mosquitto to run these)');
      this.skip();
    }
    stories = await testModel('stories');
    process.env.EDGE_LLM_MODELS_DIR = testModelsDir();
  });
  after(async () => broker?.stop());
  beforeEach((done) => {
    helper.startServer(done);
  });
  afterEach(async () => {
    await client?.endAsync(true);
    client = undefined;
    await helper.unload();
    await stopServer();
  });

  /** Every telemetry payload on `topic`, raw, as the broker delivered it. */
  async function listen(topic: string): Promise<string[]> {
    const payloads: string[] = [];
    client = await mqtt.connectAsync(broker!.url, { protocolVersion: 5, reconnectPeriod: 0 });
    client.on('message', (t, payload) => {
      if (t === topic) payloads.push(payload.toString('utf8'));
    });
    await client.subscribeAsync(topic, { qos: 1 });
    return payloads;
  }

  it('publishes queue depth, tokens/s, latency, errors, memory and the model at the interval, and no prompt or answer', async function () {
    const topic = `site/gw-${randomUUID().slice(0, 8)}/llm/telemetry`;
    const payloads = await listen(topic);
    await helper.load([brokerNode, runtimeNode, parseNode], [
      { id: 'f1', type: 'tab' },
      { id: 'b1', type: 'edge-mqtt-broker', url: broker!.url, protocolVersion: '5', reconnectPeriod: '0.2' },
      {
        id: 'rt',
        type: 'llm-runtime',
        name: 'line 3',
        model: stories,
        sequences: '1',
        contextSize: '1024',
        telemetryBroker: 'b1',
        telemetryTopic: topic,
        telemetryInterval: '1',
      },
      {
        id: 'p1',
        type: 'llm-parse',
        z: 'f1',
        runtime: 'rt',
        schema: JSON.stringify(schema),
        maxTokens: '48',
        retries: '0',
        wires: [['out'], ['out']],
      },
      { id: 'out', type: 'helper', z: 'f1' },
    ] as never);
    const p1 = helper.getNode('p1') as Spied;
    await until(() => p1.status.args.some(([s]) => s.text?.endsWith('status.ready')), 30_000, 'ready');

    // A prompt and a session key that nothing but the request carries.
    const marker = `PROMPT-MARKER-${randomUUID()}`;
    const answered = new Promise<Record<string, unknown>>((resolve) =>
      helper.getNode('out').once('input', resolve),
    );
    p1.receive({ payload: `Zone ${marker} is at level 3`, topic: marker });
    const msg = await answered;
    const answerStrings = Object.values((msg.payload ?? {}) as Record<string, unknown>)
      .concat(Object.values((msg.rejected ?? {}) as Record<string, unknown>))
      .filter((v): v is string => typeof v === 'string' && v.length >= 6);

    // Records after the answer show it; wait for two of them (interval 1 s).
    const counted = (): TelemetryRecord[] =>
      payloads
        .map((p) => JSON.parse(p) as TelemetryRecord)
        .filter((r) => r.requests + r.errors + r.rejected >= 1);
    await until(() => counted().length >= 2, 30_000, 'two telemetry records after the request');

    const record = counted().at(-1)!;
    assert.equal(record.runtime.id, 'rt');
    assert.equal(record.runtime.name, 'line 3');
    assert.equal(record.backend, 'child');
    assert.equal(record.state, 'ready');
    assert.equal(record.model.sha256, '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d');
    assert.match(record.model.source, /stories260K\.gguf$/);
    assert.deepEqual(Object.keys(record.queue).sort(), ['active', 'limit', 'queued', 'sequences']);
    assert.equal(record.queue.sequences, 1);
    assert.ok(record.tokensIn > 0 && record.tokensOut > 0, 'token counts');
    assert.ok(record.tokensPerSecond > 0, 'tokens/s');
    assert.ok(
      record.latencyMs.p50 > 0 && record.latencyMs.p95 >= record.latencyMs.p50,
      'latency percentiles',
    );
    assert.ok(record.ttftMs.p95 >= record.ttftMs.p50);
    assert.equal(typeof record.errors, 'number');
    assert.ok(record.memory.nodeRedRss > 10e6, 'Node-RED memory');
    assert.ok((record.memory.runtimeRss ?? 0) > 10e6, 'runtime child memory');
    assert.ok(Date.parse(record.ts) > Date.now() - 60_000);

    assert.ok(payloads.length >= 2);
    for (const p of payloads) {
      assert.ok(!p.includes(marker), `a telemetry payload holds the prompt's marker: ${p}`);
      assert.ok(!p.includes('PROMPT-MARKER'), 'no part of the marker');
      for (const s of answerStrings) assert.ok(!p.includes(s), `a telemetry payload holds the answer "${s}"`);
    }
  });

  it('warns while its broker is away, and the telemetry of another runtime flows on', async function () {
    const topic = `site/gw-${randomUUID().slice(0, 8)}/llm/telemetry`;
    const payloads = await listen(topic);
    await helper.load([brokerNode, runtimeNode], [
      {
        id: 'b1',
        type: 'edge-mqtt-broker',
        url: 'mqtt://127.0.0.1:1',
        protocolVersion: '5',
        reconnectPeriod: '0.2',
      },
      { id: 'b2', type: 'edge-mqtt-broker', url: broker!.url, protocolVersion: '5', reconnectPeriod: '0.2' },
      {
        id: 'away',
        type: 'llm-runtime',
        model: stories,
        isolation: 'in-process',
        telemetryBroker: 'b1',
        telemetryTopic: topic,
        telemetryInterval: '1',
      },
      {
        id: 'here',
        type: 'llm-runtime',
        model: stories,
        isolation: 'in-process',
        telemetryBroker: 'b2',
        telemetryTopic: topic,
        telemetryInterval: '1',
      },
    ] as never);
    const away = helper.getNode('away') as Spied;
    await until(() => callsBy(away.warn, away).length >= 1, 20_000, 'a warning for the unreachable broker');
    await until(() => payloads.length >= 3, 20_000, 'records from the runtime whose broker is up');
    const warnings = callsBy(away.warn, away).map((c) => String(c.args[0]));
    assert.match(warnings[0], /telemetry-failed/);
    assert.equal(new Set(warnings).size, warnings.length, 'each reason is warned once');
    const records = payloads.map((p) => JSON.parse(p) as TelemetryRecord);
    assert.ok(records.every((r) => r.runtime.id === 'here'));
    assert.ok(records.every((r) => r.backend === 'in-process' && r.memory.runtimeRss === undefined));
  });

  it('builds a record field by field: an error message or any other text on the metrics never reaches it', function () {
    const marker = `SECRET-${randomUUID()}`;
    const record = telemetryRecord({
      runtime: { id: 'rt', name: 'n' },
      backend: 'server',
      state: 'ready',
      source: 'https://user:pw@models.example/x.gguf',
      metrics: {
        queued: 1,
        active: 2,
        sequences: 4,
        requests: 3,
        errors: 1,
        rejected: 0,
        tokensIn: 10,
        tokensOut: 20,
        tokensPerSecond: 5,
        ttftMsP50: 1,
        ttftMsP95: 2,
        latencyMsP50: 3,
        latencyMsP95: 4,
        batches: 1,
        lastError: `The output is not valid JSON: Unexpected token "${marker}"`,
        extra: marker,
      } as never,
    });
    const text = JSON.stringify(record);
    assert.ok(!text.includes(marker));
    assert.ok(!text.includes('pw@'), 'credentials in a URL are redacted');
    assert.equal(record.queue.active, 2);
  });
});
