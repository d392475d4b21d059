import { createHash } from 'node:crypto';
import Ajv, { type ErrorObject } from 'ajv';
import { canonicalJson } from '../signing';
import { FORBIDDEN_KEYS, type PathTemplate, parsePathTemplate, templateRefs } from './paths';

export type Source = 'msg' | 'flow' | 'global';
export type Scalar = string | number | boolean;
export type CompareOp = '<' | '<=' | '>' | '>=' | '==' | '!=' | 'in' | 'notIn';

export interface ParamRule {
  type: 'number' | 'integer' | 'string' | 'boolean';
  required?: boolean;
  min?: number;
  max?: number;
  enum?: Scalar[];
  pattern?: string;
  maxLength?: number;
  /** The unit the limits are in; a value may then also be given as `{value, unit}` with this unit. */
  unit?: string;
  description?: string;
}

export interface RateLimitRule {
  /** `action`: one bucket for the action; `device`: one per device; `all`: one for every action. */
  per: 'action' | 'device' | 'all';
  capacity: number;
  refillPerSecond: number;
}

export interface LiveRef {
  source: Source;
  path: string;
}

export interface RateOfChangeRule {
  param: string;
  maxPerSecond: number;
  /** Where to read the present set-point when none has been approved since deploy. */
  initial?: LiveRef;
}

export type CostRule = number | { param: string; factor?: number };

export interface ActionRule {
  description?: string;
  params?: Record<string, ParamRule>;
  devices?: string[];
  classes?: string[];
  requiresApproval?: boolean;
  rateLimits?: RateLimitRule[];
  rateOfChange?: RateOfChangeRule[];
  costs?: Record<string, CostRule>;
}

export interface Match {
  action?: string | string[];
  class?: string | string[];
  device?: string | string[];
}

export interface Condition extends LiveRef {
  op: CompareOp;
  value: Scalar | Scalar[];
}

export interface Interlock {
  id: string;
  description?: string;
  when?: Match;
  require: Condition | Condition[];
  message?: string;
}

export interface Policy {
  $schema?: string;
  name?: string;
  version?: string;
  description?: string;
  actions: Record<string, ActionRule>;
  interlocks?: Interlock[];
  rateLimits?: RateLimitRule[];
  approval?: { classes?: string[]; timeoutSeconds?: number; maxPending?: number };
  plan?: {
    maxSteps?: number;
    budgets?: Record<string, { max: number; unit?: string; description?: string }>;
  };
  signature?: { ttlSeconds?: number };
}

export interface CompiledParam extends ParamRule {
  name: string;
  regex?: RegExp;
}

export interface CompiledCondition {
  source: Source;
  path: PathTemplate;
  pathText: string;
  op: CompareOp;
  value: Scalar | Scalar[];
}

export interface CompiledRateOfChange {
  param: string;
  maxPerSecond: number;
  initial?: { source: Source; path: PathTemplate; pathText: string };
}

export interface CompiledAction {
  name: string;
  params: Map<string, CompiledParam>;
  devices?: Set<string>;
  classes: Set<string>;
  approvalClasses: string[];
  requiresApproval: boolean;
  rateLimits: RateLimitRule[];
  rateOfChange: CompiledRateOfChange[];
  costs: Array<{ budget: string; cost: CostRule }>;
}

export interface CompiledInterlock {
  id: string;
  when: { action?: Set<string>; class?: Set<string>; device?: Set<string> };
  conditions: CompiledCondition[];
  message?: string;
}

export interface CompiledPolicy {
  policy: Policy;
  /** sha256 of the policy's canonical JSON, hex: names the policy version in every decision. */
  hash: string;
  actions: Map<string, CompiledAction>;
  interlocks: CompiledInterlock[];
  rateLimits: RateLimitRule[];
  maxSteps: number;
  budgets: Map<string, { max: number; unit?: string }>;
  signatureTtlMs: number;
  approvalTimeoutMs: number;
  maxPending: number;
}

