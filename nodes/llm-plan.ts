import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import {
  DEFAULT_CATALOGUE,
  PLAN_INSTRUCTION,
  assemblePlan,
  checkSteps,
  compileCatalogueOffLoop,
  completedSteps,
  describeCatalogue,
  isPlan,
  planInput,
  planSchema,
  type CompiledCatalogue,
  type PlanRequest,
} from '../lib/llm/plan';
import { renderTemplate } from '../lib/llm/prompt';
import { compileSchemaOffLoop, type CompiledSchema } from '../lib/runtime';
import {
  LlmNodeSupport,
  parseGenerationSettings,
  withOverrides,
  type GenerationDef,
  type GenerationSettings,
  type SettingsMsg,
} from './llm-common';
import { formNumber } from './form';

interface LlmPlanDef extends NodeDef, GenerationDef {
  instruction: string;
  catalogue: string;
  maxSteps: string;
  /** Take msg.temperature, msg.maxTokens, msg.priority and msg.timeout. */
  overrides?: boolean;
}

type PlanMsg = NodeMessageInFlow &
  SettingsMsg & {
    constraints?: unknown;
    state?: unknown;
    feedback?: unknown;
    plan?: PlanRequest['previous'];
    llm?: unknown;
  };

interface GeneratedPlan {
  steps: Array<{ action: string; params: Record<string, unknown>; reason: string }>;
}

const NS = 'node-red-contrib-edge-llm/llm-plan:llm-plan';

export = function (RED: NodeAPI) {
  function LlmPlan(this: Node, def: LlmPlanDef): void {
    RED.nodes.createNode(this, def);
    const support = new LlmNodeSupport(RED, this, def.runtime, NS, def.sessions);
    let settings: GenerationSettings | undefined;
    let catalogue: CompiledCatalogue | undefined;
    let schema: CompiledSchema | undefined;
    let configError: string | undefined;
    // The catalogue and the plan schema are compiled off the event loop (a worker thread); a
    // message that comes before the check has finished waits for it, then ends as it would have.
    const checked = (async () => {
      settings = parseGenerationSettings(def);
      const rawCatalogue = def.catalogue?.trim() ? JSON.parse(def.catalogue) : DEFAULT_CATALOGUE;
      const maxSteps = formNumber(
        def.maxSteps,
        8,
        { min: 1, max: 64, whole: true },
        () => 'Max steps must be 1 to 64.',
      );
      const compiled = await compileCatalogueOffLoop(rawCatalogue);
      schema = await compileSchemaOffLoop(planSchema(compiled, maxSteps));
      catalogue = compiled;
    })().catch((err: Error) => {
      catalogue = undefined;
      schema = undefined;
      configError = `${support.t('errors.bad-config')}: ${err.message}`;
      this.status({ fill: 'red', shape: 'ring', text: support.t('status.config-error') });
      this.error(configError);
    });
    const instruction = def.instruction?.trim() ? def.instruction : PLAN_INSTRUCTION;

    support.onInput<PlanMsg>(async (msg, send, done) => {
      await checked;
      if (configError || !settings || !catalogue || !schema) throw new Error(configError);
      // The bound first, over everything the prompt is made of.
      support.checkInput(
        [msg.payload, msg.constraints, msg.state, msg.plan, msg.feedback].filter((v) => v !== undefined),
        settings,
      );
      if (
        msg.payload === undefined ||
        msg.payload === null ||
        (typeof msg.payload === 'string' && !msg.payload.trim())
      ) {
        throw new Error(support.t('errors.no-mission'));
      }
      const msgSettings = withOverrides(settings, msg, !!def.overrides);
      // A plan sent back (with msg.feedback) is a replan of its own mission.
      const previous = msg.plan ?? (isPlan(msg.payload) ? msg.payload : undefined);
      const request: PlanRequest = {
        mission: isPlan(msg.payload) ? msg.payload.mission : msg.payload,
        constraints: msg.constraints,
        state: msg.state,
        previous,
        feedback: msg.feedback,
      };
      const kept = completedSteps(request);
      // Kept steps come from the message, not the model: they too must be catalogue actions.
      const keptProblem = checkSteps(catalogue, kept);
      if (keptProblem) throw new Error(`${support.t('errors.bad-previous-plan')}: ${keptProblem}`);
      const runtime = await support.runtime(support.timeoutMs(msgSettings));
      const cat = catalogue;
      await support.ask<GeneratedPlan>(msg, send, done, {
        settings: msgSettings,
        runtime,
        system: [
          renderTemplate(instruction, (path) => RED.util.getMessageProperty(msg, path)).trim(),
          `Actions:\n${describeCatalogue(cat)}`,
          `The answer is one JSON object: {"steps": [{"action", "params", "reason"}, ...]}.`,
        ].join('\n\n'),
        examples: [],
        text: planInput(request, kept),
        schema,
        check: (value) => checkSteps(cat, value.steps),
        deliver: (result, elapsedMs) => {
          const plan = assemblePlan(request.mission, kept, result.value.steps, cat.hash, previous);
          return {
            payload: plan,
            path: ['Execute'],
            update: { plan, step: 0 },
            status: support.t('status.ok', {
              count: result.value.steps.length,
              ms: elapsedMs,
            }),
          };
        },
      });
    });

    support.closeWith();
  }

  // The deploy check of a catalogue, for the edit dialog: each problem with the action it is in.
  RED.httpAdmin.post(
    '/edge-llm/llm-plan/check-catalogue',
    RED.auth.needsPermission('llm-plan.read'),
    (req, res) => {
      const text = (req.body as { catalogue?: unknown } | undefined)?.catalogue;
      const reply = (errors: Array<{ path: string; message: string; text?: string }>) =>
        res.json(errors.length ? { ok: false, errors } : { ok: true });
      if (typeof text !== 'string' || !text.trim()) return reply([]);
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch (err) {
        return reply([{ path: '', message: (err as Error).message }]);
      }
      compileCatalogueOffLoop(raw).then(
        () => reply([]),
        (err: Error) => {
          const m = /^Catalogue action (\d+)(?: \([^)]*\))?(?:, parameter ([^:]+))?: ([\s\S]*)$/.exec(
            err.message,
          );
          reply([
            m
              ? {
                  path: `[${Number(m[1]) - 1}]${m[2] ? `.params.${m[2]}` : ''}`,
                  message: m[3],
                  text: err.message,
                }
              : { path: '', message: err.message },
          ]);
        },
      );
    },
  );

  RED.nodes.registerType('llm-plan', LlmPlan as unknown as (this: Node, def: NodeDef) => void);
};
