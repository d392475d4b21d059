import * as fs from 'node:fs';
import * as path from 'node:path';
import { userDir as userDirOf } from '../lib/util/user-dir';
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow } from 'node-red';
import { type PendingApproval, PendingApprovals, parseApprovalDecision } from '../lib/guardrail/approvals';
import { AuditLog, decisionRecord } from '../lib/guardrail/audit';
import { type Decision, Guardrail, type LiveReader, type Reason } from '../lib/guardrail/evaluate';
import { readPath } from '../lib/guardrail/paths';
import { type CompiledPolicy, POLICY_SCHEMA, compilePolicy, parsePolicyText } from '../lib/guardrail/policy';
import { LimitState } from '../lib/guardrail/state';
import { MIN_SIGNING_KEY_LENGTH } from '../lib/device/signing';
import type { EdgeMqttBrokerNode } from './edge-mqtt-broker';
import { formNumber } from './form';
import { type PolicyAnnouncement, announcePolicy, recordPolicy } from '../lib/guardrail/trust';

const NS = 'node-red-contrib-edge-llm/guardrail:guardrail';

export interface GuardrailNodeDef extends NodeDef {
  policySource: 'inline' | 'file';
  policy: string;
  policyFile: string;
  auditLog: string;
  /** Optional second file the audit log's head is copied to, every `anchorInterval` seconds. */
  anchorFile?: string;
  anchorInterval?: string;
  /** Optional edge-mqtt-broker: the head is also published there, retained, on `anchorTopic`. */
  anchorBroker?: string;
  anchorTopic?: string;
}

export interface GuardrailCredentials {
  signingKey?: string;
}

/** What actuator-out nodes ask a running guardrail: which policy it holds, signed with its key. */
export interface GuardrailNode extends Node<GuardrailCredentials> {
  policyAnnouncement(): PolicyAnnouncement | undefined;
  /** The policy it decides under now (none after a bad deploy): the mission node measures budgets on it. */
  policy(): CompiledPolicy | undefined;
}

type Msg = NodeMessageInFlow & Record<string, unknown>;
type Send = (msg: Array<NodeMessage | NodeMessage[] | null>) => void;
type Done = (err?: Error) => void;

