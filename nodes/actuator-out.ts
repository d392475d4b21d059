import * as path from 'node:path';
import { userDir as userDirOf } from '../lib/util/user-dir';
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow, NodeStatus } from 'node-red';
import {
  Actuator,
  CommandRefused,
  ReplayStore,
  admit,
  checkTopicTemplate,
  type AckInfo,
  type Command,
  type Failure,
} from '../lib/device/actuator';
import { type PolicyTrust, fixedTrust, parsePolicyHashes, trustPolicy } from '../lib/guardrail/trust';
import { Outbox, OutboxFullError } from '../lib/device/outbox';
import { MIN_SIGNING_KEY_LENGTH } from '../lib/device/signing';
import { formNumber } from './form';
import { StatusThrottle } from './status';
import type { GuardrailNode } from './guardrail';
import type { EdgeMqttBrokerNode } from './edge-mqtt-broker';
import { defaultSessionKey, type KvSessionStoreNode } from './kv-session-store';

const NS = 'node-red-contrib-edge-llm/actuator-out:actuator-out';
const CLOSE_BUDGET_MS = 10_000;

export interface ActuatorOutNodeDef extends NodeDef {
  broker: string;
  topic: string;
  ackTimeout: string;
  retries: string;
  deadline: string;
  outboxSize: string;
  outboxDir: string;
  dryRun: boolean;
  /** Blank: the policies of the running guardrail nodes with the same key; else fixed policy hashes. */
  trustedPolicies?: string;
  /** Seconds a guardrail's previous policy stays trusted after it changed (default 0). */
  policyGrace?: string;
  /** Optional kv-session-store: an outcome moves the message's mission Execute → Monitor. */
  sessions?: string;
}

export interface ActuatorOutCredentials {
  signingKey?: string;
}

interface Settings {
  topic: string;
  ackTimeoutMs: number;
  retries: number;
  deadlineMs: number;
  outboxSize: number;
  dir: string;
  trustedPolicies: string[] | undefined;
  policyGraceMs: number;
}

type Send = (msg: NodeMessage | (NodeMessage | null)[]) => void;
type Done = (err?: Error) => void;

/** What output 1 and 2 carry besides the payload: which command it was and how it went. */
function commandInfo(command: Command, info?: AckInfo) {
  return {
    idempotencyKey: command.idempotencyKey,
    topic: command.topic,
    action: command.signed.action,
    deadline: command.deadline,
    ...(info ? { attempts: info.attempts, latencyMs: info.latencyMs } : {}),
  };
}

