import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { parseUpdateRequest, type HealthReport, type UpdateResult } from '../lib/runtime';
import { isPlainObject } from '../lib/util/plain';
import type { LlmRuntimeNode } from './types';

interface LlmModelDef extends NodeDef {
  runtime: string;
}

const NS = 'node-red-contrib-edge-llm/llm-model:llm-model';
const ACTIONS = ['update', 'rollback', 'health'] as const;
type Action = (typeof ACTIONS)[number];

/**
 * Updates, rolls back or checks the model of an llm-runtime from a message (an update received over
 * MQTT, say). Config nodes have no input, so this small node is the door; the work is the
 * runtime's (lib/runtime/lifecycle.ts).
 */
export = function (RED: NodeAPI) {
  const t = (key: string, params?: Record<string, string | number>): string => RED._(`${NS}.${key}`, params);

  function LlmModel(this: Node, def: LlmModelDef): void {
    RED.nodes.createNode(this, def);
    const config = RED.nodes.getNode(def.runtime) as LlmRuntimeNode | null;
    /** Messages still waiting for their update: each ends exactly once, also when this node closes. */
    const pending = new Map<NodeMessageInFlow, (err?: Error) => void>();
    if (!config) this.status({ fill: 'red', shape: 'ring', text: t('status.no-runtime') });
    else this.status({});

    this.on('input', (msg: NodeMessageInFlow, send, done) => {
      let finished = false;
      const finish = (err?: Error): void => {
        if (finished) return;
        finished = true;
        pending.delete(msg);
        if (err) done(err);
        else done();
      };
      try {
        if (!config) throw new Error(t('errors.no-runtime'));
        const lifecycle = config.lifecycle;
        if (!lifecycle) throw new Error(config.configError ?? t('errors.no-model'));
        const payload = msg.payload;
        if (!isPlainObject(payload) || !ACTIONS.includes(payload.action as Action))
          throw new Error(t('errors.bad-action'));
        const action = payload.action as Action;
        const request = action === 'update' ? parseUpdateRequest(payload) : undefined;
        pending.set(msg, finish);
        if (action === 'health') {
          this.status({ fill: 'blue', shape: 'ring', text: t('status.probing') });
          void lifecycle.health().then((report: HealthReport) => {
            if (finished) return;
            this.status(
              report.loaded && report.probe?.ok
                ? { fill: 'green', shape: 'dot', text: report.model }
                : { fill: 'red', shape: 'ring', text: t('status.unhealthy', { model: report.model }) },
            );
            msg.payload = report;
            send(msg);
            finish();
          }, finish);
          return;
        }
        const to = action === 'rollback' ? (lifecycle.info().previous ?? '?') : targetOf(payload);
        this.status({ fill: 'blue', shape: 'ring', text: t('status.updating', { to }) });
        const work = request ? lifecycle.update(request) : lifecycle.rollback();
        void work.then((result: UpdateResult) => {
          if (finished) return;
          this.status(
            result.ok
              ? { fill: 'green', shape: 'dot', text: result.to }
              : { fill: 'yellow', shape: 'dot', text: t('status.kept', { model: result.from ?? '' }) },
          );
          msg.payload = result;
          send(msg);
          finish();
        }, finish);
      } catch (err) {
        this.status({ fill: 'red', shape: 'ring', text: t('status.error') });
        finish(err as Error);
      }
    });

    this.on('close', (_removed: boolean, done: () => void) => {
      // The runtime finishes an update it has begun; this node only stops waiting for it.
      for (const finish of [...pending.values()]) finish(new Error(t('errors.closed')));
      done();
    });
  }

  RED.nodes.registerType('llm-model', LlmModel as unknown as (this: Node, def: NodeDef) => void);
};

function targetOf(payload: Record<string, unknown>): string {
  if (typeof payload.model === 'string') return payload.model;
  const m = isPlainObject(payload.manifest) ? payload.manifest : payload;
  return `${String(m.name)}@${String(m.version)}`;
}
