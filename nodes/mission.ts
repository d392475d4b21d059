import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow } from 'node-red';
import { type Effect, MissionControl, type Reader, classify, compileConfig, report } from '../lib/mission';
import { readPath } from '../lib/guardrail/paths';
import { writeAtomic } from '../lib/session/files';
import type { GuardrailNode } from './guardrail';

const NS = 'node-red-contrib-edge-llm/mission:mission';

export interface MissionNodeDef extends NodeDef {
  maxReplans: string;
  suggestOnly: string;
  monitor: string;
  device: string;
  /** JSON: a device template per action, e.g. {"stop_line": "{goal.line}"}. */
  devices?: string;
  /** JSON: budget conditions measured on the guardrail's policy. */
  budgets?: string;
  /** The guardrail node whose policy (site map, budgets) the budget conditions use. */
  guardrail?: string;
  constraints: string;
  whenSpent: 'fail' | 'drop';
  /** A flow context key whose value goes to llm-plan and the guardrail as msg.state. */
  state: string;
}

type Msg = NodeMessageInFlow & Record<string, unknown>;
type Send = (msg: Array<NodeMessage | null>) => void;
type Done = (err?: Error) => void;

const PORTS: Effect['port'][] = ['plan', 'check', 'execute', 'report', 'ignored'];
/** Left by the nodes a mission message passed through; a new leg starts without them. */
const TRANSIENT = [
  'guardrail',
  'parts',
  'command',
  'failure',
  'error',
  'rejected',
  'plan',
  'feedback',
  'approval',
  'llm',
];