export default function (RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>): string => RED._(`${NS}.${key}`, params);

  function parseSettings(node: Node, def: ActuatorOutNodeDef): Settings {
    const number = (value: string, fallback: number, name: string, min: number): number =>
      formNumber(value, fallback, { min }, (raw) => t('errors.bad-number', { name, value: raw }));
    const topic = (def.topic ?? '').trim();
    const topicProblem = checkTopicTemplate(topic);
    if (topicProblem) throw new Error(t('errors.bad-topic', { problem: topicProblem }));
    const retries = number(def.retries, 2, 'retries', 0);
    const outboxSize = number(def.outboxSize, 1000, 'outboxSize', 1);
    if (!Number.isInteger(retries) || !Number.isInteger(outboxSize)) {
      throw new Error(
        t('errors.bad-number', { name: 'retries/outboxSize', value: `${retries}/${outboxSize}` }),
      );
    }
    const userDir = userDirOf(RED.settings);
    const hashes = def.trustedPolicies?.trim() ? parsePolicyHashes(def.trustedPolicies) : undefined;
    if (hashes && 'error' in hashes) throw new Error(t('errors.bad-policies', { problem: hashes.error }));
    return {
      trustedPolicies: hashes,
      policyGraceMs: Math.round(number(def.policyGrace ?? '', 0, 'policyGrace', 0) * 1000),
      topic,
      ackTimeoutMs: Math.round(number(def.ackTimeout, 5, 'ackTimeout', 0.01) * 1000),
      retries,
      deadlineMs: Math.round(number(def.deadline, 60, 'deadline', 0.01) * 1000),
      outboxSize,
      // A relative folder is under the user directory, like the guardrail's policy file and audit log.
      dir: path.resolve(userDir, def.outboxDir?.trim() || path.join('edge-llm', 'actuator-out', node.id)),
    };
  }

  function ActuatorOut(this: Node<ActuatorOutCredentials>, def: ActuatorOutNodeDef): void {
    RED.nodes.createNode(this, def);
    const dryRun = def.dryRun === true;
    const pending = new Map<string, { msg: NodeMessageInFlow; send: Send; done: Done }>();
    let actuator: Actuator | undefined;
    let outbox: Outbox<Command> | undefined;
    let replay: ReplayStore | undefined;
    let broker: EdgeMqttBrokerNode | undefined;
    let lastError: string | undefined;
    let closing = false;

    // ---- status: connection, outbox depth, last error ----
    const currentStatus = (): NodeStatus => {
      const suffix = lastError ? ` · ${t('status.last-error', { code: lastError })}` : '';
      if (dryRun) return { fill: 'grey', shape: 'dot', text: t('status.dry-run') + suffix };
      if (!actuator) return { fill: 'yellow', shape: 'ring', text: t('status.starting') };
      const depth = actuator.depth;
      return broker?.connection?.ready
        ? { fill: 'green', shape: 'dot', text: t('status.connected', { depth }) + suffix }
        : { fill: 'red', shape: 'ring', text: t('status.disconnected', { depth }) + suffix };
    };
    // The depth changes with every command: a few status updates a second are enough.
    const throttle = new StatusThrottle(() => this.status(currentStatus()), 100);
    const showStatus = (): void => throttle.soon();

    // ---- configuration ----
    let settings: Settings | undefined;
    let configError: string | undefined;
    const key = this.credentials?.signingKey;
    try {
      settings = parseSettings(this, def);
      if (!key) throw new Error(t('errors.no-key'));
      if (key.length < MIN_SIGNING_KEY_LENGTH)
        throw new Error(t('errors.short-key', { length: key.length, min: MIN_SIGNING_KEY_LENGTH }));
      if (!dryRun) {
        broker = (RED.nodes.getNode(def.broker) as EdgeMqttBrokerNode | null) ?? undefined;
        if (!broker) throw new Error(t('errors.no-broker'));
        if (!broker.connection)
          throw new Error(t('errors.bad-broker', { message: broker.configError ?? '' }));
      }
    } catch (err) {
      configError = (err as Error).message;
      this.status({ fill: 'red', shape: 'ring', text: t('status.config-error') });
      this.error(configError);
    }

    // ---- which guardrail policies are trusted ----
    /** The signed announcements of the guardrail nodes running now; trustPolicy keeps those with our key. */
    const announcements = (): unknown[] => {
      const out: unknown[] = [];
      RED.nodes.eachNode((n) => {
        if (n.type !== 'guardrail') return;
        const guardrail = RED.nodes.getNode(n.id) as GuardrailNode | null;
        const a = guardrail?.policyAnnouncement?.();
        if (a) out.push(a);
      });
      return out;
    };
    const trust: PolicyTrust | undefined = !settings
      ? undefined
      : settings.trustedPolicies
        ? fixedTrust(settings.trustedPolicies)
        : {
            check: (policyHash, now) =>
              trustPolicy(policyHash, announcements(), key!, { graceMs: settings!.policyGraceMs, now }),
          };

    // ---- outcomes ----
    const sessions = def.sessions ? (RED.nodes.getNode(def.sessions) as KvSessionStoreNode | null) : null;
    /** The device's answer is the mission's feedback; the mission moves on to Monitor. */
    const advanceMission = (
      msg: NodeMessageInFlow,
      command: Command,
      feedback: Record<string, unknown>,
    ): void => {
      const key = defaultSessionKey(msg as { session?: unknown; topic?: unknown });
      if (!sessions?.store || key === undefined) return;
      try {
        sessions.store.advance(key, ['Monitor'], {
          feedback: { action: command.signed.action.action, id: command.signed.action.id, ...feedback },
        });
      } catch (err) {
        this.warn(`${t('errors.session')}: ${(err as Error).message}`);
      }
    };
    const settle = (command: Command, outcome: { acked: AckInfo } | { failed: Failure }): void => {
      const entry = pending.get(command.idempotencyKey);
      pending.delete(command.idempotencyKey);
      // A command that was in the outbox across a restart has no waiting message: report it anew.
      const msg: NodeMessageInFlow = entry?.msg ?? {
        _msgid: command.msgid ?? RED.util.generateId(),
        payload: command.signed,
        recovered: true,
      };
      const send: Send = entry?.send ?? ((m) => this.send(m));
      if ('acked' in outcome) {
        msg.payload = outcome.acked.reply;
        msg.command = commandInfo(command, outcome.acked);
        advanceMission(msg, command, { ok: true, reply: outcome.acked.reply });
        send([msg, null]);
      } else {
        advanceMission(msg, command, { ok: false, failure: outcome.failed });
        lastError = outcome.failed.code;
        msg.failure = outcome.failed;
        msg.command = commandInfo(command);
        send([null, msg]);
      }
      entry?.done();
      showStatus();
    };

    const ready: Promise<void> = (async () => {
      if (configError || !settings) return;
      const s = settings;
      replay = await ReplayStore.open({ dir: s.dir });
      if (dryRun) return;
      outbox = await Outbox.open<Command>({ dir: s.dir, capacity: s.outboxSize });
      // Closed while the outbox opened (a stop or redeploy right after the start): the broker
      // node may already have ended its connection, and there is nothing left to start.
      const connection = broker?.connection;
      if (closing || !connection) return;
      actuator = new Actuator({
        link: connection,
        outbox,
        replyTopic: `edge-llm/ack/${this.id}`,
        ackTimeoutMs: s.ackTimeoutMs,
        retries: s.retries,
        deadlineMs: s.deadlineMs,
        trust,
      });
      actuator.on('acked', (command, info) => settle(command, { acked: info }));
      actuator.on('failed', (command, failure) => settle(command, { failed: failure }));
      actuator.on('depth', showStatus);
      actuator.on('problem', (err: Error) => this.warn(`${t('errors.outbox-write')}: ${err.message}`));
      connection.on('ready', showStatus);
      connection.on('offline', showStatus);
      broker!.register(this);
      await actuator.start();
      if (outbox.depth > 0) this.log(t('log.recovered', { depth: outbox.depth, dir: s.dir }));
      showStatus();
    })().catch((err: Error) => {
      configError = t('errors.outbox', { message: err.message });
      this.status({ fill: 'red', shape: 'ring', text: t('status.config-error') });
      this.error(configError);
    });
    if (!configError)
      this.status(dryRun ? currentStatus() : { fill: 'yellow', shape: 'ring', text: t('status.starting') });

    // ---- input ----
    const accept = async (msg: NodeMessageInFlow, send: Send, done: Done): Promise<void> => {
      await ready;
      if (configError || !settings || !replay) throw new Error(configError ?? t('errors.not-ready'));
      if (closing) throw new Error(t('errors.closing'));
      const options = { key: key!, replay, topicTemplate: settings.topic, msgid: msg._msgid, trust };
      if (dryRun) {
        const command = await admit(msg.payload, {
          ...options,
          deadlineMs: settings.deadlineMs,
          now: Date.now(),
        });
        this.log(t('log.dry-run', { topic: command.topic, action: JSON.stringify(command.signed.action) }));
        msg.command = { ...commandInfo(command), dryRun: true };
        send([msg, null]);
        done();
        return;
      }
      // The message waits for its ack from before the command can be sent: the broker may come up
      // and the device answer while the outbox append is still being written.
      let admitted: string | undefined;
      try {
        await actuator!.submit(msg.payload, options, (command) => {
          admitted = command.idempotencyKey;
          pending.set(admitted, { msg, send, done });
        });
      } catch (err) {
        if (admitted) pending.delete(admitted);
        throw err;
      }
      showStatus();
    };

    this.on('input', (msg: NodeMessageInFlow, send: Send, done: Done) => {
      accept(msg, send, done).catch((err: Error) => {
        // One outcome per message. A refused command (signature, policy, topic, full outbox) is an
        // answer the flow is expected to handle: the failed output only. Anything else is an error
        // (not configured, stopping, a disk that fails): Catch only.
        if (err instanceof CommandRefused || err instanceof OutboxFullError) {
          lastError = err.code;
          msg.failure = { code: err.code, message: err.message };
          send([null, msg]);
          showStatus();
          done();
          return;
        }
        lastError = 'error';
        showStatus();
        done(err);
      });
    });

    // ---- close ----
    this.on('close', (removed: boolean, done: () => void) => {
      closing = true;
      throttle.close();
      const cleanup = (async () => {
        await ready;
        const left = outbox?.depth ?? 0;
        await actuator?.stop();
        const connection = broker?.connection;
        connection?.off('ready', showStatus);
        connection?.off('offline', showStatus);
        if (actuator) await broker?.deregister(this);
        await outbox?.close();
        await replay?.close();
        // Their commands stay in the outbox and are reported as recovered when the node starts again.
        for (const entry of pending.values()) entry.done();
        pending.clear();
        if (left > 0)
          this.warn(t(removed ? 'log.left-removed' : 'log.left', { depth: left, dir: settings?.dir ?? '' }));
      })();
      const budget = new Promise<void>((resolve) => setTimeout(resolve, CLOSE_BUDGET_MS).unref());
      Promise.race([cleanup, budget])
        .catch((err: Error) => this.warn(err.message))
        .finally(() => done());
    });
  }

  RED.nodes.registerType('actuator-out', ActuatorOut as unknown as (this: Node, def: NodeDef) => void, {
    credentials: { signingKey: { type: 'password' } },
  });
}