export type CompileResult = { ok: true; policy: CompiledPolicy } | { ok: false; errors: string[] };

export const DEFAULTS = {
  maxSteps: 50,
  signatureTtlSeconds: 60,
  approvalTimeoutSeconds: 300,
  maxPending: 100,
} as const;

const NAME = '^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$';
const notForbidden = { not: { enum: [...FORBIDDEN_KEYS] } };
const nameSchema = { type: 'string', pattern: NAME, ...notForbidden };
const text = { type: 'string', maxLength: 1000 };
const scalar = { type: ['string', 'number', 'boolean'] };
const oneOrMany = { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1 }] };
const liveRef = {
  type: 'object',
  additionalProperties: false,
  required: ['source', 'path'],
  properties: {
    source: { enum: ['msg', 'flow', 'global'] },
    path: { type: 'string', minLength: 1, maxLength: 256 },
  },
};
const rateLimit = (per: string[]) => ({
  type: 'object',
  additionalProperties: false,
  required: ['per', 'capacity', 'refillPerSecond'],
  properties: {
    per: { enum: per },
    capacity: { type: 'integer', minimum: 1, maximum: 1e6 },
    refillPerSecond: { type: 'number', exclusiveMinimum: 0, maximum: 1e6 },
  },
});
const condition = {
  type: 'object',
  additionalProperties: false,
  required: ['source', 'path', 'op', 'value'],
  properties: {
    ...liveRef.properties,
    op: { enum: ['<', '<=', '>', '>=', '==', '!=', 'in', 'notIn'] },
    value: { anyOf: [scalar, { type: 'array', items: scalar, maxItems: 1000 }] },
  },
};

/** JSON Schema of the policy document (draft-07), also shown in the node's help. */
export const POLICY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['actions'],
  properties: {
    $schema: { type: 'string' },
    name: text,
    version: text,
    description: text,
    actions: {
      type: 'object',
      minProperties: 1,
      propertyNames: nameSchema,
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          description: text,
          params: {
            type: 'object',
            propertyNames: nameSchema,
            additionalProperties: {
              type: 'object',
              additionalProperties: false,
              required: ['type'],
              properties: {
                type: { enum: ['number', 'integer', 'string', 'boolean'] },
                required: { type: 'boolean' },
                min: { type: 'number' },
                max: { type: 'number' },
                enum: { type: 'array', minItems: 1, maxItems: 1000, items: scalar },
                pattern: { type: 'string', maxLength: 500 },
                maxLength: { type: 'integer', minimum: 0 },
                unit: { type: 'string', minLength: 1, maxLength: 32 },
                description: text,
              },
            },
          },
          devices: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
          classes: { type: 'array', items: nameSchema },
          requiresApproval: { type: 'boolean' },
          rateLimits: { type: 'array', items: rateLimit(['action', 'device']) },
          rateOfChange: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['param', 'maxPerSecond'],
              properties: {
                param: nameSchema,
                maxPerSecond: { type: 'number', minimum: 0 },
                initial: liveRef,
              },
            },
          },
          costs: {
            type: 'object',
            propertyNames: nameSchema,
            additionalProperties: {
              anyOf: [
                { type: 'number', minimum: 0 },
                {
                  type: 'object',
                  additionalProperties: false,
                  required: ['param'],
                  properties: { param: nameSchema, factor: { type: 'number', minimum: 0 } },
                },
              ],
            },
          },
        },
      },
    },
    interlocks: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'require'],
        properties: {
          id: nameSchema,
          description: text,
          when: {
            type: 'object',
            additionalProperties: false,
            properties: { action: oneOrMany, class: oneOrMany, device: oneOrMany },
          },
          require: { anyOf: [condition, { type: 'array', minItems: 1, items: condition }] },
          message: text,
        },
      },
    },
    rateLimits: { type: 'array', items: rateLimit(['device', 'all']) },
    approval: {
      type: 'object',
      additionalProperties: false,
      properties: {
        classes: { type: 'array', items: nameSchema },
        timeoutSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 86400 },
        maxPending: { type: 'integer', minimum: 1, maximum: 10000 },
      },
    },
    plan: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxSteps: { type: 'integer', minimum: 1, maximum: 1000 },
        budgets: {
          type: 'object',
          propertyNames: nameSchema,
          additionalProperties: {
            type: 'object',
            additionalProperties: false,
            required: ['max'],
            properties: {
              max: { type: 'number', minimum: 0 },
              unit: { type: 'string', maxLength: 32 },
              description: text,
            },
          },
        },
      },
    },
    signature: {
      type: 'object',
      additionalProperties: false,
      properties: { ttlSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 3600 } },
    },
  },
};

