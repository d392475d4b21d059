/**
 * Sends guardrail-approved actions to devices over MQTT and matches each device's ack to its
 * command.
 *
 * Every command is written to the on-disk outbox before anything is sent and leaves it only when
 * the device has acked it or it has failed, so neither a broker outage nor a restart loses one.
 * Commands go out one at a time, oldest first: a machine sees them in the order they were approved.
 * A retry re-sends the same envelope with the same idempotency key, so a device that executes each
 * key once cannot run a command twice however often it is delivered.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as mqtt from 'mqtt';
import type { PolicyTrust } from '../guardrail/trust';
import { removeTemps, writeAtomic } from '../util/files';
import { Outbox, OutboxFullError } from './outbox';
import {
  snapshotJson,
  verifySignedAction,
  type Action,
  type SignedAction,
  type VerifyResult,
} from './signing';

// ---------------------------------------------------------------------------------------------
// Wire format

/** What the device receives, as JSON, on the command topic. */
export interface CommandEnvelope {
  /** The device executes each key at most once and answers a repeat with its first reply. */
  idempotencyKey: string;
  /** Where to ack. With MQTT 5 the same topic is also in the response-topic property. */
  replyTo: string;
  /** Epoch ms after which the command must not be executed. */
  deadline: number;
  /** The action exactly as the guardrail signed it, and its signature, so a device may verify too. */
  action: Action;
  signature: SignedAction['signature'];
}

/**
 * What the device publishes on `replyTo`. With MQTT 5 it echoes the correlation data; with MQTT
 * 3.1.1 (no properties) it echoes `idempotencyKey` in the body instead.
 */
export interface DeviceAck {
  idempotencyKey?: string;
  ok: boolean;
  result?: unknown;
  error?: string;
}

// ---------------------------------------------------------------------------------------------
// Broker connection (owned by the edge-mqtt-broker config node)

export interface BrokerOptions {
  url: string;
  clientId?: string;
  username?: string;
  password?: string;
  /** 5 (default) sends the response topic and correlation data as MQTT 5 properties. */
  protocolVersion?: 4 | 5;
  keepalive?: number;
  reconnectPeriodMs?: number;
  connectTimeoutMs?: number;
  /** TLS options as mqtt.js takes them (ca, cert, key, rejectUnauthorized, servername...). */
  tls?: Record<string, unknown>;
}

export interface BrokerMessage {
  topic: string;
  payload: Buffer;
  correlationData?: Buffer;
}

export type PublishProperties = { responseTopic: string; correlationData: Buffer };

/** What an actuator needs from a broker connection; the tests may stand in for it. */
export interface CommandLink {
  readonly ready: boolean;
  readonly protocolVersion: 4 | 5;
  publish(topic: string, payload: string, properties?: PublishProperties): Promise<void>;
  /** Subscribed now if connected, and again after every reconnect. */
  subscribe(topic: string): Promise<void>;
  unsubscribe(topic: string): Promise<void>;
  on(event: 'ready' | 'offline', listener: () => void): this;
  on(event: 'message', listener: (message: BrokerMessage) => void): this;
  off(event: 'ready' | 'offline', listener: () => void): this;
  off(event: 'message', listener: (message: BrokerMessage) => void): this;
}

/**
 * One MQTT client shared by the nodes that use a broker. It connects when the first user registers
 * and ends when the last one leaves, as Node-RED's own MQTT broker node does.
 */
export class BrokerConnection extends EventEmitter implements CommandLink {
  readonly options: BrokerOptions;
  readonly protocolVersion: 4 | 5;
  private client: mqtt.MqttClient | undefined;
  private readonly users = new Set<string>();
  private readonly topics = new Set<string>();
  private isReady = false;
  lastError: Error | undefined;

  constructor(options: BrokerOptions) {
    super();
    this.options = options;
    this.protocolVersion = options.protocolVersion ?? 5;
  }

  /** Connected, and every reply topic is subscribed on this connection. */
  get ready(): boolean {
    return this.isReady;
  }

  get userCount(): number {
    return this.users.size;
  }

