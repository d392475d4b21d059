import { EventEmitter, once } from 'node:events';
import * as mqtt from 'mqtt';
import type { CommandEnvelope, DeviceAck } from '../../lib/device/actuator';

export interface Execution {
  idempotencyKey: string;
  topic: string;
  action: CommandEnvelope['action'];
}

export interface DeviceOptions {
  url: string;
  /** Topic filter for commands. */
  topic: string;
  protocolVersion?: 4 | 5;
  /** Ignore this many deliveries entirely (as if lost on the way). */
  loseDeliveries?: number;
  /** Execute but lose the ack of this many deliveries (the sender must retry, not re-execute). */
  loseAcks?: number;
  /** Never ack (executes, then stays silent). */
  silent?: boolean;
  /**
   * MQTT 5 only: answer on the response-topic property with the correlation data alone (no key in
   * the body), and ignore a command that lacks either property.
   */
  propertiesOnly?: boolean;
  /** A reason to refuse an action, or undefined to run it. */
  refuse?: (action: CommandEnvelope['action']) => string | undefined;
}

/**
 * A simulated machine: runs each idempotency key at most once, records what it ran, and acks on the
 * response topic with the correlation data (MQTT 5) or the key in the body (MQTT 3.1.1). A repeat
 * of a key it already ran gets the first reply again.
 */
export class SimulatedDevice {
  readonly executions: Execution[] = [];
  /** Every delivery, repeats included. */
  readonly deliveries: string[] = [];
  private readonly replies = new Map<string, DeviceAck>();
  private client: mqtt.MqttClient | undefined;
  private readonly options: DeviceOptions;
  private readonly events = new EventEmitter();
  private lose: number;
  private loseAcks: number;

  constructor(options: DeviceOptions) {
    this.options = options;
    this.lose = options.loseDeliveries ?? 0;
    this.loseAcks = options.loseAcks ?? 0;
  }

  static async connect(options: DeviceOptions): Promise<SimulatedDevice> {
    const device = new SimulatedDevice(options);
    await device.connect();
    return device;
  }

  /** Resolves once subscribed; after a broker restart it resubscribes on its own. */
  async connect(): Promise<void> {
    const client = mqtt.connect(this.options.url, {
      protocolVersion: this.options.protocolVersion ?? 4,
      reconnectPeriod: 100,
      clean: true,
    });
    this.client = client;
    client.on('message', (topic, payload, packet) => this.onCommand(topic, payload, packet));
    client.on('connect', () => {
      (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      client.subscribe(this.options.topic, { qos: 1 }, () => this.events.emit('subscribed'));
    });
    await this.resubscribed();
  }

  /** Resolves the next time the device has subscribed (e.g. after a broker restart). */
  async resubscribed(): Promise<void> {
    await once(this.events, 'subscribed');
  }

  async close(): Promise<void> {
    await this.client?.endAsync(true);
    this.client = undefined;
  }

  private onCommand(topic: string, payload: Buffer, packet: mqtt.IPublishPacket): void {
    const envelope = JSON.parse(payload.toString('utf8')) as CommandEnvelope;
    const key = envelope.idempotencyKey;
    if (typeof key !== 'string' || !envelope.action) return; // not a command (an ack, say)
    this.deliveries.push(key);
    if (this.lose > 0) {
      this.lose--;
      return;
    }
    let reply = this.replies.get(key);
    if (!reply) {
      const refusal =
        Date.now() > envelope.deadline ? 'deadline passed' : this.options.refuse?.(envelope.action);
      if (refusal) {
        reply = { idempotencyKey: key, ok: false, error: refusal };
      } else {
        this.executions.push({ idempotencyKey: key, topic, action: envelope.action });
        reply = { idempotencyKey: key, ok: true, result: { done: envelope.action.action } };
      }
      this.replies.set(key, reply);
    }
    if (this.options.silent) return;
    if (this.loseAcks > 0) {
      this.loseAcks--;
      return;
    }
    const correlationData = packet.properties?.correlationData;
    if (this.options.propertiesOnly) {
      const responseTopic = packet.properties?.responseTopic;
      if (!responseTopic || !correlationData) return;
      const body = { ...reply, idempotencyKey: undefined };
      this.client?.publish(responseTopic, JSON.stringify(body), { qos: 1, properties: { correlationData } });
      return;
    }
    const responseTopic = packet.properties?.responseTopic ?? envelope.replyTo;
    this.client?.publish(responseTopic, JSON.stringify(reply), {
      qos: 1,
      ...(correlationData ? { properties: { correlationData } } : {}),
    });
  }
}