let validateSchema: ReturnType<Ajv['compile']> | undefined;

function schemaValidator() {
  // Compiled once per process on first use: it is a pure function of a constant schema.
  validateSchema ??= new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(POLICY_SCHEMA);
  return validateSchema;
}

function where(instancePath: string): string {
  if (!instancePath) return 'policy';
  return (
    'policy' +
    instancePath
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
      .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
      .join('')
  );
}

function describeError(e: ErrorObject): string {
  const at = where(e.instancePath);
  switch (e.keyword) {
    case 'additionalProperties':
      return `${at}: unknown property "${(e.params as { additionalProperty: string }).additionalProperty}"`;
    case 'required':
      return `${at}: missing required property "${(e.params as { missingProperty: string }).missingProperty}"`;
    case 'enum':
      return `${at}: must be one of ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`;
    case 'propertyNames':
      return `${at}: the name "${(e.params as { propertyName: string }).propertyName}" is not allowed (letters, digits, _ . : -; at most 64)`;
    default:
      return `${at}: ${e.message ?? e.keyword}`;
  }
}

function list(v: string | string[] | undefined): Set<string> | undefined {
  return v === undefined ? undefined : new Set(Array.isArray(v) ? v : [v]);
}

const NUMERIC = new Set(['number', 'integer']);

/** Hash that names a policy version: sha256 over its canonical JSON, so formatting does not matter. */
export function policyHash(policy: unknown): string {
  return createHash('sha256').update(canonicalJson(policy)).digest('hex');
}

/** Parses policy JSON text, reporting a syntax error with its line and column. */
export function parsePolicyText(
  textValue: string,
): { ok: true; value: unknown } | { ok: false; errors: string[] } {
  try {
    return { ok: true, value: JSON.parse(textValue) };
  } catch (err) {
    const message = (err as Error).message;
    const pos = /position (\d+)/.exec(message);
    if (pos) {
      const before = textValue.slice(0, Number(pos[1]));
      const line = before.split('\n').length;
      const column = Number(pos[1]) - before.lastIndexOf('\n');
      return { ok: false, errors: [`policy is not valid JSON (line ${line}, column ${column}): ${message}`] };
    }
    return { ok: false, errors: [`policy is not valid JSON: ${message}`] };
  }
}

/**
 * Validates a policy (JSON Schema, then the cross-references a schema cannot express) and compiles
 * it into lookup structures. Every problem is reported, each naming where it is.
 */