  register(userId: string): void {
    this.users.add(userId);
    if (this.users.size === 1 && !this.client) this.connect();
  }

  async deregister(userId: string): Promise<void> {
    this.users.delete(userId);
    if (this.users.size === 0) await this.end();
  }

  async publish(
    topic: string,
    payload: string,
    properties?: PublishProperties,
    opts: { retain?: boolean } = {},
  ): Promise<void> {
    if (!this.client || !this.isReady) throw new Error('not connected to the broker');
    await this.client.publishAsync(topic, payload, {
      qos: 1,
      ...(opts.retain ? { retain: true } : {}),
      ...(properties && this.protocolVersion === 5 ? { properties } : {}),
    });
  }

  async subscribe(topic: string): Promise<void> {
    this.topics.add(topic);
    if (this.client?.connected) await this.client.subscribeAsync(topic, { qos: 1 });
  }

  async unsubscribe(topic: string): Promise<void> {
    this.topics.delete(topic);
    if (this.client?.connected) await this.client.unsubscribeAsync(topic).catch(() => undefined);
  }

  /** Ends the connection; a later `register` opens a new one. */
  async end(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.markOffline();
    if (client) await client.endAsync(true);
  }

  private connect(): void {
    const o = this.options;
    const client = mqtt.connect(o.url, {
      clientId: o.clientId || `edge-llm-${randomUUID().slice(0, 8)}`,
      username: o.username || undefined,
      password: o.password || undefined,
      protocolVersion: this.protocolVersion,
      keepalive: o.keepalive ?? 60,
      reconnectPeriod: o.reconnectPeriodMs ?? 2000,
      connectTimeout: o.connectTimeoutMs ?? 10_000,
      clean: true,
      // Subscriptions are restored below, before the actuators are told the link is ready.
      resubscribe: false,
      queueQoSZero: false,
      ...o.tls,
    });
    this.client = client;
    client.on('connect', () => {
      // A command is one small packet that waits for an answer: Nagle's algorithm would hold it
      // back for the peer's delayed ACK (about 40 ms a hop on Linux).
      (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      void this.onConnect(client);
    });
    client.on('close', () => this.markOffline());
    client.on('error', (err) => {
      this.lastError = err;
      this.emit('connectionError', err);
    });
    client.on('message', (topic, payload, packet) => {
      const correlationData = packet.properties?.correlationData;
      this.emit('message', { topic, payload, correlationData } satisfies BrokerMessage);
    });
  }

  private async onConnect(client: mqtt.MqttClient): Promise<void> {
    try {
      if (this.topics.size > 0) await client.subscribeAsync([...this.topics], { qos: 1 });
    } catch (err) {
      this.lastError = err as Error;
      this.emit('connectionError', err);
      return;
    }
    if (client !== this.client || !client.connected) return;
    this.lastError = undefined;
    this.isReady = true;
    this.emit('ready');
  }

  private markOffline(): void {
    if (!this.isReady) return;
    this.isReady = false;
    this.emit('offline');
  }
}

// ---------------------------------------------------------------------------------------------
// Replay store

/**
 * Nonces of signatures already used, kept on disk until their signature expires, so a replayed
 * action is refused even after a restart.
 */
export class ReplayStore {
  readonly file: string;
  private readonly nonces = new Map<string, number>();
  private readonly now: () => number;
  private handle: fs.FileHandle | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private lines = 0;

  private constructor(file: string, now: () => number) {
    this.file = file;
    this.now = now;
  }

