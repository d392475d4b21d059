import * as path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeStatus } from 'node-red';
import {
  ModelLifecycle,
  RuntimeProcess,
  parseAdapters,
  RuntimeRegistry,
  ServerRegistry,
  TelemetryPublisher,
  parseContextSettings,
  parseUpdateRequest,
  processRss,
  serverBaseUrl,
  type Lease,
  type LeaseStatus,
  type LlmRuntime,
  type ModelInfo,
  type Registry,
  type RegistryOptions,
  type RuntimeInfo,
} from '../lib/runtime';
import type { LlmRuntimeCredentials, LlmRuntimeNode, LlmRuntimeNodeDef, RuntimeUser } from './types';
import type { EdgeMqttBrokerNode } from './edge-mqtt-broker';
import { redactUrl } from '../lib/util/redact';
import { parsePublicKey } from '../lib/runtime/manifest';
import { isLlmError } from '../lib/runtime/errors';
import { userDir } from '../lib/util/user-dir';
import { checkEnvName, secretFrom } from '../lib/util/secret';
import { StatusThrottle, statusText } from './status';

const NS = 'node-red-contrib-edge-llm/llm-runtime:llm-runtime';

/** Loading and download progress: at most this often on the canvas (a small model sends dozens a second). */
const PROGRESS_STATUS_MS = 500;
/** A refused update shows on the canvas this long (the reason stays in the health endpoint). */
const FAILED_UPDATE_STATUS_MS = 10 * 60_000;