export function compilePolicy(input: unknown): CompileResult {
  const validate = schemaValidator();
  if (!validate(input)) {
    const errors = [...new Set((validate.errors ?? []).map(describeError))];
    return { ok: false, errors };
  }
  const policy = input as Policy;
  const errors: string[] = [];
  const budgets = new Map(Object.entries(policy.plan?.budgets ?? {}));
  const approvalClasses = new Set(policy.approval?.classes ?? []);
  const usedClasses = new Set<string>();
  const actions = new Map<string, CompiledAction>();

  for (const [name, rule] of Object.entries(policy.actions)) {
    const at = `policy.actions.${name}`;
    const params = new Map<string, CompiledParam>();
    for (const [pname, prule] of Object.entries(rule.params ?? {})) {
      const pat = `${at}.params.${pname}`;
      const numeric = NUMERIC.has(prule.type);
      const compiled: CompiledParam = { ...prule, name: pname };
      if (!numeric && (prule.min !== undefined || prule.max !== undefined || prule.unit !== undefined)) {
        errors.push(`${pat}: min, max and unit apply only to number and integer parameters`);
      }
      if (prule.type !== 'string' && (prule.pattern !== undefined || prule.maxLength !== undefined)) {
        errors.push(`${pat}: pattern and maxLength apply only to string parameters`);
      }
      if (prule.min !== undefined && prule.max !== undefined && prule.min > prule.max) {
        errors.push(`${pat}: min (${prule.min}) is greater than max (${prule.max})`);
      }
      for (const v of prule.enum ?? []) {
        const ok = numeric
          ? typeof v === 'number' && (prule.type === 'number' || Number.isInteger(v))
          : typeof v === prule.type;
        if (!ok) errors.push(`${pat}: enum value ${JSON.stringify(v)} is not a ${prule.type}`);
      }
      if (prule.pattern !== undefined) {
        try {
          compiled.regex = new RegExp(prule.pattern, 'u');
        } catch (err) {
          errors.push(`${pat}: pattern is not a valid regular expression: ${(err as Error).message}`);
        }
      }
      params.set(pname, compiled);
    }
    const rateOfChange: CompiledRateOfChange[] = [];
    for (const [i, roc] of (rule.rateOfChange ?? []).entries()) {
      const p = params.get(roc.param);
      if (!p || !NUMERIC.has(p.type)) {
        errors.push(`${at}.rateOfChange[${i}]: "${roc.param}" is not a numeric parameter of ${name}`);
      }
      let initial: CompiledRateOfChange['initial'];
      if (roc.initial) {
        const parsed = checkTemplate(
          roc.initial.path,
          `${at}.rateOfChange[${i}].initial.path`,
          [[name, params]],
          errors,
        );
        if (parsed) initial = { source: roc.initial.source, path: parsed, pathText: roc.initial.path };
      }
      rateOfChange.push({ param: roc.param, maxPerSecond: roc.maxPerSecond, initial });
    }
    const costs: CompiledAction['costs'] = [];
    for (const [budget, cost] of Object.entries(rule.costs ?? {})) {
      if (!budgets.has(budget))
        errors.push(`${at}.costs.${budget}: no budget "${budget}" in policy.plan.budgets`);
      if (typeof cost === 'object') {
        const p = params.get(cost.param);
        if (!p || !NUMERIC.has(p.type)) {
          errors.push(`${at}.costs.${budget}: "${cost.param}" is not a numeric parameter of ${name}`);
        }
      }
      costs.push({ budget, cost });
    }
    const classes = new Set(rule.classes ?? []);
    classes.forEach((c) => usedClasses.add(c));
    const matched = [...classes].filter((c) => approvalClasses.has(c));
    actions.set(name, {
      name,
      params,
      devices: rule.devices ? new Set(rule.devices) : undefined,
      classes,
      approvalClasses: matched,
      requiresApproval: rule.requiresApproval === true || matched.length > 0,
      rateLimits: rule.rateLimits ?? [],
      rateOfChange,
      costs,
    });
  }
  for (const c of approvalClasses) {
    if (!usedClasses.has(c)) errors.push(`policy.approval.classes: no action has the class "${c}"`);
  }

  const interlocks: CompiledInterlock[] = [];
  const ids = new Set<string>();
  for (const [i, il] of (policy.interlocks ?? []).entries()) {
    const at = `policy.interlocks[${i}]`;
    if (ids.has(il.id)) errors.push(`${at}: duplicate interlock id "${il.id}"`);
    ids.add(il.id);
    const when = {
      action: list(il.when?.action),
      class: list(il.when?.class),
      device: list(il.when?.device),
    };
    for (const a of when.action ?? []) {
      if (!actions.has(a)) errors.push(`${at}.when.action: "${a}" is not an action of this policy`);
    }
    for (const c of when.class ?? []) {
      if (!usedClasses.has(c)) errors.push(`${at}.when.class: no action has the class "${c}"`);
    }
    const scope = when.action
      ? [...when.action].filter((a) => actions.has(a))
      : [...actions.keys()].filter((a) => matchesClass(actions.get(a)!, when.class));
    const conditions: CompiledCondition[] = [];
    for (const [j, c] of (Array.isArray(il.require) ? il.require : [il.require]).entries()) {
      const cat = `${at}.require${Array.isArray(il.require) ? `[${j}]` : ''}`;
      const ordered = c.op === '<' || c.op === '<=' || c.op === '>' || c.op === '>=';
      const listOp = c.op === 'in' || c.op === 'notIn';
      if (ordered && typeof c.value !== 'number')
        errors.push(`${cat}: "${c.op}" compares numbers; value must be a number`);
      if (listOp !== Array.isArray(c.value)) {
        errors.push(
          `${cat}: ${listOp ? `"${c.op}" needs an array value` : `"${c.op}" needs a single value`}`,
        );
      }
      const scoped = scope.map((a): [string, Map<string, CompiledParam>] => [a, actions.get(a)!.params]);
      const path = checkTemplate(c.path, `${cat}.path`, scoped, errors);
      if (path) conditions.push({ source: c.source, path, pathText: c.path, op: c.op, value: c.value });
    }
    interlocks.push({ id: il.id, when, conditions, message: il.message });
  }

  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    policy: {
      policy,
      hash: policyHash(policy),
      actions,
      interlocks,
      rateLimits: policy.rateLimits ?? [],
      maxSteps: policy.plan?.maxSteps ?? DEFAULTS.maxSteps,
      budgets,
      signatureTtlMs: (policy.signature?.ttlSeconds ?? DEFAULTS.signatureTtlSeconds) * 1000,
      approvalTimeoutMs: (policy.approval?.timeoutSeconds ?? DEFAULTS.approvalTimeoutSeconds) * 1000,
      maxPending: policy.approval?.maxPending ?? DEFAULTS.maxPending,
    },
  };
}