  static async open(options: { dir: string; name?: string; now?: () => number }): Promise<ReplayStore> {
    await fs.mkdir(options.dir, { recursive: true });
    const store = new ReplayStore(
      path.join(options.dir, options.name ?? 'nonces.jsonl'),
      options.now ?? Date.now,
    );
    let text = '';
    try {
      text = await fs.readFile(store.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const line of text.split('\n')) {
      try {
        const { n, e } = JSON.parse(line) as { n: string; e: number };
        if (typeof n === 'string' && typeof e === 'number') store.nonces.set(n, e);
      } catch {
        // A torn last line is an append that never completed; its action was never accepted.
      }
    }
    await removeTemps(store.file);
    await store.rewrite();
    return store;
  }

  get size(): number {
    return this.nonces.size;
  }

  /**
   * The `seen` callback of `verifySignedAction`: true if the nonce was already used, otherwise
   * records it. Await `flush()` before acting on the action, so the record is on disk first.
   */
  readonly seen = (nonce: string, expires: number): boolean => {
    const known = this.nonces.get(nonce);
    if (known !== undefined && known >= this.now()) return true;
    this.nonces.set(nonce, expires);
    const line = JSON.stringify({ n: nonce, e: expires }) + '\n';
    this.lines++;
    this.tail = this.tail.then(async () => {
      if (!this.handle) return;
      await this.handle.write(line);
      await this.handle.datasync();
      if (this.lines > 2 * this.nonces.size + 1000) await this.rewrite();
    });
    return false;
  };

  /** Resolves once every recorded nonce is on disk; rejects if writing failed. */
  async flush(): Promise<void> {
    const current = this.tail;
    this.tail = current.catch(() => undefined);
    await current;
  }

  async close(): Promise<void> {
    await this.tail.catch(() => undefined);
    await this.handle?.close();
    this.handle = undefined;
  }

  private async rewrite(): Promise<void> {
    const now = this.now();
    for (const [n, e] of this.nonces) if (e < now) this.nonces.delete(n);
    await this.handle?.close();
    await writeAtomic(this.file, [...this.nonces].map(([n, e]) => JSON.stringify({ n, e }) + '\n').join(''));
    this.handle = await fs.open(this.file, 'a');
    this.lines = this.nonces.size;
  }
}

// ---------------------------------------------------------------------------------------------
// Admission: signature and topic

export type RefusalCode = Extract<VerifyResult, { ok: false }>['code'] | 'bad_topic' | 'stale_policy';

export class CommandRefused extends Error {
  readonly code: RefusalCode;
  constructor(code: RefusalCode, message: string) {
    super(message);
    this.name = 'CommandRefused';
    this.code = code;
  }
}

const SEGMENT_FORBIDDEN = /[/+#]/;

/**
 * Fills `{{device}}`, `{{action}}`, `{{id}}` or any other top-level string field of the signed
 * action into the topic template. Only signed fields are used, so a miswired flow cannot steer a
 * command to another machine; a value that would add levels or wildcards is refused.
 */
export function renderTopic(template: string, action: Action): string {
  return template.replace(/\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g, (_m, field: string) => {
    const value = action[field];
    if (typeof value !== 'string' && typeof value !== 'number') {
      throw new CommandRefused(
        'bad_topic',
        `the topic template needs "${field}", which the signed action lacks`,
      );
    }
    const text = String(value);
    if (text === '' || SEGMENT_FORBIDDEN.test(text) || text.includes('\0')) {
      throw new CommandRefused(
        'bad_topic',
        `the action's "${field}" cannot be used in a topic: ${JSON.stringify(text)}`,
      );
    }
    return text;
  });
}

/** Checks that a topic template is usable before any action arrives. */
export function checkTopicTemplate(template: string): string | undefined {
  if (!template.trim()) return 'the topic template is empty';
  if (/[+#]/.test(template)) return 'the topic template must not contain MQTT wildcards';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Actuator

/** What the outbox holds for one command: everything needed to send it again after a restart. */
export interface Command {
  idempotencyKey: string;
  topic: string;
  signed: SignedAction;
  deadline: number;
  enqueuedAt: number;
  /** The `_msgid` of the message that carried it, so a command resent after a restart can be traced. */
  msgid?: string;
}

export type FailureCode =
  'deadline' | 'ack_timeout' | 'device_rejected' | 'outbox_full' | 'stopped' | 'stale_policy';

export interface Failure {
  code: FailureCode;
  message: string;
}

export interface AckInfo {
  reply: DeviceAck;
  attempts: number;
  latencyMs: number;
}

export interface ActuatorOptions {
  link: CommandLink;
  outbox: Outbox<Command>;
  replyTopic: string;
  /** How long to wait for the device's ack before sending again. */
  ackTimeoutMs: number;
  /** Re-sends after the first send when no ack came (same idempotency key). */
  retries: number;
  /** How long a command may wait, in the outbox and for its ack, before it fails. */
  deadlineMs: number;
  now?: () => number;
  /** How often to look for expired commands while the broker is unreachable. */
  sweepIntervalMs?: number;
  /**
   * Which guardrail policies are trusted now. A command not yet sent whose policy is no longer
   * trusted fails with `stale_policy`; while no guardrail has said which policy it holds, commands
   * wait. Without it every policy is trusted.
   */
  trust?: PolicyTrust;
}

export interface ActuatorEvents {
  acked: [command: Command, info: AckInfo];
  failed: [command: Command, failure: Failure];
  depth: [depth: number];
  /** The outbox could not be updated on disk; the command may be sent again after a restart. */
  problem: [error: Error];
}

interface InFlight {
  seq: number;
  command: Command;
  attempts: number;
  firstSentAt: number;
  timer?: NodeJS.Timeout;
}

export class Actuator extends EventEmitter<ActuatorEvents> {
  private readonly o: Required<Omit<ActuatorOptions, 'trust'>> & Pick<ActuatorOptions, 'trust'>;
  private trustTimer: NodeJS.Timeout | undefined;
  private inFlight: InFlight | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly onReady = () => this.pump();
  private readonly onOffline = () => this.pause();
  private readonly onMessage = (m: BrokerMessage) => this.handleMessage(m);

  constructor(options: ActuatorOptions) {
    super();
    this.o = { now: Date.now, sweepIntervalMs: 1000, ...options };
  }

  get depth(): number {
    return this.o.outbox.depth;
  }

  get waitingFor(): string | undefined {
    return this.inFlight?.command.idempotencyKey;
  }

  /** Starts listening for acks and sends what the outbox already holds (e.g. after a restart). */
  async start(): Promise<void> {
    const { link } = this.o;
    link.on('ready', this.onReady);
    link.on('offline', this.onOffline);
    link.on('message', this.onMessage);
    await link.subscribe(this.o.replyTopic);
    if (link.ready) this.pump();
    else this.pause();
  }

  /** Stops sending; what is left stays in the outbox for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    const { link } = this.o;
    link.off('ready', this.onReady);
    link.off('offline', this.onOffline);
    link.off('message', this.onMessage);
    this.clearTimers();
    this.inFlight = undefined;
    await link.unsubscribe(this.o.replyTopic).catch(() => undefined);
  }

  /**
   * Verifies a signed action and stores it as a command. Resolves once it is on disk (it will be
   * sent in turn); rejects with `CommandRefused` for a bad signature or topic, or with an
   * `OutboxFullError`.
   */
  async submit(
    signed: unknown,
    opts: {
      key: string | Buffer;
      replay: ReplayStore;
      topicTemplate: string;
      msgid?: string;
      trust?: PolicyTrust;
    },
    /**
     * Called once the command exists and before it can be sent: the broker may come up (and the
     * device ack) while the outbox append is still on its way to disk.
     */
    onAdmitted?: (command: Command) => void,
  ): Promise<Command> {
    // Checked first so that a full outbox does not use up the signature of an action it refuses.
    if (this.o.outbox.full) throw new OutboxFullError(this.o.outbox.capacity);
    const command = await admit(signed, {
      ...opts,
      trust: opts.trust ?? this.o.trust,
      deadlineMs: this.o.deadlineMs,
      now: this.o.now(),
    });
    onAdmitted?.(command);
    await this.o.outbox.append(command);
    this.emit('depth', this.depth);
    this.pump();
    return command;
  }

  /** The envelope a command is sent as. */
  envelope(command: Command): CommandEnvelope {
    return {
      idempotencyKey: command.idempotencyKey,
      replyTo: this.o.replyTopic,
      deadline: command.deadline,
      action: command.signed.action,
      signature: command.signed.signature,
    };
  }

  private pump(): void {
    if (this.o.link.ready) this.stopSweep();
    if (this.stopped || this.inFlight) {
      if (this.inFlight && !this.inFlight.timer && this.o.link.ready) this.send(this.inFlight);
      return;
    }
    const { outbox } = this.o;
    for (let head = outbox.peek(); head; head = outbox.peek()) {
      if (head.item.deadline <= this.o.now()) {
        this.settleFailed(head.seq, head.item, {
          code: 'deadline',
          message: deadlineMessage(head.item, this.o.now(), false),
        });
        continue;
      }
      if (!this.o.link.ready) break;
      // Checked again before the first send: the policy may have changed while it waited.
      const verdict = this.o.trust?.check(head.item.signed.signature.policyHash, this.o.now());
      if (verdict && !verdict.ok) {
        if (verdict.unknown) {
          this.waitForTrust();
          return;
        }
        this.settleFailed(head.seq, head.item, { code: 'stale_policy', message: verdict.message });
        continue;
      }
      this.inFlight = { seq: head.seq, command: head.item, attempts: 0, firstSentAt: this.o.now() };
      this.send(this.inFlight);
      return;
    }
    if (!this.o.link.ready) this.pause();
  }

  private send(flight: InFlight): void {
    flight.attempts++;
    const { command } = flight;
    const properties: PublishProperties = {
      responseTopic: this.o.replyTopic,
      correlationData: Buffer.from(command.idempotencyKey),
    };
    this.o.link.publish(command.topic, JSON.stringify(this.envelope(command)), properties).catch(() => {
      // Lost with the connection: the ack timer or the next 'ready' sends it again.
    });
    const wait = Math.max(0, Math.min(this.o.ackTimeoutMs, command.deadline - this.o.now()));
    flight.timer = setTimeout(() => this.onAckTimeout(flight), wait);
  }

  private onAckTimeout(flight: InFlight): void {
    if (this.inFlight !== flight) return;
    flight.timer = undefined;
    const now = this.o.now();
    if (flight.command.deadline <= now) {
      this.settleFailed(flight.seq, flight.command, {
        code: 'deadline',
        message: deadlineMessage(flight.command, now, true),
      });
    } else if (flight.attempts > this.o.retries) {
      this.settleFailed(flight.seq, flight.command, {
        code: 'ack_timeout',
        message: `no ack from the device after ${flight.attempts} sends, ${this.o.ackTimeoutMs} ms apart`,
      });
    } else if (this.o.link.ready) {
      this.send(flight);
      return;
    } else {
      return; // re-sent on 'ready'
    }
    this.pump();
  }

  private pause(): void {
    if (this.inFlight?.timer) {
      clearTimeout(this.inFlight.timer);
      this.inFlight.timer = undefined;
      // The outage is not the device's fault: the send on reconnect does not use up a retry.
      this.inFlight.attempts = Math.max(0, this.inFlight.attempts - 1);
    }
    if (this.stopped || this.sweepTimer || this.o.outbox.depth === 0) return;
    this.sweepTimer = setInterval(() => this.sweep(), this.o.sweepIntervalMs);
    this.sweepTimer.unref();
  }

  /** While offline, fail the commands whose deadline has passed rather than hold their messages. */
  private sweep(): void {
    const now = this.o.now();
    for (const { seq, item } of this.o.outbox.entries()) {
      if (item.deadline > now) continue;
      if (this.inFlight?.seq === seq) this.inFlight = undefined;
      this.settleFailed(seq, item, { code: 'deadline', message: deadlineMessage(item, now, false) });
    }
    if (this.o.outbox.depth === 0) this.stopSweep();
  }

  private stopSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  /** No guardrail has said which policy it holds yet (it may be starting): look again shortly. */
  private waitForTrust(): void {
    if (this.trustTimer || this.stopped) return;
    this.trustTimer = setTimeout(() => {
      this.trustTimer = undefined;
      this.sweep();
      this.pump();
    }, this.o.sweepIntervalMs);
    this.trustTimer.unref();
  }

  private clearTimers(): void {
    if (this.inFlight?.timer) clearTimeout(this.inFlight.timer);
    if (this.trustTimer) clearTimeout(this.trustTimer);
    this.trustTimer = undefined;
    this.stopSweep();
  }

  private handleMessage(message: BrokerMessage): void {
    if (message.topic !== this.o.replyTopic) return;
    let reply: DeviceAck;
    try {
      reply = JSON.parse(message.payload.toString('utf8')) as DeviceAck;
    } catch {
      return; // not an ack we can read; the retry will ask again
    }
    if (typeof reply !== 'object' || reply === null) return;
    const key = message.correlationData?.toString('utf8') ?? reply.idempotencyKey;
    const flight = this.inFlight;
    // A late ack for a command already settled is dropped: its outcome was already reported.
    if (!flight || key !== flight.command.idempotencyKey) return;
    if (flight.timer) clearTimeout(flight.timer);
    this.inFlight = undefined;
    if (reply.ok === true) {
      this.forget(flight.seq);
      this.emit('acked', flight.command, {
        reply,
        attempts: flight.attempts,
        latencyMs: this.o.now() - flight.firstSentAt,
      });
    } else {
      this.settleFailed(flight.seq, flight.command, {
        code: 'device_rejected',
        message: `the device refused the command: ${reply.error ?? 'no reason given'}`,
      });
    }
    this.pump();
  }

  /**
   * Drops a settled command from the outbox. A disk that refuses the write (full, failing) must
   * not become an unhandled rejection, which would end the whole Node-RED process: it is reported
   * as a 'problem', and the command, still on disk, is sent again after a restart, where the
   * device's idempotency key stops it running twice.
   */
  private forget(seq: number): void {
    this.o.outbox
      .remove(seq)
      .catch((err: unknown) => this.emit('problem', err instanceof Error ? err : new Error(String(err))))
      .finally(() => this.emit('depth', this.depth));
  }

  private settleFailed(seq: number, command: Command, failure: Failure): void {
    if (this.inFlight?.seq === seq) {
      if (this.inFlight.timer) clearTimeout(this.inFlight.timer);
      this.inFlight = undefined;
    }
    this.forget(seq);
    this.emit('failed', command, failure);
  }
}

function deadlineMessage(command: Command, now: number, sent: boolean): string {
  const waited = Math.round((now - command.enqueuedAt) / 1000);
  const what =
    command.deadline === command.signed.signature.expires
      ? "the guardrail's approval expired"
      : 'deadline passed';
  return sent
    ? `${what} before the device acked (after ${waited} s)`
    : `${what} while waiting in the outbox for the broker (after ${waited} s); not sent`;
}

/**
 * Checks a signed action and turns it into a command. The nonce is on disk before this resolves,
 * so the same signature is refused from then on, also after a restart.
 */
export async function admit(
  signed: unknown,
  opts: {
    key: string | Buffer;
    replay: ReplayStore;
    topicTemplate: string;
    deadlineMs: number;
    now: number;
    msgid?: string;
    trust?: PolicyTrust;
  },
): Promise<Command> {
  // The copy is what gets verified, stored and sent: nothing that still holds the message can
  // change the action between the check and the send.
  // A getter or Proxy is refused without being called: it could answer differently each time.
  const snap = snapshotJson(signed ?? null, { root: 'payload', maxDepth: 64, maxNodes: 100_000 });
  if (!snap.ok)
    throw new CommandRefused('malformed', `the signed action is not plain data: ${snap.problem.message}`);
  const copy = snap.value;
  const verdict = verifySignedAction(copy, { key: opts.key, now: opts.now, seen: opts.replay.seen });
  await opts.replay.flush();
  if (!verdict.ok) throw new CommandRefused(verdict.code, verdict.message);
  const verified = copy as SignedAction;
  const trusted = opts.trust?.check(verified.signature.policyHash, opts.now);
  if (trusted && !trusted.ok) throw new CommandRefused('stale_policy', trusted.message);
  const topic = renderTopic(opts.topicTemplate, verified.action);
  return {
    idempotencyKey: randomUUID(),
    topic,
    signed: { action: verified.action, signature: verified.signature },
    // An approval is for now, not for whenever the broker comes back: never sent after it expires.
    deadline: Math.min(opts.now + opts.deadlineMs, verified.signature.expires),
    enqueuedAt: opts.now,
    ...(opts.msgid ? { msgid: opts.msgid } : {}),
  };
}
