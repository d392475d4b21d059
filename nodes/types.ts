import type { Node, NodeDef, NodeStatus } from 'node-red';
import type { Lease, LeaseState, ModelLifecycle } from '../lib/runtime';

/** A node that uses a runtime: told of the runtime's state (loading %, ready, busy, error). */
export interface RuntimeUser {
  id: string;
  runtimeStatus(status: NodeStatus, state: LeaseState | 'config-error'): void;
}

export interface LlmRuntimeNodeDef extends NodeDef {
  model: string;
  threads: string;
  contextSize: string;
  sequences: string;
  queueLimit: string;
  timeout: string;
  /**
   * 'child' (the default): the model runs in the runtime child process; 'in-process': in Node-RED's;
   * 'server': on an OpenAI-compatible server at serverUrl.
   */
  isolation?: string;
  serverUrl?: string;
  /** Extra tries after a connection error or a 5xx answer that came before any output. */
  retries?: string;
  /** edge-mqtt-broker config node for telemetry; blank: none. */
  telemetryBroker?: string;
  telemetryTopic?: string;
  /** Seconds between telemetry records. */
  telemetryInterval?: string;
  /** LoRA adapters, one `file [scale]` a line (see lib/runtime/adapters.ts). */
  adapters?: string;
  /** The environment variable holding the key of encrypted models when the credential is blank. */
  modelKeyEnv?: string;
  /** Versions of the model kept in the models directory after an update (blank: 3; 0: none removed). */
  keepVersions?: string;
}

export interface LlmRuntimeCredentials {
  /** The model server's API key (Bearer token). */
  apiKey?: string;
}

export interface LlmRuntimeCredentials {
  /** Ed25519 public key: only name@version models whose manifest it signed load. */
  publicKey?: string;
  /** The key text of encrypted model files (AES-256-GCM at rest). */
  modelKey?: string;
}

/** What a node that uses the runtime sees of its llm-runtime config node. */
export interface LlmRuntimeNode extends Node<LlmRuntimeCredentials> {
  lease: Lease | undefined;
  /** The same object as lease: versions, updates, rollback and health of this runtime's model. */
  lifecycle: ModelLifecycle | undefined;
  credentials: LlmRuntimeCredentials;
  configError: string | undefined;
  register(user: RuntimeUser): void;
  deregister(user: RuntimeUser): void;
  /** The status a user node should show now. */
  currentStatus(): NodeStatus;
}