function matchesClass(action: CompiledAction, classes: Set<string> | undefined): boolean {
  return !classes || [...classes].some((c) => action.classes.has(c));
}

/**
 * Parses a path template and checks that each `{params.x}` it uses is a parameter of every action
 * the rule applies to, so that a typo fails at deploy rather than rejecting every action later.
 */
function checkTemplate(
  pathText: string,
  at: string,
  scope: Array<[string, Map<string, CompiledParam>]>,
  errors: string[],
): PathTemplate | undefined {
  const parsed = parsePathTemplate(pathText);
  if (!parsed.ok) {
    errors.push(`${at}: ${parsed.error}`);
    return undefined;
  }
  for (const ref of templateRefs(parsed.template)) {
    if (!ref.startsWith('params.')) continue;
    const pname = ref.slice('params.'.length);
    for (const [action, params] of scope) {
      if (!params.has(pname)) errors.push(`${at}: {${ref}} is not a parameter of ${action}`);
    }
  }
  return parsed.template;
}

/** Whether an interlock's `when` selects this action. */
export function interlockApplies(
  il: CompiledInterlock,
  action: CompiledAction,
  device: string | undefined,
): boolean {
  if (il.when.action && !il.when.action.has(action.name)) return false;
  if (il.when.class && !matchesClass(action, il.when.class)) return false;
  if (il.when.device && (device === undefined || !il.when.device.has(device))) return false;
  return true;
}