export = function (RED: NodeAPI) {
  const t = (key: string, params?: Record<string, string | number>): string => RED._(`${NS}.${key}`, params);
  const modelsDir = process.env.EDGE_LLM_MODELS_DIR || path.join(userDir(RED.settings), 'models');
  const options: RegistryOptions = {
    modelsDir,
    // In the test helper there is no user directory: hash once per process then.
    identityCacheFile: RED.settings.userDir
      ? path.join(RED.settings.userDir, 'edge-llm', 'model-hashes.json')
      : undefined,
    onLog: (level, message) => (level === 'warn' ? RED.log.warn(message) : RED.log.info(message)),
  };
  // Made on first use: a flow without llm-runtime starts no child process.
  let child: RuntimeProcess | undefined;
  let inProcess: RuntimeRegistry | undefined;
  let servers: ServerRegistry | undefined;
  /** The deployed runtimes' lifecycles: their versions are in use for every other runtime's clean-up. */
  const lifecycles = new Set<ModelLifecycle>();
  /** The deployed llm-runtime nodes, for the admin routes that name one by its name. */
  const deployed = new Set<LlmRuntimeNode>();
  const registryFor = (isolation: string | undefined): Registry => {
    if (isolation === 'server') return (servers ??= new ServerRegistry());
    if (isolation === 'in-process') return (inProcess ??= new RuntimeRegistry(options));
    return (child ??= new RuntimeProcess({
      ...options,
      onLog: (level, message) =>
        level === 'error'
          ? RED.log.error(message)
          : level === 'warn'
            ? RED.log.warn(message)
            : RED.log.info(message),
    }));
  };

  function LlmRuntime(this: LlmRuntimeNode, def: LlmRuntimeNodeDef): void {
    RED.nodes.createNode(this, def);
    const users = new Map<string, RuntimeUser>();
    deployed.add(this);

    const statusOf = (s: LeaseStatus | undefined): NodeStatus => {
      if (this.configError) return { fill: 'red', shape: 'ring', text: t('status.config-error') };
      if (!s) return { fill: 'grey', shape: 'ring', text: t('status.idle') };
      switch (s.state) {
        case 'resolving':
          return { fill: 'yellow', shape: 'ring', text: t('status.resolving') };
        case 'downloading':
          return {
            fill: 'yellow',
            shape: 'ring',
            text: t('status.downloading', { percent: Math.round(s.progress * 100) }),
          };
        case 'loading':
          return {
            fill: 'yellow',
            shape: 'ring',
            text: t('status.loading', { percent: Math.round(s.progress * 100) }),
          };
        case 'reloading':
          return { fill: 'yellow', shape: 'ring', text: t('status.reloading') };
        case 'restarting':
          return { fill: 'red', shape: 'ring', text: t('status.restarting') };
        case 'error':
          return {
            fill: 'red',
            shape: 'ring',
            text: statusText(`${t('status.error')}: ${s.error?.message ?? ''}`),
          };
        case 'closed':
          return {};
        case 'ready': {
          const update = this.lifecycle?.info().update;
          if (update && update.phase !== 'done' && update.phase !== 'failed') {
            return {
              fill: 'blue',
              shape: 'ring',
              text: t('status.updating', { to: update.to, phase: t(`phase.${update.phase}`) }),
            };
          }
          if (update?.phase === 'failed' && Date.now() - update.at < FAILED_UPDATE_STATUS_MS) {
            return { fill: 'yellow', shape: 'dot', text: t('status.update-failed', { to: update.to }) };
          }
          const m = this.lease?.runtime?.getMetrics();
          if (m && (m.queued > 0 || m.active > 0)) {
            return {
              fill: 'blue',
              shape: 'dot',
              text: t('status.busy', { active: m.active, queued: m.queued }),
            };
          }
          return { fill: 'green', shape: 'dot', text: t('status.ready') };
        }
      }
    };
    this.currentStatus = () => statusOf(this.lease?.status);

    // Queue depth and load progress change often: at most a few status updates a second.
    const throttle = new StatusThrottle(() => {
      const status = this.currentStatus();
      const state = this.configError ? 'config-error' : (this.lease?.status.state ?? 'closed');
      users.forEach((user) => user.runtimeStatus(status, state));
    }, 250);
    const broadcast = (): void => throttle.now();
    const broadcastSoon = (wait?: number): void => throttle.soon(wait);
    const onChange = (): void => broadcastSoon();

    this.register = (user) => {
      users.set(user.id, user);
      user.runtimeStatus(
        this.currentStatus(),
        this.configError ? 'config-error' : (this.lease?.status.state ?? 'closed'),
      );
    };
    this.deregister = (user) => {
      users.delete(user.id);
    };

    try {
      const settings = parseContextSettings(def);
      if (def.isolation && !['child', 'in-process', 'server'].includes(def.isolation))
        throw new Error(t('errors.bad-isolation'));
      const adapters = parseAdapters(def.adapters ?? '');
      if (def.isolation === 'server') {
        if (adapters.length) throw new Error(t('errors.adapters-on-server'));
        this.lease = acquireServer(def, this.credentials ?? {}, settings);
      } else {
        if (!def.model || !def.model.trim()) throw new Error(t('errors.no-model'));
        const publicKey =
          this.credentials?.publicKey?.trim() || process.env.EDGE_LLM_MODEL_PUBLIC_KEY?.trim();
        if (publicKey) parsePublicKey(publicKey);
        checkEnvName(def.modelKeyEnv, t('label.modelKeyEnv'));
        const modelKey = secretFrom(this.credentials?.modelKey, def.modelKeyEnv, 'EDGE_LLM_MODEL_KEY');
        const keep =
          def.keepVersions === undefined || String(def.keepVersions).trim() === ''
            ? 3
            : Number(def.keepVersions);
        if (!Number.isInteger(keep) || keep < 0 || keep > 1000)
          throw new Error(t('errors.bad-keep-versions', { value: String(def.keepVersions) }));
        this.lifecycle = new ModelLifecycle({
          registry: registryFor(def.isolation),
          source: def.model.trim(),
          settings,
          publicKey: publicKey || undefined,
          adapters,
          modelKey,
          keepVersions: keep,
          inUse,
          modelsDir,
          // The version an update switched to is loaded again after a restart.
          stateFile: RED.settings.userDir
            ? path.join(
                userDir(RED.settings),
                'edge-llm',
                'model-versions',
                `${this.id.replace(/[^\w.-]/g, '_')}.json`,
              )
            : undefined,
          onLog: (level, message) => (level === 'warn' ? this.warn(message) : this.log(message)),
        });
        this.lease = this.lifecycle;
        lifecycles.add(this.lifecycle);
        this.lifecycle.on('lifecycle', () => broadcast());
      }
      let listening: { off(event: 'change', listener: () => void): unknown } | undefined;
      this.lease.on('status', (s: LeaseStatus) => {
        if (s.state === 'error') {
          const what = def.isolation === 'server' ? 'errors.server-failed' : 'errors.load-failed';
          this.error(`${t(what)}: ${s.error?.message ?? ''}`);
        }
        if (s.state === 'ready') {
          this.log(t('log.ready', { model: redactUrl(def.model) }));
          const runtime = this.lease?.runtime;
          if (runtime && runtime !== listening) {
            listening?.off('change', onChange);
            runtime.on('change', onChange);
            listening = runtime;
          }
        }
        if ((s.state === 'loading' || s.state === 'downloading') && s.progress > 0 && s.progress < 1)
          broadcastSoon(PROGRESS_STATUS_MS);
        else broadcast();
      });
    } catch (err) {
      this.configError = (err as Error).message;
      this.error(`${t('errors.bad-config')}: ${this.configError}`);
    }

    const telemetry = startTelemetry(this, def);

    this.on('close', (_removed: boolean, done: () => void) => {
      throttle.close();
      users.clear();
      deployed.delete(this);
      const lease = this.lease;
      // The runtime may outlive this node (another config node shares it): stop listening to it.
      lease?.runtime?.off('change', onChange);
      if (this.lifecycle) lifecycles.delete(this.lifecycle);
      this.lease = undefined;
      this.lifecycle = undefined;
      Promise.all([lease?.release(), telemetry?.stop()]).then(
        () => done(),
        (err: Error) => {
          this.warn(err.message);
          done();
        },
      );
    });
  }

  /** The "OpenAI-compatible server" backend: the model field names the server's model (blank: its first). */
  function acquireServer(
    def: LlmRuntimeNodeDef,
    credentials: LlmRuntimeCredentials,
    settings: ReturnType<typeof parseContextSettings>,
  ): Lease {
    if (!def.serverUrl || !def.serverUrl.trim()) throw new Error(t('errors.no-server-url'));
    const url = serverBaseUrl(def.serverUrl);
    const retries = def.retries === undefined || String(def.retries).trim() === '' ? 2 : Number(def.retries);
    if (!Number.isInteger(retries) || retries < 0 || retries > 10)
      throw new Error(t('errors.bad-retries', { value: String(def.retries) }));
    return (registryFor('server') as ServerRegistry).acquire({
      source: def.model?.trim() || url,
      settings,
      server: {
        url,
        apiKey: credentials.apiKey || undefined,
        model: def.model?.trim() || undefined,
        retries,
      },
    });
  }

  /**
   * Metadata-only telemetry through an edge-mqtt-broker: counts, rates, latencies, memory and the
   * model's name, never a prompt or an answer (see lib/runtime/telemetry.ts).
   */
  function startTelemetry(
    node: LlmRuntimeNode,
    def: LlmRuntimeNodeDef,
  ): { stop(): Promise<void> } | undefined {
    if (!def.telemetryBroker) return undefined;
    const broker = RED.nodes.getNode(def.telemetryBroker) as EdgeMqttBrokerNode | null;
    if (!broker) {
      node.error(t('errors.no-telemetry-broker'));
      return undefined;
    }
    const seconds =
      def.telemetryInterval === undefined || String(def.telemetryInterval).trim() === ''
        ? 60
        : Number(def.telemetryInterval);
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86_400) {
      node.error(t('errors.bad-telemetry-interval', { value: String(def.telemetryInterval) }));
      return undefined;
    }
    const topic = (def.telemetryTopic ?? '').trim() || `edge-llm/telemetry/${node.id}`;
    const backend = def.isolation === 'server' || def.isolation === 'in-process' ? def.isolation : 'child';
    broker.register(node);
    let warned = '';
    const publisher = new TelemetryPublisher({
      intervalMs: seconds * 1000,
      sample: async () => {
        const runtime = node.lease?.runtime as
          (LlmRuntime & { modelInfo?: ModelInfo; queueLimit?: number }) | undefined;
        return {
          runtime: { id: node.id, name: node.name ?? '' },
          backend,
          state: node.configError ? 'config-error' : (node.lease?.status.state ?? 'closed'),
          source: def.model || def.serverUrl || '',
          modelInfo: runtime?.modelInfo,
          sha256: runtime?.modelSha256 || undefined,
          metrics: runtime?.getMetrics(),
          queueLimit: runtime?.queueLimit ?? node.lease?.settings.queueLimit,
          runtimeRss: backend === 'child' ? await processRss(child?.pid) : undefined,
        };
      },
      publish: async (payload) => {
        const connection = broker.connection;
        if (!connection) throw new Error(broker.configError ?? t('errors.no-telemetry-broker'));
        await connection.publish(topic, payload);
        warned = '';
      },
      // A broker that stays away fails every interval: say so once per distinct reason.
      onError: (err) => {
        if (err.message === warned) return;
        warned = err.message;
        node.warn(t('errors.telemetry-failed', { topic, message: err.message }));
      },
    });
    publisher.start();
    return {
      stop: async () => {
        publisher.stop();
        await broker.deregister(node);
      },
    };
  }

  RED.nodes.registerType('llm-runtime', LlmRuntime as unknown as (this: Node, def: NodeDef) => void, {
    credentials: {
      publicKey: { type: 'text' },
      apiKey: { type: 'password' },
      modelKey: { type: 'password' },
    },
  });

  /** What a clean-up of old versions must leave: files loaded anywhere, and every runtime's versions. */
  async function inUse(): Promise<string[]> {
    const infos = await Promise.all(
      [child, inProcess].map((r) => (r ? r.list().catch(() => [] as RuntimeInfo[]) : [])),
    );
    const paths = infos.flat().map((info) => info.model.path);
    const versions = [...lifecycles].flatMap((lc) => {
      const info = lc.info();
      return [info.model, ...(info.previous ? [info.previous] : [])];
    });
    return [...paths, ...versions];
  }

  const registries = (): Registry[] => {
    const list: Registry[] = [];
    if (child) list.push(child);
    if (inProcess) list.push(inProcess);
    if (servers) list.push(servers);
    return list;
  };
  const tag = (infos: RuntimeInfo[], isolation: 'child' | 'in-process' | 'server'): RuntimeInfo[] =>
    infos.map((info) => ({ ...info, process: info.process ?? isolation }));
  const all = async (probe: boolean): Promise<RuntimeInfo[]> => {
    const lists = await Promise.all(
      registries().map(async (r) =>
        tag(
          await (probe ? r.probe() : r.list()),
          r === inProcess ? 'in-process' : r === servers ? 'server' : 'child',
        ),
      ),
    );
    return lists.flat();
  };

  // Every loaded model; ?probe=1 also asks each ready one for a few tokens. A probe costs model
  // time, so it needs the write permission, and runs one at a time outside the production queue.
  RED.httpAdmin.get('/edge-llm/runtimes', RED.auth.needsPermission('llm-runtime.read'), (req, res) => {
    const answer = (probe: boolean): void => {
      all(probe).then(
        (infos) => res.json(infos),
        (err: Error) => res.status(503).json({ error: err.message }),
      );
    };
    if (req.query.probe === undefined) return answer(false);
    RED.auth.needsPermission('llm-runtime.write')(req, res, () => answer(true));
  });

  /**
   * The llm-runtime config node with this id, else the one deployed with this name (a flow may ask
   * for its runtime by name: ids change when a flow is imported as a copy), or a 404 / 409 said to
   * the caller.
   */
  const runtimeNode = (id: string, res: { status(code: number): { json(body: unknown): void } }) => {
    let node = RED.nodes.getNode(id) as LlmRuntimeNode | null;
    if (!node || (node as Node).type !== 'llm-runtime') {
      const named = [...deployed].filter((n) => n.name === id);
      if (named.length > 1) {
        res.status(409).json({ error: `${named.length} llm-runtime nodes are named "${id}": ask by id.` });
        return undefined;
      }
      node = named[0] ?? null;
    }
    if (!node) {
      res.status(404).json({ error: `No llm-runtime node with id or name "${id}" is deployed.` });
      return undefined;
    }
    if (!node.lifecycle) {
      res.status(409).json({ error: node.configError ?? 'This llm-runtime has no model.' });
      return undefined;
    }
    return node.lifecycle;
  };

  // One runtime's health: loaded, name@version, sha256 and a probe's answer (reused for 10 s, so
  // polling it costs the model little). 200 when it answers, else 503: a load balancer's check.
  RED.httpAdmin.get(
    '/edge-llm/runtimes/:id/health',
    RED.auth.needsPermission('llm-runtime.read'),
    (req, res) => {
      const lifecycle = runtimeNode(String(req.params.id), res);
      if (!lifecycle) return;
      lifecycle.health().then(
        (report) => res.status(report.loaded && report.probe?.ok ? 200 : 503).json(report),
        (err: Error) => res.status(503).json({ loaded: false, error: err.message }),
      );
    },
  );

  // Update (body: {model} | {name, version, source, sha256?, signature?} | {manifest}) or roll
  // back; answers when the new version serves (200) or was refused and the old one kept (409).
  RED.httpAdmin.post(
    '/edge-llm/runtimes/:id/update',
    RED.auth.needsPermission('llm-runtime.write'),
    (req, res) => {
      const lifecycle = runtimeNode(String(req.params.id), res);
      if (!lifecycle) return;
      let request;
      try {
        request = parseUpdateRequest(req.body);
      } catch (err) {
        res.status(400).json({ error: (err as Error).message });
        return;
      }
      lifecycle.update(request).then(
        (result) => res.status(result.ok ? 200 : 409).json(result),
        (err: Error) => res.status(isLlmError(err, 'closed') ? 409 : 500).json({ error: err.message }),
      );
    },
  );
  RED.httpAdmin.post(
    '/edge-llm/runtimes/:id/rollback',
    RED.auth.needsPermission('llm-runtime.write'),
    (req, res) => {
      const lifecycle = runtimeNode(String(req.params.id), res);
      if (!lifecycle) return;
      lifecycle.rollback().then(
        (result) => res.status(result.ok ? 200 : 409).json(result),
        (err: Error) => res.status(isLlmError(err, 'closed') ? 409 : 500).json({ error: err.message }),
      );
    },
  );
};
