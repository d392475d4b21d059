import { createHash } from 'node:crypto';
import Ajv, { type ErrorObject } from 'ajv';
import { canonicalJson } from '../device/signing';
import { FORBIDDEN_KEYS, type PathTemplate, parsePathTemplate, templateRefs } from './paths';
import { matchesClass } from './predicates';

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

/**
 * A token bucket (`capacity`, `refillPerSecond`) or a sliding window (`max` in any `windowSeconds`).
 * `per`: `action`: one for the action; `device`: one per device; `all`: one for every action. `by`
 * (on an action): parameters whose values key it too, e.g. one per valve id.
 */
export interface RateLimitRule {
  per: 'action' | 'device' | 'all';
  by?: string[];
  capacity?: number;
  refillPerSecond?: number;
  max?: number;
  windowSeconds?: number;
}

export interface LiveRef {
  source: Source;
  path: string;
}

export interface RateOfChangeRule {
  param: string;
  maxPerSecond: number;
  /** Parameters whose values key the set-point too, e.g. one per joint. */
  by?: string[];
  /** Where to read the present set-point when none has been approved yet. */
  initial?: LiveRef;
  /** Bounds for the first value when there is no history (and no `initial`). */
  first?: { min?: number; max?: number };
}

/** A fixed amount, a parameter times `factor`, or the travel the site map gives times `factor`. */
export type CostRule = number | { param: string; factor?: number } | { travel: true; factor?: number };

/** A condition on the action's own parameters. */
export interface ParamCondition {
  param: string;
  op: CompareOp;
  value: Scalar | Scalar[];
}

export interface ActionRule {
  description?: string;
  params?: Record<string, ParamRule>;
  devices?: string[];
  classes?: string[];
  requiresApproval?: boolean;
  /** Needs a person only when one of these holds (a missing parameter counts as holding). */
  approvalWhen?: ParamCondition[];
  /** The action moves its device to the zone named by this parameter; travel comes from the site map. */
  moves?: { to: string };
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
  /** The reading must be at most this old; its time is read at `timestampPath`. */
  maxAgeSeconds?: number;
  /** Path (same source) of the reading's time: epoch milliseconds or an ISO 8601 text. */
  timestampPath?: string;
}

export interface SiteMap {
  unit?: string;
  /** Zone coordinates; travel is the straight line between them. */
  zones?: Record<string, { x: number; y: number; z?: number }>;
  /** Or a graph: travel is the shortest path along these. */
  paths?: Array<{ from: string; to: string; distance: number }>;
  /** Where to read the zone a device is in now (path may use {device}). */
  position?: LiveRef;
  /** The zone a device starts in when nothing else says where it is. */
  home?: string;
}

export interface BudgetRule {
  max: number;
  unit?: string;
  description?: string;
  /** `request` (default): each request on its own; `mission`: summed over the mission (policy.mission). */
  per?: 'request' | 'mission';
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
    budgets?: Record<string, BudgetRule>;
  };
  /** Where the mission id of a request is found, for budgets counted per mission. */
  mission?: LiveRef & { forgetAfterSeconds?: number };
  siteMap?: SiteMap;
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
  maxAgeMs?: number;
  timestamp?: { path: PathTemplate; pathText: string };
}

export interface CompiledRateOfChange {
  param: string;
  maxPerSecond: number;
  by: string[];
  initial?: { source: Source; path: PathTemplate; pathText: string };
  first?: { min?: number; max?: number };
}

export interface CompiledSiteMap {
  unit?: string;
  /** Travel between two zones; undefined when there is no way. */
  distance(from: string, to: string): number | undefined;
  zones: Set<string>;
  position?: { source: Source; path: PathTemplate; pathText: string };
  home?: string;
}