export default function (RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>): string => RED._(`${NS}.${key}`, params);
  const userDir = (): string => userDirOf(RED.settings);

  function loadPolicy(def: GuardrailNodeDef): CompiledPolicy {
    let text = def.policy ?? '';
    if (def.policySource === 'file') {
      if (!def.policyFile?.trim()) throw new Error(t('errors.no-policy-file'));
      const file = path.resolve(userDir(), def.policyFile.trim());
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(t('errors.policy-file', { file, message: (err as Error).message }), { cause: err });
      }
    }
    if (!text.trim()) throw new Error(t('errors.no-policy'));
    const parsed = parsePolicyText(text);
    const compiled = parsed.ok ? compilePolicy(parsed.value) : parsed;
    if (!compiled.ok) throw new Error(t('errors.bad-policy', { errors: compiled.errors.join('\n') }));
    return compiled.policy;
  }

  function GuardrailNode(this: GuardrailNode, def: GuardrailNodeDef): void {
    RED.nodes.createNode(this, def);
    let announcement: PolicyAnnouncement | undefined;
    this.policyAnnouncement = () => announcement;
    this.policy = () => guard?.policy;
    /** Says which policy this node approves under now (none after a bad deploy), and which it held before. */
    const announce = (policyHash: string | null): void => {
      const key = this.credentials?.signingKey;
      if (!key) return;
      try {
        const file = path.join(userDir(), 'edge-llm', 'guardrail', `${this.id}.policy.json`);
        const history = recordPolicy(file, policyHash, Date.now());
        announcement = announcePolicy(key, { node: this.id, ...history });
      } catch (err) {
        announcement = undefined;
        this.warn(t('errors.announce', { message: (err as Error).message }));
      }
    };
    const counts = { approved: 0, rejected: 0 };
    const timers = new Map<string, NodeJS.Timeout>();
    let guard: Guardrail | undefined;
    let audit: AuditLog | undefined;
    let state: LimitState | undefined;
    let anchorBroker: EdgeMqttBrokerNode | undefined;
    let approvals: PendingApprovals | undefined;
    let configError: string | undefined;

    try {
      const policy = loadPolicy(def);
      const key = this.credentials?.signingKey;
      if (!key) throw new Error(t('errors.no-key'));
      if (key.length < MIN_SIGNING_KEY_LENGTH)
        throw new Error(t('errors.short-key', { length: key.length, min: MIN_SIGNING_KEY_LENGTH }));
      const auditFile = path.resolve(
        userDir(),
        def.auditLog?.trim() || path.join('edge-llm', 'guardrail', `${this.id}.jsonl`),
      );
      const anchorFile = def.anchorFile?.trim() ? path.resolve(userDir(), def.anchorFile.trim()) : undefined;
      const anchorSeconds = formNumber(def.anchorInterval, 10, { min: 0 }, (value) =>
        t('errors.bad-anchor-interval', { value }),
      );
      const broker = def.anchorBroker
        ? ((RED.nodes.getNode(def.anchorBroker) as EdgeMqttBrokerNode | null) ?? undefined)
        : undefined;
      const anchorTopic = def.anchorTopic?.trim() || `edge-llm/guardrail/${this.id}/anchor`;
      if (def.anchorBroker && !broker?.connection)
        throw new Error(t('errors.anchor-broker', { message: broker?.configError ?? '' }));
      if (broker) {
        broker.register(this);
        anchorBroker = broker;
      }
      // A retained message on the broker keeps the latest head; one not sent (broker away) is
      // replaced by the next, which holds everything before it.
      const publish = broker
        ? (anchor: unknown) => {
            broker.connection
              ?.publish(anchorTopic, JSON.stringify(anchor), undefined, { retain: true })
              .catch((err: Error) => this.warn(t('errors.anchor-publish', { message: err.message })));
          }
        : undefined;
      try {
        audit = AuditLog.open(auditFile, {
          signingKey: key,
          ...(anchorFile || publish
            ? { anchor: { file: anchorFile, intervalMs: anchorSeconds * 1000, publish } }
            : {}),
        });
      } catch (err) {
        throw new Error(t('errors.audit', { message: (err as Error).message }), { cause: err });
      }
      try {
        // Rate limits, set-points, positions and mission budgets outlive a redeploy and a restart.
        state = LimitState.open(path.join(userDir(), 'edge-llm', 'guardrail', `${this.id}.state.jsonl`));
      } catch (err) {
        throw new Error(t('errors.state', { message: (err as Error).message }), { cause: err });
      }
      audit.attach(state);
      guard = new Guardrail(policy, { key, state });
      approvals = new PendingApprovals(policy.maxPending);
      announce(policy.hash);
      this.status({
        fill: 'green',
        shape: 'dot',
        text: t('status.ready', { hash: policy.hash.slice(0, 12) }),
      });
    } catch (err) {
      configError = (err as Error).message;
      guard = undefined;
      announce(null);
      this.status({ fill: 'red', shape: 'ring', text: t('status.config-error') });
      this.error(configError);
    }

    const showStatus = (last: Decision['outcome']): void => {
      const fill = last === 'approved' ? 'green' : last === 'needs_approval' ? 'yellow' : 'red';
      this.status({
        fill,
        shape: last === 'approved' ? 'dot' : 'ring',
        text: t('status.summary', {
          last: t(`status.last.${last}`),
          approved: counts.approved,
          pending: approvals?.size ?? 0,
          rejected: counts.rejected,
        }),
      });
    };

    /** Interlocks read `msg` from the message in hand, flow and global from context as it is now. */
    const liveFor =
      (msg: Msg): LiveReader =>
      (source, segments) => {
        if (source === 'msg') return readPath(msg, segments);
        const store = source === 'flow' ? this.context().flow : this.context().global;
        return readPath(store.get(segments[0]), segments.slice(1));
      };

    /**
     * Records a decision; it may be sent once `durable` resolves (its audit line and the limits it
     * used are on disk, written in one batch with the decisions around it). Nothing is sent if it
     * cannot be recorded.
     */
    const record = (
      event: Parameters<typeof decisionRecord>[0],
      d: Decision,
      extra: Record<string, string | undefined>,
    ) => {
      const written = audit!.append(decisionRecord(event, d, { node: this.id, ...extra }));
      if (d.outcome === 'approved') counts.approved++;
      else if (d.outcome === 'rejected') counts.rejected++;
      return written;
    };

    const emit = (msg: Msg, d: Decision, auditSeq: number, send: Send, pending?: PendingApproval): void => {
      const info = {
        decision: d.outcome,
        policyHash: d.policyHash,
        reasons: d.reasons,
        message: d.summary,
        auditSeq,
      };
      if (d.outcome === 'needs_approval' && pending) {
        msg.approval = { id: pending.id, expires: pending.expires, reasons: pending.reasons };
        msg.guardrail = info;
        send([null, msg, null]);
      } else if (d.outcome !== 'approved') {
        msg.guardrail = info;
        send([null, null, msg]);
      } else if (d.kind !== 'plan') {
        msg.payload = d.signed[0];
        msg.guardrail = info;
        send([msg, null, null]);
      } else {
        // One message per signed step, as a sequence a join node can put back together.
        msg.payload = null;
        const outer = msg.parts;
        const partsId = RED.util.generateId();
        const all = [msg, ...d.signed.slice(1).map(() => RED.util.cloneMessage(msg) as Msg)];
        all.forEach((m, i) => {
          m.payload = d.signed[i];
          m.guardrail = { ...info, step: i, stepId: d.signed[i].action.id };
          // Node-RED's sequence fields beyond id/index/count are untyped: type, len, and the outer parts.
          (m as Record<string, unknown>).parts = {
            id: partsId,
            index: i,
            count: all.length,
            type: 'array',
            len: 1,
            ...(outer ? { parts: outer } : {}),
          };
        });
        send([all, null, null]);
      }
      showStatus(d.outcome);
    };

    const expireLater = (entry: PendingApproval): void => {
      const timer = setTimeout(
        () => {
          timers.delete(entry.id);
          const taken = approvals?.take(entry.id, Date.now());
          if (!guard || !taken || taken.status === 'unknown') return;
          const reason: Reason = { code: 'approval_expired', message: t('reasons.approval-expired') };
          const d = guard.result('rejected', entry.kind, [], [reason]);
          const msg = {
            _msgid: RED.util.generateId(),
            payload: entry.payload,
            approval: { id: entry.id },
            ...(entry.mission !== undefined ? { mission: entry.mission } : {}),
          } as Msg;
          void (async () => {
            const { seq, durable } = record('approval_expired', d, {
              approvalId: entry.id,
              msgid: entry.requestMsgId,
            });
            await durable;
            emit(msg, d, seq, (out) => this.send(out));
          })().catch((err: Error) => this.error(t('errors.audit', { message: err.message }), msg));
        },
        Math.max(0, entry.expires - Date.now()),
      );
      timer.unref();
      timers.set(entry.id, timer);
    };

    const onRequest = async (msg: Msg, send: Send): Promise<void> => {
      const g = guard!;
      let d = g.decide(msg.payload, liveFor(msg));
      let pending: PendingApproval | undefined;
      if (d.outcome === 'needs_approval') {
        const now = Date.now();
        pending = approvals!.add({
          payload: d.request,
          kind: d.kind === 'plan' ? 'plan' : 'action',
          created: now,
          expires: now + g.policy.approvalTimeoutMs,
          reasons: d.reasons,
          requestMsgId: msg._msgid,
          // A plan released later goes back to the mission that asked for it.
          ...(msg.mission !== undefined ? { mission: RED.util.cloneMessage({ m: msg.mission }).m } : {}),
        });
        if (!pending) {
          const message = t('reasons.queue-full', { max: g.policy.maxPending });
          d = g.result('rejected', d.kind, d.actions, [{ code: 'approval_queue_full', message }]);
        }
      }
      let seq: number;
      try {
        const written = record('request', d, { msgid: msg._msgid, approvalId: pending?.id });
        seq = written.seq;
        await written.durable;
      } catch (err) {
        if (pending) approvals!.take(pending.id, Date.now());
        throw err;
      }
      if (pending) expireLater(pending);
      emit(msg, d, seq, send, pending);
    };

    const onApproval = async (msg: Msg, send: Send): Promise<void> => {
      const g = guard!;
      const parsed = parseApprovalDecision(msg.approval)!;
      const reject = (code: Reason['code'], message: string, kind: Decision['kind'] = 'invalid') =>
        g.result('rejected', kind, [], [{ code, message }]);
      let d: Decision;
      let extra: Record<string, string | undefined> = { msgid: msg._msgid };
      if ('error' in parsed) {
        d = reject('approval_malformed', parsed.error);
      } else {
        extra = { ...extra, approvalId: parsed.id, approver: parsed.approver, comment: parsed.comment };
        const taken = approvals!.take(parsed.id, Date.now());
        clearTimeout(timers.get(parsed.id));
        timers.delete(parsed.id);
        if (taken.status === 'unknown') {
          d = reject('approval_unknown', t('reasons.approval-unknown'));
        } else {
          msg.payload = taken.entry.payload;
          if (msg.mission === undefined && taken.entry.mission !== undefined)
            msg.mission = taken.entry.mission;
          if (taken.status === 'expired')
            d = reject('approval_expired', t('reasons.approval-expired'), taken.entry.kind);
          else if (parsed.decision === 'reject') {
            const who = parsed.approver ?? t('reasons.someone');
            d = reject('approval_denied', t('reasons.approval-denied', { who }), taken.entry.kind);
          } else d = g.decide(taken.entry.payload, liveFor(msg), { approvalGranted: true });
        }
      }
      const { seq, durable } = record('approval', d, extra);
      await durable;
      emit(msg, d, seq, send);
    };

    this.on('input', (msg: Msg, send: Send, done: Done) => {
      (async () => {
        if (configError || !guard) throw new Error(configError ?? t('errors.not-ready'));
        if (parseApprovalDecision(msg.approval) !== undefined) await onApproval(msg, send);
        else await onRequest(msg, send);
      })().then(
        () => done(),
        (err: Error) => {
          this.status({ fill: 'red', shape: 'ring', text: t('status.error') });
          done(err);
        },
      );
    });

    this.on('close', (_removed: boolean, done: () => void) => {
      for (const timer of timers.values()) clearTimeout(timer);
      timers.clear();
      approvals?.clear();
      (async () => {
        await audit?.close();
        await state?.close();
        await anchorBroker?.deregister(this);
      })()
        .catch((err: Error) => this.warn(err.message))
        .finally(() => done());
    });
  }

  // The editor validates a policy with the same JSON Schema and deploy check as the node.
  RED.httpAdmin.get(
    '/edge-llm/guardrail/policy-schema',
    RED.auth.needsPermission('guardrail.read'),
    (_req, res) => {
      res.json(POLICY_SCHEMA);
    },
  );
  RED.httpAdmin.post(
    '/edge-llm/guardrail/check-policy',
    RED.auth.needsPermission('guardrail.read'),
    (req, res) => {
      const body = req.body as { policy?: unknown } | undefined;
      const parsed = parsePolicyText(typeof body?.policy === 'string' ? body.policy : '');
      const compiled = parsed.ok ? compilePolicy(parsed.value) : parsed;
      res.json(
        compiled.ok ? { ok: true, policyHash: compiled.policy.hash } : { ok: false, errors: compiled.errors },
      );
    },
  );

  RED.nodes.registerType('guardrail', GuardrailNode as unknown as (this: Node, def: NodeDef) => void, {
    credentials: { signingKey: { type: 'password' } },
  });
}
