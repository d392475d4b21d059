/**
 * What the demo changes in examples/*.json before it deploys them: the model, the broker, and the
 * credentials an imported example asks its user to fill in.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';

export interface FlowNode {
  id: string;
  type: string;
  [key: string]: unknown;
}

export interface DemoDeployment {
  /** Replaces the model of every llm-runtime node (a path, a name in the models directory, a URI). */
  model?: string;
  /** The demo broker, e.g. mqtt://127.0.0.1:1883. */
  mqttUrl: string;
}

/** The examples as the demo runs them: on the demo broker (MQTT 3.1.1, which aedes speaks) and model. */
export function forDemo(flows: FlowNode[], options: DemoDeployment): FlowNode[] {
  const url = new URL(options.mqttUrl);
  return flows.map((n) => {
    switch (n.type) {
      case 'llm-runtime':
        return options.model ? { ...n, model: options.model } : n;
      case 'edge-mqtt-broker':
        return { ...n, url: options.mqttUrl, protocolVersion: '4' };
      case 'mqtt-broker':
        return { ...n, broker: url.hostname, port: url.port || '1883', protocolVersion: '4', usetls: false };
      default:
        return n;
    }
  });
}

/** The keys an example's nodes need; one set for the whole demo. */
export interface DemoKeys {
  /** Shared by each guardrail and the actuator-out nodes it signs for. */
  signingKey: string;
  /** privacy-guard's HMAC key (keyed hashes, audit). */
  privacyKey: string;
  /** kv-session-store's key for sessions at rest. */
  sessionKey: string;
}

export function randomDemoKeys(): DemoKeys {
  const key = () => randomBytes(32).toString('hex');
  return { signingKey: key(), privacyKey: key(), sessionKey: key() };
}

/**
 * The demo's keys, made once per user directory and kept there (mode 600), so that audit logs,
 * outboxes and saved sessions stay valid across restarts.
 */
export async function demoKeys(userDir: string): Promise<DemoKeys> {
  const file = path.join(userDir, 'demo-keys.json');
  if (existsSync(file)) return JSON.parse(await readFile(file, 'utf8')) as DemoKeys;
  const keys = randomDemoKeys();
  await writeFile(file, JSON.stringify(keys, null, 2), { mode: 0o600 });
  await chmod(file, 0o600);
  return keys;
}

/** Node-RED credentials for every node of the flows that takes a key, by node id. */
export function demoCredentials(flows: FlowNode[], keys: DemoKeys): Record<string, Record<string, string>> {
  const credentials: Record<string, Record<string, string>> = {};
  for (const n of flows) {
    if (n.type === 'guardrail' || n.type === 'actuator-out')
      credentials[n.id] = { signingKey: keys.signingKey };
    else if (n.type === 'privacy-guard') credentials[n.id] = { key: keys.privacyKey };
    else if (n.type === 'kv-session-store') credentials[n.id] = { encryptionKey: keys.sessionKey };
  }
  return credentials;
}
