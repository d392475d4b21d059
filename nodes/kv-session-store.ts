import * as path from 'node:path';
import { userDir as userDirOf } from '../lib/util/user-dir';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { SessionStore, type SessionStoreOptions } from '../lib/session';
import { formNumber } from './form';
import { StatusThrottle } from './status';
import { checkEnvName, secretFrom } from '../lib/util/secret';

const NS = 'node-red-contrib-edge-llm/kv-session-store:kv-session-store';
const CLOSE_BUDGET_MS = 12_000;

export interface KvSessionStoreNodeDef extends NodeDef {
  maxSessions: string;
  maxTokens: string;
  idleHours: string;
  snapshotMb: string;
  /** The environment variable holding the encryption key when the credential is blank; blank: none. */
  encryptionKeyEnv?: string;
}

export interface KvSessionStoreCredentials {
  encryptionKey?: string;
}

/** A node that uses the store: told when its sessions or their states change. */
export interface SessionStoreUser {
  id: string;
  sessionsChanged(): void;
}

/**
 * What a node that keeps sessions (kv-session, llm-parse, llm-plan, ...) sees of this config node:
 * the store, or why there is none.
 */
export interface KvSessionStoreNode extends Node<KvSessionStoreCredentials> {
  store: SessionStore | undefined;
  configError: string | undefined;
  register(user: SessionStoreUser): void;
  deregister(user: SessionStoreUser): void;
}

/** The session a message belongs to: `msg.session`, else `msg.topic`; undefined when it has neither. */
export function defaultSessionKey(msg: { session?: unknown; topic?: unknown }): string | undefined {
  for (const value of [msg.session, msg.topic]) {
    if (typeof value === 'string' && value !== '') return value;
    if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  }
  return undefined;
}

/** Form values (text, blank for the default) as store options; throws a message a person can act on. */
export function parseStoreOptions(def: KvSessionStoreNodeDef): Omit<SessionStoreOptions, 'dir'> {
  const num = (raw: string | undefined, label: string, min: number, max: number): number | undefined =>
    formNumber(raw, undefined, { min, max }, () => `${label} must be from ${min} to ${max}.`);
  const hours = num(def.idleHours, 'Idle expiry (hours)', 0, 24 * 365);
  const mb = num(def.snapshotMb, 'KV snapshots (MB)', 0, 1_000_000);
  const whole = (n: number | undefined) => (n === undefined ? undefined : Math.floor(n));
  return {
    maxSessions: whole(num(def.maxSessions, 'Maximum sessions', 1, 1_000_000)),
    maxTokens: whole(num(def.maxTokens, 'Maximum tokens per conversation', 16, 1_048_576)),
    idleMs: hours === undefined ? undefined : Math.round(hours * 3600_000),
    snapshotBytes: mb === undefined ? undefined : Math.round(mb * 2 ** 20),
  };
}

export default function (RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>): string => RED._(`${NS}.${key}`, params);
  const userDir = (): string => userDirOf(RED.settings);
  /** The stores of the deployed config nodes, for the admin endpoint. */
  const deployed = new Map<string, KvSessionStoreNode>();

  function KvSessionStore(this: KvSessionStoreNode, def: KvSessionStoreNodeDef): void {
    RED.nodes.createNode(this, def);
    const users = new Map<string, SessionStoreUser>();
    this.store = undefined;
    this.configError = undefined;

    // Sessions change on every message: tell the users a few times a second at most.
    const throttle = new StatusThrottle(() => users.forEach((u) => u.sessionsChanged()), 200);
    const changedSoon = (): void => throttle.soon();

    try {
      const options = parseStoreOptions(def);
      checkEnvName(def.encryptionKeyEnv, 'Key variable');
      const dir = path.join(userDir(), 'edge-llm', 'sessions', this.id);
      const store = SessionStore.open({
        ...options,
        dir,
        // No variable by default: a store written without a key must keep opening without one.
        encryptionKey: secretFrom(this.credentials?.encryptionKey, def.encryptionKeyEnv, ''),
      });
      for (const problem of store.problems) this.warn(`${t('log.unreadable')}: ${problem}`);
      store.on('problem', (message: string) => this.warn(message));
      store.on('change', changedSoon);
      this.store = store;
      deployed.set(this.id, this);
    } catch (err) {
      this.configError = (err as Error).message;
      this.error(`${t('errors.bad-config')}: ${this.configError}`);
    }

    this.register = (user) => {
      users.set(user.id, user);
      user.sessionsChanged();
    };
    this.deregister = (user) => {
      users.delete(user.id);
    };

    this.on('close', (_removed: boolean, done: () => void) => {
      // A removed store keeps its folder: sessions are deleted by a person, never by a redeploy.
      throttle.close();
      users.clear();
      deployed.delete(this.id);
      const store = this.store;
      this.store = undefined;
      if (!store) {
        done();
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const budget = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.warn(t('log.close-slow'));
          resolve();
        }, CLOSE_BUDGET_MS);
      });
      Promise.race([store.close(), budget])
        .catch((err: Error) => this.warn(`${t('log.close-failed')}: ${err.message}`))
        .finally(() => {
          clearTimeout(timer);
          done();
        });
    });
  }

  RED.nodes.registerType(
    'kv-session-store',
    KvSessionStore as unknown as (this: Node, def: NodeDef) => void,
    { credentials: { encryptionKey: { type: 'password' } } },
  );

  // Read-only: keys, states, counts, sizes and times; never conversation text or mission data.
  RED.httpAdmin.get('/edge-llm/sessions', RED.auth.needsPermission('kv-session.read'), (_req, res) => {
    res.json(
      [...deployed.values()].map((node) => {
        const store = node.store;
        return {
          id: node.id,
          name: node.name ?? '',
          encrypted: store?.encrypted ?? false,
          limits: store
            ? {
                maxSessions: store.maxSessions,
                maxTokens: store.maxTokens,
                idleMs: store.idleMs,
                snapshotBytes: store.snapshotBytes,
              }
            : undefined,
          snapshotBytes: store?.totalSnapshotBytes ?? 0,
          sessions: store ? store.list() : [],
        };
      }),
    );
  });
}
