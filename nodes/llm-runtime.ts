import * as path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeStatus } from 'node-red';
import { RuntimeRegistry, parseContextSettings, type LeaseStatus } from '../lib/runtime';
import type { LlmRuntimeNode, LlmRuntimeNodeDef, RuntimeUser } from './types';
import { redactUrl } from '../lib/redact';

const NS = 'node-red-contrib-edge-llm/llm-runtime:llm-runtime';

export = function (RED: NodeAPI) {
  const t = (key: string, params?: Record<string, string | number>): string => RED._(`${NS}.${key}`, params);
  const userDir = RED.settings.userDir ?? process.cwd();
  const modelsDir = process.env.EDGE_LLM_MODELS_DIR || path.join(userDir, 'models');
  const registry = new RuntimeRegistry({
    modelsDir,
    // In the test helper there is no user directory: hash once per process then.
    identityCacheFile: RED.settings.userDir ? path.join(userDir, 'edge-llm', 'model-hashes.json') : undefined,
  });

  function LlmRuntime(this: LlmRuntimeNode, def: LlmRuntimeNodeDef): void {
    RED.nodes.createNode(this, def);
    const users = new Map<string, RuntimeUser>();
    let lastStatusAt = 0;
    let pendingStatus: NodeJS.Timeout | undefined;

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
        case 'error':
          return { fill: 'red', shape: 'ring', text: `${t('status.error')}: ${s.error?.message ?? ''}` };
        case 'closed':
          return {};
        case 'ready': {
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

    const broadcast = (): void => {
      const status = this.currentStatus();
      const state = this.configError ? 'config-error' : (this.lease?.status.state ?? 'closed');
      users.forEach((user) => user.runtimeStatus(status, state));
    };
    // Queue depth changes on every request: at most a few status updates a second.
    const broadcastSoon = (): void => {
      if (pendingStatus) return;
      const wait = Math.max(0, 250 - (Date.now() - lastStatusAt));
      pendingStatus = setTimeout(() => {
        pendingStatus = undefined;
        lastStatusAt = Date.now();
        broadcast();
      }, wait);
    };

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
      if (!def.model || !def.model.trim()) throw new Error(t('errors.no-model'));
      this.lease = registry.acquire({ source: def.model, settings });
      this.lease.on('status', (s: LeaseStatus) => {
        if (s.state === 'error') this.error(`${t('errors.load-failed')}: ${s.error?.message ?? ''}`);
        if (s.state === 'ready') {
          this.log(t('log.ready', { model: redactUrl(def.model) }));
          this.lease?.runtime?.on('change', broadcastSoon);
        }
        broadcast();
      });
    } catch (err) {
      this.configError = (err as Error).message;
      this.error(`${t('errors.bad-config')}: ${this.configError}`);
    }

    this.on('close', (_removed: boolean, done: () => void) => {
      if (pendingStatus) clearTimeout(pendingStatus);
      users.clear();
      const lease = this.lease;
      // The runtime may outlive this node (another config node shares it): stop listening to it.
      lease?.runtime?.off('change', broadcastSoon);
      this.lease = undefined;
      (lease ? lease.release() : Promise.resolve()).then(
        () => done(),
        (err: Error) => {
          this.warn(err.message);
          done();
        },
      );
    });
  }

  RED.nodes.registerType('llm-runtime', LlmRuntime as unknown as (this: Node, def: NodeDef) => void);

  // Read-only view of every loaded model; ?probe=1 also asks each ready one for a few tokens.
  RED.httpAdmin.get('/edge-llm/runtimes', RED.auth.needsPermission('llm-runtime.read'), (req, res) => {
    const infos = registry.list();
    if (req.query.probe === undefined) {
      res.json(infos);
      return;
    }
    Promise.all(
      infos.map(async (info) => {
        const runtime = registry.get(info.id);
        if (!runtime) return { ...info, probe: { ok: false, error: info.state } };
        const started = Date.now();
        try {
          const r = await runtime.complete('Hello', { maxTokens: 4, priority: 'low', timeoutMs: 30_000 });
          return {
            ...info,
            probe: { ok: true, ms: Date.now() - started, tokens: r.tokensOut, text: r.text },
          };
        } catch (err) {
          return { ...info, probe: { ok: false, error: (err as Error).message } };
        }
      }),
    ).then((probed) => res.json(probed));
  });
};