export interface CompiledAction {
  name: string;
  params: Map<string, CompiledParam>;
  devices?: Set<string>;
  classes: Set<string>;
  approvalClasses: string[];
  requiresApproval: boolean;
  approvalWhen: ParamCondition[];
  moves?: { to: string };
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
  budgets: Map<string, BudgetRule>;
  mission?: { source: Source; path: PathTemplate; pathText: string; forgetAfterMs: number };
  siteMap?: CompiledSiteMap;
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
const paramList = { type: 'array', minItems: 1, maxItems: 8, items: nameSchema };
const rateLimit = (per: string[], keyed: boolean) => ({
  type: 'object',
  additionalProperties: false,
  required: ['per'],
  // A token bucket or a sliding window, not both.
  oneOf: [{ required: ['capacity', 'refillPerSecond'] }, { required: ['max', 'windowSeconds'] }],
  properties: {
    per: { enum: per },
    ...(keyed ? { by: paramList } : {}),
    capacity: { type: 'integer', minimum: 1, maximum: 1e6 },
    refillPerSecond: { type: 'number', exclusiveMinimum: 0, maximum: 1e6 },
    max: { type: 'integer', minimum: 1, maximum: 10000 },
    windowSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 86400 * 7 },
  },
});
const compareOp = { enum: ['<', '<=', '>', '>=', '==', '!=', 'in', 'notIn'] };
const compareValue = { anyOf: [scalar, { type: 'array', items: scalar, maxItems: 1000 }] };
const condition = {
  type: 'object',
  additionalProperties: false,
  required: ['source', 'path', 'op', 'value'],
  properties: {
    ...liveRef.properties,
    op: compareOp,
    value: compareValue,
    maxAgeSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 86400 * 365 },
    timestampPath: { type: 'string', minLength: 1, maxLength: 256 },
  },
  dependencies: { maxAgeSeconds: ['timestampPath'], timestampPath: ['maxAgeSeconds'] },
};
const paramCondition = {
  type: 'object',
  additionalProperties: false,
  required: ['param', 'op', 'value'],
  properties: { param: nameSchema, op: compareOp, value: compareValue },
};
const coordinate = { type: 'number', minimum: -1e7, maximum: 1e7 };

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
          approvalWhen: { type: 'array', minItems: 1, maxItems: 32, items: paramCondition },
          moves: {
            type: 'object',
            additionalProperties: false,
            required: ['to'],
            properties: { to: nameSchema },
          },
          rateLimits: { type: 'array', items: rateLimit(['action', 'device'], true) },
          rateOfChange: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['param', 'maxPerSecond'],
              properties: {
                param: nameSchema,
                maxPerSecond: { type: 'number', minimum: 0 },
                by: paramList,
                initial: liveRef,
                first: {
                  type: 'object',
                  additionalProperties: false,
                  minProperties: 1,
                  properties: { min: { type: 'number' }, max: { type: 'number' } },
                },
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
                {
                  type: 'object',
                  additionalProperties: false,
                  required: ['travel'],
                  properties: { travel: { const: true }, factor: { type: 'number', minimum: 0 } },
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
    rateLimits: { type: 'array', items: rateLimit(['device', 'all'], false) },
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
              per: { enum: ['request', 'mission'] },
            },
          },
        },
      },
    },
    mission: {
      type: 'object',
      additionalProperties: false,
      required: ['source', 'path'],
      properties: {
        ...liveRef.properties,
        forgetAfterSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 86400 * 365 },
      },
    },
    siteMap: {
      type: 'object',
      additionalProperties: false,
      properties: {
        unit: { type: 'string', minLength: 1, maxLength: 32 },
        zones: {
          type: 'object',
          minProperties: 1,
          maxProperties: 10000,
          propertyNames: nameSchema,
          additionalProperties: {
            type: 'object',
            additionalProperties: false,
            required: ['x', 'y'],
            properties: { x: coordinate, y: coordinate, z: coordinate },
          },
        },
        paths: {
          type: 'array',
          minItems: 1,
          maxItems: 100000,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['from', 'to', 'distance'],
            properties: { from: nameSchema, to: nameSchema, distance: { type: 'number', minimum: 0 } },
          },
        },
        position: liveRef,
        home: nameSchema,
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
  validateSchema ??= new Ajv({
    allErrors: true,
    strict: true,
    strictRequired: false,
    allowUnionTypes: true,
  }).compile(POLICY_SCHEMA);
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
      checkParamNames(roc.by, params, `${at}.rateOfChange[${i}].by`, name, errors);
      if (roc.first?.min !== undefined && roc.first.max !== undefined && roc.first.min > roc.first.max)
        errors.push(
          `${at}.rateOfChange[${i}].first: min (${roc.first.min}) is greater than max (${roc.first.max})`,
        );
      rateOfChange.push({
        param: roc.param,
        maxPerSecond: roc.maxPerSecond,
        by: roc.by ?? [],
        initial,
        first: roc.first,
      });
    }
    for (const [i, l] of (rule.rateLimits ?? []).entries())
      checkParamNames(l.by, params, `${at}.rateLimits[${i}].by`, name, errors);
    for (const [i, c] of (rule.approvalWhen ?? []).entries()) {
      const cat = `${at}.approvalWhen[${i}]`;
      if (!params.has(c.param)) errors.push(`${cat}: "${c.param}" is not a parameter of ${name}`);
      checkComparison(c.op, c.value, cat, errors);
    }
    if (rule.moves) {
      const p = params.get(rule.moves.to);
      if (!p || p.type !== 'string')
        errors.push(`${at}.moves.to: "${rule.moves.to}" is not a text parameter of ${name}`);
      if (!policy.siteMap) errors.push(`${at}.moves: there is no policy.siteMap to measure travel on`);
    }
    const costs: CompiledAction['costs'] = [];
    for (const [budget, cost] of Object.entries(rule.costs ?? {})) {
      if (!budgets.has(budget))
        errors.push(`${at}.costs.${budget}: no budget "${budget}" in policy.plan.budgets`);
      if (typeof cost === 'object' && 'param' in cost) {
        const p = params.get(cost.param);
        if (!p || !NUMERIC.has(p.type)) {
          errors.push(`${at}.costs.${budget}: "${cost.param}" is not a numeric parameter of ${name}`);
        }
      } else if (typeof cost === 'object' && !rule.moves) {
        errors.push(`${at}.costs.${budget}: travel is counted only for an action with "moves"`);
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
      approvalWhen: rule.approvalWhen ?? [],
      moves: rule.moves,
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
      checkComparison(c.op, c.value, cat, errors);
      const scoped = scope.map((a): [string, Map<string, CompiledParam>] => [a, actions.get(a)!.params]);
      const path = checkTemplate(c.path, `${cat}.path`, scoped, errors);
      let timestamp: CompiledCondition['timestamp'];
      if (c.timestampPath !== undefined) {
        const ts = checkTemplate(c.timestampPath, `${cat}.timestampPath`, scoped, errors);
        if (ts) timestamp = { path: ts, pathText: c.timestampPath };
      }
      if (path) {
        conditions.push({
          source: c.source,
          path,
          pathText: c.path,
          op: c.op,
          value: c.value,
          ...(c.maxAgeSeconds !== undefined ? { maxAgeMs: c.maxAgeSeconds * 1000, timestamp } : {}),
        });
      }
    }
    interlocks.push({ id: il.id, when, conditions, message: il.message });
  }

  let mission: CompiledPolicy['mission'];
  if (policy.mission) {
    const m = checkTemplate(policy.mission.path, 'policy.mission.path', [], errors);
    if (m) {
      mission = {
        source: policy.mission.source,
        path: m,
        pathText: policy.mission.path,
        forgetAfterMs: (policy.mission.forgetAfterSeconds ?? 7 * 86400) * 1000,
      };
    }
  }
  for (const [name, b] of budgets) {
    if (b.per === 'mission' && !policy.mission)
      errors.push(
        `policy.plan.budgets.${name}: counted per mission, but there is no policy.mission to say which`,
      );
  }
  const siteMap = policy.siteMap ? compileSiteMap(policy.siteMap, errors) : undefined;

  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    policy: {
      mission,
      siteMap,
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

function checkComparison(op: CompareOp, value: Scalar | Scalar[], at: string, errors: string[]): void {
  const ordered = op === '<' || op === '<=' || op === '>' || op === '>=';
  const listOp = op === 'in' || op === 'notIn';
  if (ordered && typeof value !== 'number')
    errors.push(`${at}: "${op}" compares numbers; value must be a number`);
  if (listOp !== Array.isArray(value))
    errors.push(`${at}: ${listOp ? `"${op}" needs an array value` : `"${op}" needs a single value`}`);
}

function checkParamNames(
  names: string[] | undefined,
  params: Map<string, CompiledParam>,
  at: string,
  action: string,
  errors: string[],
): void {
  for (const n of names ?? [])
    if (!params.has(n)) errors.push(`${at}: "${n}" is not a parameter of ${action}`);
}

/** Travel on the site map: straight lines between zone coordinates, or shortest paths on a graph. */
function compileSiteMap(map: SiteMap, errors: string[]): CompiledSiteMap | undefined {
  const at = 'policy.siteMap';
  if ((map.zones === undefined) === (map.paths === undefined)) {
    errors.push(`${at}: give either "zones" (coordinates) or "paths" (a graph), not both or neither`);
    return undefined;
  }
  let distance: CompiledSiteMap['distance'];
  let zones: Set<string>;
  if (map.zones) {
    const coords = new Map(Object.entries(map.zones));
    zones = new Set(coords.keys());
    distance = (from, to) => {
      const a = coords.get(from);
      const b = coords.get(to);
      if (!a || !b) return undefined;
      return Math.hypot(a.x - b.x, a.y - b.y, (a.z ?? 0) - (b.z ?? 0));
    };
  } else {
    const edges = new Map<string, Array<[string, number]>>();
    for (const p of map.paths!) {
      if (!edges.has(p.from)) edges.set(p.from, []);
      if (!edges.has(p.to)) edges.set(p.to, []);
      edges.get(p.from)!.push([p.to, p.distance]);
      edges.get(p.to)!.push([p.from, p.distance]);
    }
    zones = new Set(edges.keys());
    const cache = new Map<string, Map<string, number>>();
    // Dijkstra from each start zone, once, on first use: site maps are small.
    const from = (start: string): Map<string, number> => {
      let dist = cache.get(start);
      if (dist) return dist;
      dist = new Map([[start, 0]]);
      const done = new Set<string>();
      for (;;) {
        let best: string | undefined;
        for (const [z, d] of dist) if (!done.has(z) && (best === undefined || d < dist.get(best)!)) best = z;
        if (best === undefined) break;
        done.add(best);
        for (const [next, w] of edges.get(best) ?? []) {
          const d = dist.get(best)! + w;
          if (d < (dist.get(next) ?? Infinity)) dist.set(next, d);
        }
      }
      cache.set(start, dist);
      return dist;
    };
    distance = (a, b) => (zones.has(a) && zones.has(b) ? from(a).get(b) : undefined);
  }
  if (map.home !== undefined && !zones.has(map.home))
    errors.push(`${at}.home: "${map.home}" is not a zone of the site map`);
  let position: CompiledSiteMap['position'];
  if (map.position) {
    const parsed = parsePathTemplate(map.position.path);
    if (!parsed.ok) errors.push(`${at}.position.path: ${parsed.error}`);
    else if (templateRefs(parsed.template).some((r) => r !== 'device'))
      errors.push(`${at}.position.path: only {device} may be filled in here`);
    else position = { source: map.position.source, path: parsed.template, pathText: map.position.path };
  }
  return { unit: map.unit, distance, zones, position, home: map.home };
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
