/**
 * The machines the example flows talk to, simulated over MQTT: vibration sensors and the machines
 * of a packaging line (example 01), and an inspection robot in a valve gallery (example 02). They
 * are part of the demo, not of the nodes: a real gateway has real devices on these topics.
 *
 * Devices answer commands the way actuator-out expects from an MQTT 3.1.1 device: each idempotency
 * key runs at most once, a repeat gets the first reply again, and the ack goes to `replyTo` with
 * the key in the body.
 */
import * as mqtt from 'mqtt';
import type { CommandEnvelope, DeviceAck } from '../../lib/device/actuator';

export interface SimulatorOptions {
  url: string;
  /** Real milliseconds per simulated minute of robot work (default 1000: a 6 m leg takes 4 s). */
  msPerMinute?: number;
  /** How often each vibration sensor publishes a reading (default 1000 ms). */
  sensorIntervalMs?: number;
  /** Start a bearing fault on its own every so often (ms; default 0: only when asked). */
  autoFaultEveryMs?: number;
  log?: (line: string) => void;
}

type Action = CommandEnvelope['action'];
type Outcome = { ok: true; result: unknown } | { ok: false; error: string };

/** One MQTT client (protocol 3.1.1, which the demo's aedes broker speaks) and the ack protocol. */
class MqttDevice {
  protected client: mqtt.MqttClient | undefined;
  private readonly replies = new Map<string, DeviceAck>();

  constructor(
    protected readonly options: SimulatorOptions,
    private readonly clientId: string,
  ) {}

  protected log(line: string): void {
    this.options.log?.(line);
  }

  protected async connect(
    topics: string[],
    onMessage: (topic: string, body: unknown) => void,
  ): Promise<void> {
    const client = mqtt.connect(this.options.url, {
      protocolVersion: 4,
      clientId: `${this.clientId}-${process.pid}`,
      reconnectPeriod: 500,
      clean: true,
    });
    this.client = client;
    client.on('message', (topic, payload) => {
      let body: unknown;
      try {
        body = JSON.parse(payload.toString('utf8'));
      } catch {
        return;
      }
      onMessage(topic, body);
    });
    const subscribed = new Promise<void>((resolve) =>
      client.on('connect', () => client.subscribe(topics, { qos: 1 }, () => resolve())),
    );
    await subscribed;
  }

  protected publish(topic: string, body: unknown, options: mqtt.IClientPublishOptions = {}): void {
    this.client?.publish(topic, JSON.stringify(body), options);
  }

  /** Runs a command once per idempotency key and acks it; a late or repeated command is not run. */
  protected async answer(envelope: CommandEnvelope, run: (a: Action) => Promise<Outcome>): Promise<void> {
    const key = envelope.idempotencyKey;
    if (typeof key !== 'string' || typeof envelope.replyTo !== 'string' || !envelope.action) return;
    let reply = this.replies.get(key);
    if (!reply) {
      let outcome: Outcome;
      if (Date.now() > envelope.deadline) outcome = { ok: false, error: 'deadline passed' };
      else {
        // Claim the key before running, so a retry that arrives meanwhile is not run twice.
        this.replies.set(key, { idempotencyKey: key, ok: false, error: 'still running' });
        outcome = await run(envelope.action);
      }
      reply = { idempotencyKey: key, ...outcome };
      this.replies.set(key, reply);
    } else if (reply.error === 'still running') return;
    this.publish(envelope.replyTo, reply, { qos: 1 });
  }