export default function (RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>): string => RED._(`${NS}.${key}`, params);
  const userDir = (): string => RED.settings.userDir ?? path.join(os.homedir(), '.node-red');
  /** The mission nodes deployed now, for the admin API. */
  const deployed = new Map<string, MissionControl>();

  function MissionNode(this: Node, def: MissionNodeDef): void {
    RED.nodes.createNode(this, def);
    let control: MissionControl | undefined;
    let configError: string | undefined;
    try {
      const json = (text: string | undefined, what: string): unknown => {
        if (!text?.trim()) return undefined;
        try {
          return JSON.parse(text);
        } catch (err) {
          throw new Error(t('errors.not-json', { what, message: (err as Error).message }), { cause: err });
        }
      };
      control = new MissionControl(
        compileConfig({
          maxReplans: def.maxReplans?.trim() ? def.maxReplans.trim() : undefined,
          suggestOnly: (def.suggestOnly ?? '')
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
          monitor: json(def.monitor, 'Monitor'),
          budgets: json(def.budgets, 'Budgets'),
          device: def.device?.trim() || undefined,
          devices: json(def.devices, 'Device per action'),
          constraints: json(def.constraints, 'Constraints'),
          whenSpent: def.whenSpent || undefined,
        }),
      );
      if (def.budgets?.trim() && !def.guardrail) throw new Error(t('errors.no-guardrail'));
      deployed.set(this.id, control);
      this.status({ fill: 'grey', shape: 'ring', text: t('status.idle') });
    } catch (err) {
      configError = t('errors.bad-config', { message: (err as Error).message });
      this.status({ fill: 'red', shape: 'ring', text: t('status.config-error') });
      this.error(configError);
    }

    // The mission outlives a redeploy and a restart: its state is written (atomically) before
    // anything it decided is sent, and read back here.
    const stateFile = path.join(userDir(), 'edge-llm', 'mission', `${this.id}.json`);
    if (control) {
      try {
        const text = fs.existsSync(stateFile) ? fs.readFileSync(stateFile, 'utf8') : undefined;
        if (text) control.restore(JSON.parse(text));
      } catch (err) {
        this.warn(t('errors.state-unreadable', { file: stateFile, message: (err as Error).message }));
      }
    }
    let saving: Promise<void> = Promise.resolve();
    const save = (snapshot: unknown): Promise<void> => {
      // One write after the other; one that failed does not stop the next.
      saving = saving
        .catch(() => undefined)
        .then(async () => {
          await fs.promises.mkdir(path.dirname(stateFile), { recursive: true });
          await writeAtomic(stateFile, JSON.stringify(snapshot));
        });
      return saving;
    };

    if (control) {
      const stateKey = def.state?.trim();
      // What the guardrail would read on the mission's next request: msg.state and msg.missionId.
      control.policy = () => {
        const guardrail = def.guardrail ? (RED.nodes.getNode(def.guardrail) as GuardrailNode | null) : null;
        const request = {
          state: stateKey ? this.context().flow.get(stateKey) : undefined,
          missionId: control?.state?.id,
        };
        return {
          policy: guardrail?.policy?.(),
          read: (source, segments) => {
            if (source === 'msg') return readPath(request, segments);
            const store = source === 'flow' ? this.context().flow : this.context().global;
            return readPath(store.get(segments[0]), segments.slice(1));
          },
        };
      };
    }

    const showStatus = (): void => {
      const s = control?.state;
      if (!s) return;
      const fill = s.status === 'complete' ? 'green' : s.status === 'failed' ? 'red' : 'blue';
      const done = s.steps.filter((x) => x.status === 'done').length;
      this.status({
        fill: s.status === 'aborted' ? 'grey' : fill,
        shape: control!.active ? 'ring' : 'dot',
        text: t(`status.${s.status}`, { id: s.id, done, steps: s.steps.length, replans: s.replans }),
      });
    };

    this.on('input', (msg: Msg, send: Send, done: Done) => {
      try {
        if (configError || !control) throw new Error(configError ?? t('errors.not-ready'));
        const read: Reader = (source, segments) => {
          if (source === 'msg') return readPath(msg, segments);
          const store = source === 'flow' ? this.context().flow : this.context().global;
          return readPath(store.get(segments[0]), segments.slice(1));
        };
        const effects = control.handle(classify(msg), read, Date.now());
        const missionId = control.state?.id;
        const out: Array<NodeMessage[] | null> = PORTS.map(() => null);
        // Copies first: the message in hand becomes the first one sent.
        const copies = effects.map((_e, i) => (i === 0 ? msg : (RED.util.cloneMessage(msg) as Msg)));
        effects.forEach((e, i) => {
          const m = copies[i];
          if (e.port !== 'ignored') {
            for (const k of TRANSIENT) delete m[k];
            m.payload = e.payload;
            m.mission =
              e.port === 'report'
                ? {
                    id: (e.payload as { mission: string }).mission,
                    outcome: (e.payload as { outcome: string }).outcome,
                  }
                : { id: missionId, stage: e.stage, ...(e.stepId ? { stepId: e.stepId } : {}) };
          }
          // What is known now (robot position, readings) for the planner and the guardrail's site map.
          if (def.state?.trim() && (e.port === 'plan' || e.port === 'check'))
            m.state = this.context().flow.get(def.state.trim());
          // Also where a guardrail policy's "mission" (budgets per mission) usually reads it.
          if (e.port !== 'ignored') m.missionId = m.mission && (m.mission as { id?: string }).id;
          Object.assign(m, e.fields ?? {});
          const p = PORTS.indexOf(e.port);
          (out[p] ??= []).push(m as NodeMessage);
        });
        showStatus();
        const sendAll = (): void => {
          if (effects.length > 0) send(out as Array<NodeMessage | null>);
          done();
        };
        // Only a message that changed the mission is written; a stale one is dropped at once.
        if (effects.length > 0 && effects.every((e) => e.port === 'ignored')) return sendAll();
        save(control.snapshot()).then(sendAll, (err: Error) => {
          this.status({ fill: 'red', shape: 'ring', text: t('status.error') });
          done(new Error(t('errors.state-write', { file: stateFile, message: err.message }), { cause: err }));
        });
      } catch (err) {
        this.status({ fill: 'red', shape: 'ring', text: t('status.error') });
        done(err as Error);
      }
    });

    this.on('close', (removed: boolean, done: () => void) => {
      deployed.delete(this.id);
      // A node deleted from the flows takes its mission with it; a redeployed one keeps it.
      void saving
        .catch(() => undefined)
        .then(() => (removed ? fs.promises.rm(stateFile, { force: true }) : undefined))
        .catch((err: Error) => this.warn(err.message))
        .finally(() => done());
    });
  }

  // A mission's state for the editor and for any HTTP client with the right to read flows.
  // The ids of the mission nodes deployed: the edit dialog asks for a state only where there is one.
  RED.httpAdmin.get('/edge-llm/mission', RED.auth.needsPermission('mission.read'), (_req, res) => {
    res.json({ deployed: [...deployed.keys()] });
  });

  RED.httpAdmin.get('/edge-llm/mission/:id', RED.auth.needsPermission('mission.read'), (req, res) => {
    const control = deployed.get(String(req.params.id));
    if (!control) {
      res.status(404).json({ error: t('errors.no-node') });
      return;
    }
    const s = control.state;
    res.json(
      s
        ? {
            ...report(s),
            ...(s.approval ? { approval: { id: s.approval.id, expires: s.approval.expires } } : {}),
          }
        : { outcome: 'idle' },
    );
  });

  RED.nodes.registerType('mission', MissionNode as unknown as (this: Node, def: NodeDef) => void);
}
