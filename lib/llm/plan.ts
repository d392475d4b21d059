import Ajv, { type ValidateFunction } from 'ajv';
import { createHash } from 'node:crypto';
import {
  describeErrors,
  loadValidator,
  precompileSchemas,
  stableStringify,
  type JsonSchema,
} from '../runtime';

/** One thing a plan may ask a machine to do, with the shape its parameters must have. */
export interface CatalogueAction {
  name: string;
  description: string;
  params: JsonSchema;
}

export interface PlanStep {
  id: string;
  action: string;
  params: Record<string, unknown>;
  reason: string;
  status?: 'pending' | 'done' | 'failed' | 'skipped';
}

export interface Plan {
  steps: PlanStep[];
  /** The mission the plan serves, carried so that a replan needs only the plan and the feedback. */
  mission: unknown;
  catalogueHash: string;
  replanned: boolean;
}

/** What the seed's inspection robot can do; a starting point users replace with their own. */
export const DEFAULT_CATALOGUE: CatalogueAction[] = [
  {
    name: 'move_to',
    description: 'Drive the robot to a zone.',
    params: {
      type: 'object',
      properties: { zone: { type: 'string', enum: ['A', 'B', 'C', 'D', 'dock'] } },
      required: ['zone'],
      additionalProperties: false,
    },
  },
  {
    name: 'read_sensor',
    description: 'Read one sensor where the robot is.',
    params: {
      type: 'object',
      properties: { sensor: { type: 'string', enum: ['temperature', 'pressure', 'vibration', 'gas'] } },
      required: ['sensor'],
      additionalProperties: false,
    },
  },
  {
    name: 'capture_image',
    description: 'Photograph a target for the report.',
    params: {
      type: 'object',
      properties: { target: { type: 'string', maxLength: 40 } },
      required: ['target'],
      additionalProperties: false,
    },
  },
  {
    name: 'set_valve',
    description: 'Move a valve to a position in percent open.',
    params: {
      type: 'object',
      properties: {
        id: { type: 'string', enum: ['V1', 'V2', 'V3', 'V4', 'V5', 'V6', 'V7', 'V8'] },
        position: { type: 'integer', minimum: 0, maximum: 100 },
      },
      required: ['id', 'position'],
      additionalProperties: false,
    },
  },
  {
    name: 'report',
    description: 'Send a short finding to the operator.',
    params: {
      type: 'object',
      properties: { summary: { type: 'string', maxLength: 160 } },
      required: ['summary'],
      additionalProperties: false,
    },
  },
];

export const PLAN_INSTRUCTION = [
  'You plan the steps of a robot mission.',
  'Use only the actions listed below, with parameters of the shape each one gives.',
  'Respect every constraint. Keep completed steps out of your answer: plan only what remains.',
  'Give each step a short reason.',
].join('\n');

export interface CompiledCatalogue {
  actions: CatalogueAction[];
  byName: Map<string, ValidateFunction>;
  hash: string;
}

const NAME = /^[a-z][a-z0-9_]{0,47}$/;

/** A parameter whose minimum is above its maximum would refuse every value: say so at deploy. */
function checkBounds(params: JsonSchema, where: string): void {
  const props = (params as { properties?: Record<string, { minimum?: unknown; maximum?: unknown }> })
    .properties;
  for (const [name, p] of Object.entries(props ?? {})) {
    if (typeof p?.minimum === 'number' && typeof p.maximum === 'number' && p.minimum > p.maximum) {
      throw new Error(
        `${where}, parameter ${name}: minimum (${p.minimum}) is greater than maximum (${p.maximum}).`,
      );
    }
  }
}

/** Checks a catalogue once, at deploy: names, descriptions, and a valid object schema per action. */
/** Catalogues compiled at deploy, by content: a redeploy of an unchanged node compiles nothing. */
const compiledCatalogues = new Map<string, CompiledCatalogue>();

export function compileCatalogue(raw: unknown): CompiledCatalogue {
  const key = createHash('sha256').update(stableStringify(raw)).digest('hex');
  const known = compiledCatalogues.get(key);
  if (known) return known;
  const compiled = compileCatalogueNow(raw);
  if (compiledCatalogues.size >= 16) compiledCatalogues.delete(compiledCatalogues.keys().next().value!);
  compiledCatalogues.set(key, compiled);
  return compiled;
}