  async close(): Promise<void> {
    await this.client?.endAsync(true);
    this.client = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Example 01: a packaging line with vibration sensors, and machines that take commands
// ---------------------------------------------------------------------------------------------

export interface VibrationReading {
  asset: string;
  line: string;
  ts: number;
  speed_pct: number;
  /** Vibration velocity, mm/s. */
  samples: number[];
  note?: string;
}

interface Asset {
  speedPct: number;
  fault?: { until: number; note: string };
  /** When a slowed or stopped asset is back at full speed (the repair done). */
  restoreAt?: number;
}

export const LINE = 'line1';
export const ASSETS = ['pump-1', 'pump-2', 'fan-3'] as const;
/** RMS vibration velocity of a healthy asset at full speed, mm/s. */
const HEALTHY_RMS = 2;
const FAULT_FACTOR = 4;
const FAULT_MS = 45_000;
const REPAIR_MS = 90_000;
const SAMPLES = 64;

/**
 * Publishes `plant/line1/<asset>/vibration` ({asset, line, ts, speed_pct, samples: mm/s, note?}) for
 * each asset; starts a bearing fault on `plant/sim/fault` ({asset, note}); runs `reduce_speed`,
 * `schedule_inspection` and `stop_line` sent to `plant/machines/<device>/commands`.
 */
export class PackagingLine extends MqttDevice {
  readonly assets = new Map<string, Asset>(ASSETS.map((a) => [a, { speedPct: 100 }]));
  /** Every command run, in order, for whoever watches (the tests). */
  readonly executed: Action[] = [];
  private timers: NodeJS.Timeout[] = [];
  private faults = 0;

  constructor(options: SimulatorOptions) {
    super(options, 'demo-line');
  }

  static async start(options: SimulatorOptions): Promise<PackagingLine> {
    const line = new PackagingLine(options);
    await line.connect(['plant/sim/fault', 'plant/machines/+/commands'], (topic, body) => {
      if (topic === 'plant/sim/fault') line.startFault(body as { asset?: string; note?: string });
      else void line.answer(body as CommandEnvelope, (a) => line.run(a));
    });
    line.timers.push(setInterval(() => line.publishReadings(), options.sensorIntervalMs ?? 1000));
    if (options.autoFaultEveryMs) {
      line.timers.push(
        setInterval(() => {
          const asset = ASSETS[line.faults % ASSETS.length];
          line.startFault({
            asset,
            note: 'Operator Maria Keller reports a grinding noise at the drive end.',
          });
        }, options.autoFaultEveryMs),
      );
    }
    return line;
  }

  startFault({ asset, note }: { asset?: string; note?: string }, now = Date.now()): void {
    const state = asset ? this.assets.get(asset) : undefined;
    if (!asset || !state) return;
    this.faults++;
    state.fault = { until: now + FAULT_MS, note: String(note ?? '').slice(0, 300) };
    this.log(`line: bearing fault on ${asset} (vibration x${FAULT_FACTOR} for ${FAULT_MS / 1000} s)`);
  }

  private publishReadings(): void {
    for (const reading of this.readings()) {
      this.publish(`plant/${LINE}/${reading.asset}/vibration`, reading);
    }
  }

  /** One reading of each asset at time `now`: what its sensor publishes (tests read it directly). */
  readings(now = Date.now()): VibrationReading[] {
    const readings: VibrationReading[] = [];
    for (const [asset, state] of this.assets) {
      if (state.fault && state.fault.until < now) state.fault = undefined;
      if (state.restoreAt && state.restoreAt < now) {
        state.speedPct = 100;
        state.restoreAt = undefined;
        this.log(`line: ${asset} repaired, back at full speed`);
      }
      // Vibration velocity grows with the square of speed; a damaged bearing multiplies it.
      const rms = HEALTHY_RMS * (state.speedPct / 100) ** 2 * (state.fault ? FAULT_FACTOR : 1);
      const phase = Math.random() * 2 * Math.PI;
      const samples = Array.from({ length: SAMPLES }, (_, i) => {
        const wave = rms * Math.SQRT2 * Math.sin(phase + (2 * Math.PI * i) / 8);
        return Math.round((wave + (Math.random() - 0.5) * 0.1 * HEALTHY_RMS) * 1000) / 1000;
      });
      readings.push({
        asset,
        line: LINE,
        ts: now,
        speed_pct: state.speedPct,
        samples,
        ...(state.fault?.note ? { note: state.fault.note } : {}),
      });
    }
    return readings;
  }

  /** Runs a command as the machine would, at time `now` (tests call it directly). */
  async run(action: Action, now = Date.now()): Promise<Outcome> {
    const params = (action.params ?? {}) as Record<string, unknown>;
    const device = action.device ?? '';
    const asset = this.assets.get(device);
    let outcome: Outcome;
    if (action.action === 'reduce_speed' && asset && typeof params.percent === 'number') {
      asset.speedPct = Math.max(0, asset.speedPct - params.percent);
      // Less load on the bearing: the fault's vibration is gone until the repair.
      asset.fault = undefined;
      asset.restoreAt = now + REPAIR_MS;
      outcome = { ok: true, result: { device, speed_pct: asset.speedPct } };
    } else if (action.action === 'schedule_inspection' && asset && typeof params.within_hours === 'number') {
      const at = new Date(now + params.within_hours * 3600_000).toISOString();
      outcome = { ok: true, result: { device, inspection_at: at } };
    } else if (action.action === 'stop_line' && device === LINE) {
      for (const a of this.assets.values()) {
        a.speedPct = 0;
        a.fault = undefined;
        a.restoreAt = now + REPAIR_MS;
      }
      outcome = { ok: true, result: { device, stopped: true } };
    } else {
      outcome = { ok: false, error: `cannot run ${action.action} on ${device || 'no device'}` };
    }
    if (outcome.ok) this.executed.push(action);
    this.log(`line: ${action.action} on ${device}: ${outcome.ok ? 'done' : outcome.error}`);
    return outcome;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Example 02: an inspection robot in a valve gallery
// ---------------------------------------------------------------------------------------------

export const ROBOT = 'robot-1';
/** Metres along the gallery. */
const ZONE_POSITION: Record<string, number> = { dock: 0, A: 6, B: 12, C: 18, D: 24 };
const NORMAL_TEMPERATURE: Record<string, number> = { dock: 24, A: 46, B: 52, C: 58, D: 49 };
const SPEED_M_PER_MIN = 1.5;
const HOT_LIMIT = 80;
/** After the first command of a mission, a steam leak heats zone C. */
const LEAK_AFTER_COMMANDS = 1;
const LEAK_ZONE = 'C';
const LEAK_TEMPERATURE = 86;
const TELEMETRY_MS = 2000;

/**
 * Publishes `robots/robot-1/telemetry` (retained: zone, battery used, zone temperatures) and runs
 * the default llm-plan catalogue (`move_to`, `read_sensor`, `capture_image`, `set_valve`, `report`)
 * sent to `robots/robot-1/commands`, taking simulated time. It refuses to drive into a zone above
 * 80 °C (a device keeps its own protection). `robots/robot-1/reset` docks and recharges it and
 * ends the leak, for the next mission.
 */
export class InspectionRobot extends MqttDevice {
  zone = 'dock';
  batteryUsedMin = 0;
  temperatures: Record<string, number> = { ...NORMAL_TEMPERATURE };
  readonly valves: Record<string, number> = {};
  readonly executed: Action[] = [];
  private commands = 0;
  private images = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: SimulatorOptions) {
    super(options, 'demo-robot');
  }

  static async start(options: SimulatorOptions): Promise<InspectionRobot> {
    const robot = new InspectionRobot(options);
    await robot.connect([`robots/${ROBOT}/commands`, `robots/${ROBOT}/reset`], (topic, body) => {
      if (topic.endsWith('/reset')) robot.reset();
      else void robot.answer(body as CommandEnvelope, (a) => robot.run(a));
    });
    robot.publishTelemetry();
    robot.timer = setInterval(() => robot.publishTelemetry(), TELEMETRY_MS);
    return robot;
  }

  reset(): void {
    this.zone = 'dock';
    this.batteryUsedMin = 0;
    this.temperatures = { ...NORMAL_TEMPERATURE };
    this.commands = 0;
    this.log('robot: docked, battery full, gallery at normal temperatures');
    this.publishTelemetry();
  }

  private telemetry() {
    return {
      robot: ROBOT,
      zone: this.zone,
      battery_used_min: Math.round(this.batteryUsedMin * 10) / 10,
      zones: Object.fromEntries(
        Object.entries(this.temperatures).map(([z, t]) => [z, { temperature: t }]),
      ) as Record<string, { temperature: number }>,
      ts: Date.now(),
    };
  }

  private publishTelemetry(): void {
    this.publish(`robots/${ROBOT}/telemetry`, this.telemetry(), { retain: true, qos: 1 });
  }

  /** Spends simulated minutes of work and battery. */
  private async work(minutes: number): Promise<void> {
    this.batteryUsedMin += minutes;
    await new Promise((r) => setTimeout(r, minutes * (this.options.msPerMinute ?? 1000)));
  }

  private async run(action: Action): Promise<Outcome> {
    if (action.device !== undefined && action.device !== ROBOT) {
      return { ok: false, error: `this is ${ROBOT}, not ${action.device}` };
    }
    const p = (action.params ?? {}) as Record<string, unknown>;
    let extra: Record<string, unknown> = {};
    let error: string | undefined;
    switch (action.action) {
      case 'move_to': {
        const zone = String(p.zone);
        if (!(zone in ZONE_POSITION)) error = `no zone ${zone}`;
        else if (this.temperatures[zone] > HOT_LIMIT) error = `zone ${zone} is ${this.temperatures[zone]} °C`;
        else {
          await this.work(Math.abs(ZONE_POSITION[zone] - ZONE_POSITION[this.zone]) / SPEED_M_PER_MIN);
          this.zone = zone;
        }
        break;
      }
      case 'read_sensor': {
        await this.work(0.5);
        const sensor = String(p.sensor);
        const value =
          sensor === 'temperature'
            ? this.temperatures[this.zone]
            : sensor === 'pressure'
              ? 4.2
              : sensor === 'vibration'
                ? 1.1
                : 0;
        extra = { reading: { sensor, zone: this.zone, value } };
        break;
      }
      case 'capture_image':
        await this.work(0.5);
        extra = { image: `${this.zone}-${++this.images}.jpg` };
        break;
      case 'set_valve':
        await this.work(1);
        this.valves[String(p.id)] = Number(p.position);
        break;
      case 'report':
        await this.work(0.1);
        break;
      default:
        error = `unknown action ${action.action}`;
    }
    if (++this.commands === LEAK_AFTER_COMMANDS) {
      this.temperatures[LEAK_ZONE] = LEAK_TEMPERATURE;
      this.log(`robot: steam leak, zone ${LEAK_ZONE} is now ${LEAK_TEMPERATURE} °C`);
    }
    this.publishTelemetry();
    const where = `${action.action} ${JSON.stringify(p)}`;
    if (error) {
      this.log(`robot: refused ${where}: ${error}`);
      return { ok: false, error };
    }
    this.executed.push(action);
    this.log(
      `robot: ${where} done, in zone ${this.zone}, battery used ${this.batteryUsedMin.toFixed(1)} min`,
    );
    return { ok: true, result: { ...this.telemetry(), ...extra } };
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.close();
  }
}

/** Every simulator of the demo, started together and stopped together. */
export class Simulators {
  private constructor(
    readonly line: PackagingLine,
    readonly robot: InspectionRobot,
  ) {}

  static async start(options: SimulatorOptions): Promise<Simulators> {
    const [line, robot] = await Promise.all([PackagingLine.start(options), InspectionRobot.start(options)]);
    return new Simulators(line, robot);
  }

  async stop(): Promise<void> {
    await Promise.all([this.line.stop(), this.robot.stop()]);
  }
}
