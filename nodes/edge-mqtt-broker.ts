import type { Node, NodeAPI, NodeDef } from 'node-red';
import { BrokerConnection, type BrokerOptions } from '../lib/device/actuator';
import { redactUrl } from '../lib/util/redact';

const NS = 'node-red-contrib-edge-llm/edge-mqtt-broker:edge-mqtt-broker';
const URL_SCHEMES = new Set(['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'tls:', 'ws:', 'wss:']);

export interface EdgeMqttBrokerNodeDef extends NodeDef {
  url: string;
  clientId: string;
  protocolVersion: string;
  keepalive: string;
  reconnectPeriod: string;
  tls: string;
}

export interface EdgeMqttBrokerCredentials {
  user?: string;
  password?: string;
}

/** What a node that sends through the broker sees of this config node. */
export interface EdgeMqttBrokerNode extends Node<EdgeMqttBrokerCredentials> {
  /** Undefined when the configuration is bad; `configError` says why. */
  connection: BrokerConnection | undefined;
  configError: string | undefined;
  /** The first user opens the connection. */
  register(user: Node): void;
  /** The last user to leave closes it; resolves once it is closed. */
  deregister(user: Node): Promise<void>;
}

interface TlsConfigNode extends Node {
  addTLSOptions(options: Record<string, unknown>): void;
}

export function parseBrokerOptions(
  def: EdgeMqttBrokerNodeDef,
  credentials: EdgeMqttBrokerCredentials,
  t: (key: string, params?: Record<string, string>) => string,
): BrokerOptions {
  const url = (def.url ?? '').trim();
  let scheme: string;
  try {
    scheme = new URL(url).protocol;
  } catch {
    throw new Error(t('errors.bad-url', { url: redactUrl(url) }));
  }
  if (!URL_SCHEMES.has(scheme)) throw new Error(t('errors.bad-url', { url: redactUrl(url) }));
  const protocolVersion = Number(def.protocolVersion || 5);
  if (protocolVersion !== 4 && protocolVersion !== 5) {
    throw new Error(t('errors.bad-protocol', { value: String(def.protocolVersion) }));
  }
  const keepalive = Number(def.keepalive || 60);
  const reconnect = Number(def.reconnectPeriod || 2);
  if (!(keepalive >= 0) || !(reconnect > 0)) throw new Error(t('errors.bad-timing'));
  return {
    url,
    clientId: (def.clientId ?? '').trim() || undefined,
    username: credentials.user || undefined,
    password: credentials.password || undefined,
    protocolVersion,
    keepalive,
    reconnectPeriodMs: Math.round(reconnect * 1000),
  };
}

export default function (RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string>): string => RED._(`${NS}.${key}`, params);

  function EdgeMqttBroker(this: EdgeMqttBrokerNode, def: EdgeMqttBrokerNodeDef): void {
    RED.nodes.createNode(this, def);
    const users = new Set<string>();
    this.connection = undefined;
    this.configError = undefined;

    try {
      const options = parseBrokerOptions(def, this.credentials ?? {}, t);
      if (def.tls) {
        const tlsNode = RED.nodes.getNode(def.tls) as TlsConfigNode | null;
        if (!tlsNode) throw new Error(t('errors.no-tls'));
        const tls: Record<string, unknown> = {};
        tlsNode.addTLSOptions(tls);
        options.tls = tls;
      }
      const connection = new BrokerConnection(options);
      let lastLogged = '';
      connection.on('ready', () => {
        lastLogged = '';
        this.log(t('log.connected', { url: redactUrl(options.url) }));
      });
      connection.on('offline', () => this.log(t('log.disconnected', { url: redactUrl(options.url) })));
      // A broker that stays away fails every reconnect: log each distinct reason once.
      connection.on('connectionError', (err: Error) => {
        if (err.message === lastLogged) return;
        lastLogged = err.message;
        this.warn(t('log.connection-failed', { url: redactUrl(options.url), message: err.message }));
      });
      this.connection = connection;
    } catch (err) {
      this.configError = (err as Error).message;
      this.error(this.configError);
    }

    this.register = (user) => {
      users.add(user.id);
      this.connection?.register(user.id);
    };
    this.deregister = async (user) => {
      users.delete(user.id);
      await this.connection?.deregister(user.id);
    };

    this.on('close', (_removed: boolean, done: () => void) => {
      users.clear();
      const connection = this.connection;
      this.connection = undefined;
      (connection ? connection.end() : Promise.resolve()).then(
        () => done(),
        (err: Error) => {
          this.warn(err.message);
          done();
        },
      );
    });
  }

  RED.nodes.registerType(
    'edge-mqtt-broker',
    EdgeMqttBroker as unknown as (this: Node, def: NodeDef) => void,
    {
      credentials: { user: { type: 'text' }, password: { type: 'password' } },
    },
  );
}
