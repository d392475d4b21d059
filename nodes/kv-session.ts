import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow } from 'node-red';
import {
  MISSION_STATES,
  SessionError,
  isMissionState,
  type MissionState,
  type MissionUpdate,
  type SessionRecord,
} from '../lib/session';
import { defaultSessionKey, type KvSessionStoreNode } from './kv-session-store';

const NS = 'node-red-contrib-edge-llm/kv-session:kv-session';
const ACTIONS = ['get', 'set', 'transition', 'clear', 'list'] as const;
type Action = (typeof ACTIONS)[number];

export interface KvSessionNodeDef extends NodeDef {
  store: string;
  action: Action;
  /** Where the key is: blank for msg.session, else msg.topic. */
  key: string;
  keyType: 'msg' | 'str' | 'jsonata' | 'flow' | 'global' | 'env';
  /** The state `transition` moves to; blank takes msg.state. */
  toState: string;
  routeByState: boolean;
}

type Msg = NodeMessageInFlow & {
  session?: unknown;
  state?: unknown;
  mission?: unknown;
  conversation?: unknown;
};
type Send = (msg: Array<NodeMessage | null>) => void;
type Done = (err?: Error) => void;

const UPDATE_FIELDS = ['spec', 'plan', 'step', 'feedback', 'data'];

export default function (RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>): string => RED._(`${NS}.${key}`, params);

  function KvSession(this: Node, def: KvSessionNodeDef): void {
    RED.nodes.createNode(this, def);
    const config = RED.nodes.getNode(def.store) as KvSessionStoreNode | null;
    let configError: string | undefined;
    if (!config) configError = t('errors.no-store');
    else if (!config.store) configError = `${t('errors.bad-store')}: ${config.configError ?? ''}`;
    else if (!ACTIONS.includes(def.action))
      configError = t('errors.bad-action', { action: String(def.action) });
    else if (def.action === 'transition' && def.toState && !isMissionState(def.toState))
      configError = t('errors.bad-state', { state: def.toState, states: MISSION_STATES.join(', ') });
    const routeByState = !!def.routeByState && def.action !== 'list';
    const user = { id: this.id, sessionsChanged: () => showStatus() };

    const showStatus = (): void => {
      const store = config?.store;
      if (configError || !store) {
        this.status({ fill: 'red', shape: 'ring', text: t('status.config-error') });
        return;
      }
      const states = Object.entries(store.countByState())
        .filter(([state]) => state !== 'Idle')
        .map(([state, n]) => `${state} ${n}`)
        .join(' · ');
      this.status({
        fill: 'green',
        shape: 'dot',
        text: states
          ? t('status.summary', { count: store.size, states })
          : t('status.count', { count: store.size }),
      });
    };

    if (configError) {
      this.error(configError);
      showStatus();
    } else config?.register(user);

    const keyOf = async (msg: Msg): Promise<string> => {
      let value: unknown;
      if (!def.key) value = defaultSessionKey(msg);
      else {
        value = await new Promise((resolve, reject) =>
          RED.util.evaluateNodeProperty(def.key, def.keyType || 'msg', this, msg, (err, v) =>
            err ? reject(err) : resolve(v),
          ),
        );
        if (typeof value === 'number') value = String(value);
      }
      if (typeof value !== 'string' || value === '') throw new Error(t('errors.no-key'));
      return value;
    };

    const output = (msg: Msg, state: MissionState, send: Send): void => {
      if (!routeByState) send([msg]);
      else send(MISSION_STATES.map((s) => (s === state ? msg : null)));
    };

    const carry = (msg: Msg, key: string, record: SessionRecord): void => {
      msg.session = key;
      msg.mission = record.mission;
      msg.conversation = record.conversation;
    };

    this.on('input', (msg: Msg, send: Send, done: Done) => {
      void (async () => {
        const store = config?.store;
        if (configError || !store) throw new Error(configError ?? t('errors.no-store'));
        if (def.action === 'list') {
          msg.payload = store.list();
          send([msg]);
          done();
          return;
        }
        const key = await keyOf(msg);
        let record: SessionRecord;
        switch (def.action) {
          case 'get':
            record = store.get(key);
            break;
          case 'set':
            record = store.update(key, updateFrom(msg.payload));
            break;
          case 'transition': {
            const to = def.toState || msg.state;
            if (!isMissionState(to))
              throw new Error(
                t('errors.bad-state', { state: String(to), states: MISSION_STATES.join(', ') }),
              );
            record = store.transition(key, to);
            break;
          }
          case 'clear':
            store.delete(key);
            record = store.get(key);
            break;
        }
        carry(msg, key, record);
        output(msg, record.mission.state, send);
        done();
      })().catch((err: unknown) => {
        this.status({
          fill: 'red',
          shape: 'ring',
          text:
            err instanceof SessionError && err.code === 'invalid_transition'
              ? t('status.invalid-transition')
              : t('status.error'),
        });
        done(err instanceof Error ? err : new Error(String(err)));
      });
    });

    this.on('close', (_removed: boolean, done: () => void) => {
      config?.deregister(user);
      done();
    });

    function updateFrom(payload: unknown): MissionUpdate {
      const fields = typeof payload === 'object' && payload !== null ? Object.keys(payload) : [];
      if (
        fields.length === 0 ||
        Array.isArray(payload) ||
        fields.some((f) => !UPDATE_FIELDS.includes(f)) ||
        ('step' in (payload as object) && !Number.isInteger((payload as MissionUpdate).step))
      ) {
        throw new Error(t('errors.bad-update', { fields: UPDATE_FIELDS.join(', ') }));
      }
      return payload as MissionUpdate;
    }
  }

  RED.nodes.registerType('kv-session', KvSession as unknown as (this: Node, def: NodeDef) => void);
}