function compileCatalogueNow(raw: unknown): CompiledCatalogue {
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new Error('The action catalogue must be a non-empty JSON array of {name, description, params}.');
  }
  const ajv = new Ajv({ allErrors: true, strict: false });
  const byName = new Map<string, ValidateFunction>();
  const actions: CatalogueAction[] = raw.map((item: Partial<CatalogueAction>, i) => {
    const where = `Catalogue action ${i + 1}`;
    if (typeof item?.name !== 'string' || !NAME.test(item.name)) {
      throw new Error(
        `${where}: "name" must be lower_snake_case letters, digits and _ (got ${JSON.stringify(item?.name)}).`,
      );
    }
    if (byName.has(item.name)) throw new Error(`${where}: "${item.name}" appears twice.`);
    const params = item.params ?? { type: 'object', properties: {}, additionalProperties: false };
    if (typeof params !== 'object' || params === null || (params as JsonSchema).type !== 'object') {
      throw new Error(`${where} (${item.name}): "params" must be a JSON Schema of type "object".`);
    }
    checkBounds(params as JsonSchema, `${where} (${item.name})`);
    try {
      byName.set(item.name, ajv.compile(params));
    } catch (err) {
      throw new Error(`${where} (${item.name}): invalid params schema: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return { name: item.name, description: String(item.description ?? ''), params };
  });
  return {
    actions,
    byName,
    hash: createHash('sha256').update(stableStringify(actions)).digest('hex').slice(0, 16),
  };
}

/**
 * compileCatalogue for a node being deployed: the same checks and result, but
 * ajv compiles the params schemas in a worker thread, never on Node-RED's event loop; catalogues
 * are kept by content, so a redeploy of an unchanged node compiles nothing.
 */
const precompiledCatalogues = new Map<string, Promise<CompiledCatalogue>>();

export function compileCatalogueOffLoop(raw: unknown): Promise<CompiledCatalogue> {
  // The plain JSON as the key (native, fast); the stable hash is a tree walk, done in the worker.
  const key = JSON.stringify(raw);
  const known = precompiledCatalogues.get(key);
  if (known) return known;
  const compiled = compileCatalogueOffLoopNow(raw);
  compiled.catch(() => precompiledCatalogues.delete(key));
  if (precompiledCatalogues.size >= 16)
    precompiledCatalogues.delete(precompiledCatalogues.keys().next().value!);
  precompiledCatalogues.set(key, compiled);
  return compiled;
}

async function compileCatalogueOffLoopNow(raw: unknown): Promise<CompiledCatalogue> {
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new Error('The action catalogue must be a non-empty JSON array of {name, description, params}.');
  }
  const names = new Set<string>();
  const actions: CatalogueAction[] = raw.map((item: Partial<CatalogueAction>, i) => {
    const where = `Catalogue action ${i + 1}`;
    if (typeof item?.name !== 'string' || !NAME.test(item.name)) {
      throw new Error(
        `${where}: "name" must be lower_snake_case letters, digits and _ (got ${JSON.stringify(item?.name)}).`,
      );
    }
    if (names.has(item.name)) throw new Error(`${where}: "${item.name}" appears twice.`);
    names.add(item.name);
    const params = item.params ?? { type: 'object', properties: {}, additionalProperties: false };
    if (typeof params !== 'object' || params === null || (params as JsonSchema).type !== 'object') {
      throw new Error(`${where} (${item.name}): "params" must be a JSON Schema of type "object".`);
    }
    checkBounds(params as JsonSchema, `${where} (${item.name})`);
    return { name: item.name, description: String(item.description ?? ''), params };
  });
  const reply = await precompileSchemas({ schemas: actions.map((a) => a.params), hashOf: actions });
  const byName = new Map<string, ValidateFunction>();
  for (const [i, action] of actions.entries()) {
    const result = reply.results[i];
    if ('error' in result) {
      throw new Error(`Catalogue action ${i + 1} (${action.name}): invalid params schema: ${result.error}`);
    }
    byName.set(action.name, loadValidator(result.code));
  }
  return { actions, byName, hash: reply.contentHash! };
}

/**
 * The answer's schema: a list of steps, each one branch per catalogue action, so the grammar can
 * only produce catalogue actions with parameters of that action's shape.
 */
export function planSchema(catalogue: CompiledCatalogue, maxSteps: number): JsonSchema {
  return {
    type: 'object',
    properties: {
      steps: {
        type: 'array',
        minItems: 1,
        maxItems: maxSteps,
        items: {
          anyOf: catalogue.actions.map((a) => ({
            type: 'object',
            properties: {
              action: { const: a.name },
              params: a.params,
              reason: { type: 'string', maxLength: 120 },
            },
            required: ['action', 'params', 'reason'],
            additionalProperties: false,
          })),
        },
      },
    },
    required: ['steps'],
    additionalProperties: false,
  };
}

/** Lists the actions for the model, one line each with the parameter shape. */
export function describeCatalogue(catalogue: CompiledCatalogue): string {
  return catalogue.actions
    .map((a) => `- ${a.name}${a.description ? `: ${a.description}` : ''} params ${JSON.stringify(a.params)}`)
    .join('\n');
}

/**
 * Checked again after decoding, whatever the grammar promised: an action outside the catalogue
 * or parameters its schema refuses make the whole plan invalid.
 */
export function checkSteps(
  catalogue: CompiledCatalogue,
  steps: Array<{ action: string; params: unknown }>,
): string | undefined {
  for (const [i, step] of steps.entries()) {
    const validate = catalogue.byName.get(step.action);
    if (!validate) return `Step ${i + 1} names "${step.action}", which is not in the action catalogue.`;
    if (!validate(step.params)) return `Step ${i + 1} (${step.action}): ${describeErrors(validate.errors)}`;
  }
  return undefined;
}

export interface PlanRequest {
  mission: unknown;
  constraints?: unknown;
  state?: unknown;
  previous?: { steps?: PlanStep[] };
  feedback?: unknown;
}

/** A plan this node made earlier (so the message is a replan request). */
export function isPlan(value: unknown): value is Plan {
  return (
    typeof value === 'object' && value !== null && Array.isArray((value as Plan).steps) && 'mission' in value
  );
}

/** Steps of a previous plan that are finished: a replan keeps them as they are. */
export function completedSteps(request: PlanRequest): PlanStep[] {
  const steps = Array.isArray(request.previous?.steps) ? request.previous.steps : [];
  const completedIds = new Set<string>(
    Array.isArray((request.feedback as { completed?: unknown })?.completed)
      ? ((request.feedback as { completed: unknown[] }).completed.map(String) as string[])
      : [],
  );
  return steps
    .filter((s) => s.status === 'done' || completedIds.has(s.id))
    .map((s) => ({ ...s, status: 'done' as const }));
}

/** The new text of the prompt: the mission and what is known now, as JSON the model can read. */
export function planInput(request: PlanRequest, kept: PlanStep[]): string {
  const input: Record<string, unknown> = { mission: request.mission };
  if (request.constraints !== undefined) input.constraints = request.constraints;
  if (request.state !== undefined) input.state = request.state;
  if (kept.length) input.completed_steps = kept.map(({ action, params }) => ({ action, params }));
  if (request.feedback !== undefined) input.feedback = request.feedback;
  return JSON.stringify(input);
}

/**
 * Numbers the model's steps after every id the previous plan used (kept or not), so a replan
 * never gives a new step the id of an old one: ids are ours, never the model's.
 */
export function assemblePlan(
  mission: unknown,
  kept: PlanStep[],
  generated: Array<{ action: string; params: Record<string, unknown>; reason: string }>,
  catalogueHash: string,
  previous?: { steps?: PlanStep[] },
): Plan {
  const used = [...kept, ...(Array.isArray(previous?.steps) ? previous.steps : [])]
    .map((step) => /^s(\d+)$/.exec(String(step?.id))?.[1])
    .map(Number)
    .filter(Number.isInteger);
  const first = Math.max(0, ...used) + 1;
  const steps = [
    ...kept,
    ...generated.map((s, i) => ({
      id: `s${first + i}`,
      action: s.action,
      params: s.params,
      reason: s.reason,
      status: 'pending' as const,
    })),
  ];
  return { steps, mission, catalogueHash, replanned: previous !== undefined };
}
