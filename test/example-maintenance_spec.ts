import * as assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Node, NodeStatus } from 'node-red';
import type { SinonSpy } from 'sinon';
import { PackagingLine, type VibrationReading } from '../examples/demo/simulators';
import { REPO_ROOT } from './support/models';
import { callsBy, collect, coreNode, initHelper, stopServer, until, type Msg } from './support/flow';

const helper = initHelper();
const EXAMPLE = path.join(REPO_ROOT, 'examples', '01 - Predictive maintenance.json');
const DETECTOR = 'Anomaly detector (rolling RMS, z-score)';
const SECOND = 1000;

/**
 * Example 01's anomaly detector, its own function node from the example file, in a real Node-RED,
 * fed by the demo's simulated packaging line on a simulated clock (one reading per asset a second).
 */
describe('example 01: the anomaly detector on the simulated line', function () {
  this.timeout(60_000);
  let line: PackagingLine;
  let detector: Node;
  let alarms: ReturnType<typeof collect>;
  let fed = 0;
  let clock = Date.parse('2026-01-05T06:00:00Z');

  beforeEach(async function () {
    const flow = JSON.parse(await readFile(EXAMPLE, 'utf8')) as Array<Record<string, unknown>>;
    const node = flow.find((n) => n.type === 'function' && n.name === DETECTOR);
    assert.ok(node, `${DETECTOR} is in the example`);
    await new Promise<void>((resolve) => helper.startServer(() => resolve()));
    await helper.load(coreNode('function/10-function.js'), [
      {
        id: node.id as string,
        type: 'function',
        name: DETECTOR,
        func: node.func,
        outputs: 1,
        wires: [['alarms']],
      },
      { id: 'alarms', type: 'helper' },
    ] as never);
    detector = helper.getNode(node.id as string);
    alarms = collect(helper.getNode('alarms'));
    line = new PackagingLine({ url: 'mqtt://unused' });
    fed = 0;
  });

  afterEach(async function () {
    await helper.unload();
    await stopServer();
  });

  /** `seconds` of the line's readings, each asset once a second, through the detector. */
  async function run(seconds: number): Promise<void> {
    for (let s = 0; s < seconds; s++) {
      clock += SECOND;
      for (const reading of line.readings(clock)) {
        detector.receive({ payload: reading as unknown as VibrationReading } as Msg);
        fed++;
      }
    }
    // Each reading judged sets the detector's status once: wait until all have been.
    await until(() => judged() === fed, 10_000, `${fed} readings judged`);
  }

  const statuses = (): NodeStatus[] =>
    callsBy(detector.status as unknown as SinonSpy, detector)
      .map((c) => c.args[0] as NodeStatus)
      .filter((st) => /^(pump|fan)-\d: /.test(String(st.text)));
  const judged = (): number => statuses().length;
  /** Readings judged alarming (red), whether or not the cooldown let them through as a message. */
  const alarming = (): string[] =>
    statuses()
      .filter((st) => st.fill === 'red')
      .map((st) => String(st.text).split(':')[0]);

  const alarmed = (): string[] => alarms.messages.map((m) => (m.anomaly as { asset: string }).asset);

  it('raises no alarm for 10 minutes after a line stop, once the healthy line restarts', async function () {
    await run(30); // the baseline of each asset, at full speed
    assert.deepEqual(alarming(), []);
    await line.run({ action: 'stop_line', device: 'line1', params: {} }, clock);
    await run(90); // stopped: readings are sensor noise
    await run(600); // repaired and back at full speed: healthy
    assert.equal(fed, 3 * 720);
    assert.deepEqual(alarming(), []);

    // The detector still works: a bearing fault now is an alarm on its asset.
    line.startFault({ asset: 'pump-2', note: 'grinding noise' }, clock);
    await run(3);
    await until(() => alarms.messages.length > 0, 5000, 'an alarm');
    assert.deepEqual([...new Set(alarmed())], ['pump-2']);
  });

  it('raises no alarm while an asset runs slowed down after reduce_speed, and none when it is back', async function () {
    await run(30);
    line.startFault({ asset: 'pump-1', note: 'grinding noise' }, clock);
    await run(2);
    await until(() => alarms.messages.length > 0, 5000, 'an alarm');
    await line.run({ action: 'reduce_speed', device: 'pump-1', params: { percent: 30 } }, clock);
    const before = alarming().length;
    await run(600);
    assert.deepEqual(alarming().slice(before), []);
  });
});
