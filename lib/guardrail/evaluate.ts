import {
  type Action,
  type SignOptions,
  type SignedAction,
  type SnapshotOptions,
  type SnapshotProblem,
  type SnapshotProblemCode,
  signSnapshot,
  snapshotJson,
} from '../device/signing';
import { type BucketLimit, Limits, type WindowLimit } from './limits';
import { LimitState } from './state';
import { FORBIDDEN_KEYS, readPath, resolvePath, templateText } from './paths';
import {
  type CompiledAction,
  type CompiledCondition,
  type CompiledInterlock,
  type CompiledParam,
  type CompiledPolicy,
  type CompiledRateOfChange,
  type RateLimitRule,
  type Scalar,
  type Source,
} from './policy';
import { compare, interlockApplies } from './predicates';
import { isPlainObject } from '../util/plain';

export type ReasonCode =
  | 'malformed_request'
  | 'malformed_action'
  | 'invalid_value'
  | 'forbidden_key'
  | 'unknown_action'
  | 'device_not_allowed'
  | 'unknown_param'
  | 'missing_param'
  | 'param_type'
  | 'param_range'
  | 'param_enum'
  | 'param_pattern'
  | 'param_length'
  | 'unit_mismatch'
  | 'interlock'
  | 'interlock_value_missing'
  | 'interlock_value_invalid'
  | 'interlock_stale'
  | 'position_unknown'
  | 'travel_unknown'
  | 'mission_unknown'
  | 'too_many_steps'
  | 'budget_exceeded'
  | 'budget_cost_missing'
  | 'rate_limited'
  | 'rate_of_change'
  | 'approval_required'
  | 'approval_denied'
  | 'approval_expired'
  | 'approval_unknown'
  | 'approval_malformed'
  | 'approval_queue_full'
  | 'evaluation_error';

export interface Reason {
  code: ReasonCode;
  /** One sentence for a person. */
  message: string;
  /** 0-based index of the plan step (absent for a single action or a plan-wide reason). */
  step?: number;
  stepId?: string;
  action?: string;
  /**
   * The policy rule involved: interlock id, parameter, budget or rate-limit key; for an approval, the
   * approval class (`approval.classes: …`), `requiresApproval`, or the `approvalWhen` condition.
   */
  rule?: string;
}

export type Outcome = 'approved' | 'needs_approval' | 'rejected';

export interface Decision {
  outcome: Outcome;
  kind: 'action' | 'plan' | 'invalid';
  /** The actions as checked (empty when the request could not be read). */
  actions: Action[];
  /** Why it was rejected, or which steps need approval. Empty when approved. */
  reasons: Reason[];
  /** The reasons in one or two sentences. */
  summary: string;
  policyHash: string;
  /** One signed action per step, in plan order; only when approved. */
  signed: SignedAction[];
  /**
   * The snapshot of the request that was checked (plain JSON, held by nobody else): what a pending
   * approval keeps and checks again. Absent when the request could not be read.
   */
  request?: unknown;
}

/** Reads a live value for an interlock; `undefined` when there is none. */
export type LiveReader = (source: Source, segments: readonly string[]) => unknown;

export interface DecideOptions {
  /** A person approved this request: actions that need approval may pass. */
  approvalGranted?: boolean;
}

export interface GuardrailOptions {
  key: string | Buffer;
  now?: () => number;
  /** Bound on everything the limits remember (buckets, windows, set-points, positions, missions). */
  maxTrackedKeys?: number;
  /** Where the limits' memory lives; LimitState.open(file) keeps it across redeploys and restarts. */
  state?: LimitState;
}

const ACTION_KEYS = new Set(['action', 'params', 'device', 'id', 'reason']);
const MAX_DEPTH = 32;
const MAX_NODES = 100000;
/** Longest text anywhere in a request: far beyond any parameter, short enough to check and record. */
const MAX_STRING = 65536;
const HARD_MAX_STEPS = 1000;
/** How far in the future a reading's time may be (clock skew between a sensor and this gateway). */
const FUTURE_SKEW_MS = 5000;

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (v === undefined) return 'nothing';
  return Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

const SNAPSHOT_CODES: Record<SnapshotProblemCode, ReasonCode> = {
  not_data: 'invalid_value',
  accessor: 'invalid_value',
  proxy: 'invalid_value',
  non_finite: 'invalid_value',
  forbidden_key: 'forbidden_key',
  too_deep: 'malformed_request',
  too_large: 'malformed_request',
  too_long: 'malformed_request',
};

/**
 * The one copy of a request that is checked, signed, recorded and sent: plain JSON data only,
 * taken without calling a getter or a Proxy trap (they are refused), and with no key that can reach
 * a prototype.
 */
export function snapshotRequest(payload: unknown): { value: unknown } | { reason: Reason } {
  const snap = snapshotJson(payload, SNAPSHOT_OPTIONS);
  if (snap.ok) return { value: snap.value };
  return { reason: snapshotReason(snap.problem) };
}

const SNAPSHOT_OPTIONS: SnapshotOptions = {
  root: 'payload',
  maxDepth: MAX_DEPTH,
  maxNodes: MAX_NODES,
  maxStringLength: MAX_STRING,
  forbiddenKeys: FORBIDDEN_KEYS,
};

function snapshotReason(problem: SnapshotProblem): Reason {
  return { code: SNAPSHOT_CODES[problem.code], message: `${problem.message}.` };
}

/** A name from a request, as a message shows it: at most 64 characters. */
function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

function stepLabel(kind: 'action' | 'plan', i: number, a: { id?: unknown; action?: unknown }): string {
  const name = typeof a.action === 'string' ? clip(a.action) : 'action';
  if (kind === 'action') return name;
  return `Step ${i + 1}${typeof a.id === 'string' ? ` (${clip(a.id)})` : ''}, ${name}`;
}

/**
 * One action of a request (a part of the snapshot); a reason is added to `reasons` when it is not
 * one. The snapshot is this guardrail's own copy, so the action is that object itself unless it
 * carries a plan step's `status`.
 */
function parseAction(v: unknown, kind: 'action' | 'plan', i: number, reasons: Reason[]): Action | undefined {
  const label = kind === 'plan' ? `Step ${i + 1}` : 'The action';
  const bad = (message: string): undefined => {
    reasons.push({ code: 'malformed_action', message, ...(kind === 'plan' ? { step: i } : {}) });
    return undefined;
  };
  if (!isPlainObject(v)) return bad(`${label} is not an object {action, params}.`);
  const keys = Object.keys(v);
  let status = false;
  for (let j = 0; j < keys.length; j++) {
    const k = keys[j];
    if (k === 'status' && kind === 'plan') status = true;
    else if (!ACTION_KEYS.has(k))
      return bad(`${label} has the unexpected field "${k}" (allowed: action, params, device, id, reason).`);
  }
  if (kind === 'plan' && v.status !== undefined && v.status !== 'pending') {
    return bad(`${label}: status must be "pending" (steps done, failed or skipped are left out first).`);
  }
  if (typeof v.action !== 'string' || v.action.length === 0) return bad(`${label} has no action name.`);
  if (!isPlainObject(v.params)) return bad(`${label} (${clip(v.action)}) has no params object.`);
  if (v.device !== undefined && (typeof v.device !== 'string' || v.device.length === 0)) {
    return bad(`${label} (${clip(v.action)}): device must be a non-empty string.`);
  }
  if (v.id !== undefined && (typeof v.id !== 'string' || v.id.length === 0)) {
    return bad(`${label} (${clip(v.action)}): id must be a non-empty string.`);
  }
  if (v.reason !== undefined && typeof v.reason !== 'string')
    return bad(`${label} (${clip(v.action)}): reason must be text.`);
  if (!status) return v as unknown as Action;
  // Only the action's own fields are judged and signed: a plan step's status is bookkeeping.
  // Copied field by field in their order (not spread, then deleted: that would slow every later read).
  const action: Record<string, unknown> = {};
  for (const k of keys) if (k !== 'status') action[k] = v[k];
  return action as unknown as Action;
}

function malformed(message: string): { kind: 'invalid'; actions: Action[]; reasons: Reason[] } {
  return { kind: 'invalid', actions: [], reasons: [{ code: 'malformed_request', message }] };
}

/**
 * Steps of a plan from llm-plan that are finished (`status` done, failed or skipped) are history,
 * not requests: the guardrail judges and signs only the steps still to run.
 */
const SETTLED = new Set(['done', 'failed', 'skipped']);
function isSettled(step: unknown): boolean {
  return isPlainObject(step) && typeof step.status === 'string' && SETTLED.has(step.status);
}

const OP_WORDS: Record<CompiledCondition['op'], string> = {
  '<': 'below',
  '<=': 'at most',
  '>': 'above',
  '>=': 'at least',
  '==': 'equal to',
  '!=': 'other than',
  in: 'one of',
  notIn: 'none of',
};

function fillMessage(template: string, action: Action, extra: Record<string, unknown>): string {
  return template.replace(/\{([A-Za-z_.:-]+)\}/g, (whole, ref: string) => {
    let v: unknown;
    if (Object.hasOwn(extra, ref)) v = extra[ref];
    else if (ref === 'action' || ref === 'device' || ref === 'id') v = action[ref];
    else if (ref.startsWith('params.')) v = readPath(action.params, [ref.slice(7)]);
    else return whole;
    return v === undefined ? '?' : typeof v === 'string' ? v : (JSON.stringify(v) ?? '?');
  });
}

interface StepFacts {
  action: Action;
  rule: CompiledAction;
  /** Numeric parameter values after unit handling. */
  numbers: Map<string, number>;
  /** Travel on the site map, for an action that moves its device. */
  travel?: number;
}

/** What an approval changes besides the rate limits and set-points. */
interface PlanEffects {
  mission?: { id: string; amounts: Map<string, number> };
  positions: ReadonlyMap<string, string>;
}
/** The effects of a request that neither moves nor spends: shared, never changed. */
const NO_EFFECTS: PlanEffects = Object.freeze({ positions: new Map<string, string>() });

/** What a request that counts against no limit takes: shared, never changed. */
const NO_LIMITS: LimitCommit = Object.freeze({ demand: new Map(), tentative: new Map() });

/** Tokens a request takes from each rate limit (by state key), and the step that first asks. */
interface Demand {
  key: LimitKey;
  n: number;
  fact: StepFacts;
  step: number;
}

/** What checkLimits found, applied once the request is approved and signed. */
interface LimitCommit {
  demand: Map<string, Demand>;
  tentative: Map<string, { value: number; at: number }>;
}

function keyPart(v: unknown): string | number | boolean | null {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? v : null;
}

/** One value of a state key, as JSON.stringify writes it inside an array. */
function jsonPart(v: string | number | boolean | null): string {
  return JSON.stringify(v);
}

/** `,v1,v2` for the `by` parameters of a key: the tail of JSON.stringify([..., ...by]). */
function byParts(by: readonly string[], f: StepFacts): string {
  let out = '';
  for (const p of by) out += `,${jsonPart(keyPart(f.action.params[p]))}`;
  return out;
}

/**
 * Writes the state keys of one rule: a prefix (`b:` bucket, `w:` window, `s:` set-point) and the
 * JSON of an array, the same text the limits have always been stored under. `head` is the fixed
 * start of that text, then the device (when `device`), `mid`, the `by` values and `]`. Keys without
 * `by` values are kept per device, so the same key is not written, and hashed, for every decision.
 */
class KeyMaker {
  private readonly byDevice = new Map<string | undefined, string>();
  constructor(
    private readonly head: string,
    private readonly device: boolean,
    private readonly mid: string,
    readonly by: readonly string[],
  ) {}

  key(f: StepFacts): string {
    const device = this.device ? f.action.device : undefined;
    if (this.by.length > 0)
      return `${this.head}${this.device ? jsonPart(device ?? null) : ''}${this.mid}${byParts(this.by, f)}]`;
    let key = this.byDevice.get(device);
    if (key === undefined) {
      key = `${this.head}${this.device ? jsonPart(device ?? null) : ''}${this.mid}]`;
      if (this.byDevice.size >= 1024) this.byDevice.clear();
      this.byDevice.set(device, key);
    }
    return key;
  }
}

/** A rate limit and how its state key is written. */
interface LimitKey {
  limit: RateLimitRule;
  bucket: boolean;
  keys: KeyMaker;
  /** The device is part of the key. */
  device: boolean;
  by: readonly string[];
  /** The action's name for the action's own limits; absent for the policy-wide ones. */
  action?: string;
}

/** What a rate limit counts, for a person: "set_valve on device v-1 for id 3". */
function limitWhat(lk: LimitKey, f: StepFacts): string {
  const device = f.action.device;
  const dev = device === undefined ? '(no device)' : `device ${device}`;
  if (lk.action === undefined) return lk.device ? dev : 'all actions';
  const byText = lk.by.length
    ? ` for ${lk.by.map((p) => `${p} ${show(keyPart(f.action.params[p]))}`).join(', ')}`
    : '';
  return lk.device ? `${lk.action} on ${dev}${byText}` : `${lk.action}${byText}`;
}

/**
 * One step being checked: its label and the fields of its reasons are written only when it fails
 * or needs approval.
 */
class StepCheck {
  private labelText: string | undefined = undefined;
  constructor(
    readonly kind: 'action' | 'plan',
    readonly i: number,
    readonly a: Action,
    readonly reasons: Reason[],
  ) {}

  label(): string {
    return (this.labelText ??= stepLabel(this.kind, this.i, this.a));
  }

  base(): Pick<Reason, 'step' | 'stepId' | 'action'> {
    return {
      ...(this.kind === 'plan' ? { step: this.i } : {}),
      ...(this.a.id !== undefined ? { stepId: this.a.id } : {}),
      action: this.a.action,
    };
  }

  add(code: ReasonCode, message: string, rule?: string): void {
    this.reasons.push({ code, message, ...this.base(), ...(rule !== undefined ? { rule } : {}) });
  }
}

/**
 * The guardrail: checks one action or a plan against a compiled policy and, when everything passes,
 * consumes rate-limit tokens, records set-points and signs each action. Never throws from decide():
 * an unexpected error is a rejection.
 */
export class Guardrail {
  /** What the limits remember; sync `limits.state` to make it durable. */
  readonly limits: Limits;
  /** Set-points approved since this guardrail started: the first one after a deploy has its own bound. */
  private readonly sinceStart = new Set<string>();
  private readonly now: () => number;

  /** Each action's rate limits, then the policy-wide ones, with their key heads written once. */
  private readonly limitKeyCache = new Map<CompiledAction, LimitKey[]>();
  private readonly setpointKeyCache = new Map<CompiledRateOfChange, KeyMaker>();
  private readonly approvalWhyCache = new Map<CompiledAction, string>();

  constructor(
    readonly policy: CompiledPolicy,
    private readonly opts: GuardrailOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.limits = new Limits(opts.state ?? LimitState.memory(), opts.maxTrackedKeys);
  }

  /** ` (class destructive)`: why an action always needs a person, for the message; written once per rule. */
  private approvalWhy(rule: CompiledAction): string {
    let why = this.approvalWhyCache.get(rule);
    if (why === undefined) {
      why = rule.approvalClasses.length ? ` (class ${rule.approvalClasses.join(', ')})` : '';
      this.approvalWhyCache.set(rule, why);
    }
    return why;
  }

  private limitKeys(rule: CompiledAction): LimitKey[] {
    const cached = this.limitKeyCache.get(rule);
    if (cached) return cached;
    const made: LimitKey[] = [];
    const name = JSON.stringify(rule.name);
    // `b:` or `w:`, then JSON.stringify([kind, (name,) index, (device,) ...by]).
    const add = (limit: RateLimitRule, head: string, device: boolean, by: string[], action?: string) => {
      const bucket = limit.capacity !== undefined;
      const keyHead = `${bucket ? 'b:' : 'w:'}${head}${device ? ',' : ''}`;
      made.push({ limit, bucket, keys: new KeyMaker(keyHead, device, '', by), device, by, action });
    };
    for (const [j, l] of rule.rateLimits.entries()) {
      if (l.per === 'action') add(l, `["action",${name},${j}`, false, l.by ?? [], rule.name);
      else add(l, `["action-device",${name},${j}`, true, l.by ?? [], rule.name);
    }
    for (const [j, l] of this.policy.rateLimits.entries()) {
      if (l.per === 'all') add(l, `["all",${j}`, false, []);
      else add(l, `["device",${j}`, true, []);
    }
    this.limitKeyCache.set(rule, made);
    return made;
  }

  /** Set-point keys of a rate-of-change rule: `s:` JSON.stringify([action, device ?? null, param, ...by]). */
  private setpointKeys(rule: CompiledAction, roc: CompiledRateOfChange): KeyMaker {
    let keys = this.setpointKeyCache.get(roc);
    if (!keys) {
      keys = new KeyMaker(`s:[${JSON.stringify(rule.name)},`, true, `,${JSON.stringify(roc.param)}`, roc.by);
      this.setpointKeyCache.set(roc, keys);
    }
    return keys;
  }

  decide(payload: unknown, live: LiveReader, options?: DecideOptions): Decision {
    let kind: Decision['kind'] = 'invalid';
    let actions: Action[] = [];
    try {
      // Everything below sees only this copy: a getter or Proxy cannot answer one way when checked
      // and another when signed.
      const snap = snapshotJson(payload, SNAPSHOT_OPTIONS);
      if (!snap.ok) return this.result('rejected', 'invalid', [], [snapshotReason(snap.problem)]);
      const request = snap.value;
      const parsed = this.parseRequest(request);
      kind = parsed.kind;
      if (parsed.reasons.length > 0) return this.result('rejected', kind, parsed.actions, parsed.reasons);
      actions = parsed.actions;
      const judged = kind as 'action' | 'plan';
      const now = this.now();
      const reasons: Reason[] = [];
      const approvals: Reason[] = [];
      const facts: StepFacts[] = [];
      for (let i = 0; i < actions.length; i++) {
        const f = this.checkStep(actions[i], i, judged, live, reasons, approvals);
        if (f) facts.push(f);
      }
      const effects: PlanEffects =
        reasons.length === 0 ? this.checkPlan(facts, judged, now, live, reasons) : NO_EFFECTS;
      if (reasons.length > 0) return this.result('rejected', kind, actions, reasons);
      // Limits first: a request over a rate limit is rejected, not put before a person who might
      // approve it. They are checked again, and only then applied, when the approval comes.
      const commit = this.checkLimits(facts, judged, now, live, reasons, effects);
      if (reasons.length > 0) return this.result('rejected', kind, actions, reasons);
      if (approvals.length > 0 && !options?.approvalGranted) {
        return this.result('needs_approval', kind, actions, approvals, [], request);
      }
      const sign: SignOptions = {
        key: this.opts.key,
        policyHash: this.policy.hash,
        ttlMs: this.policy.signatureTtlMs,
        now,
      };
      const signed: SignedAction[] = new Array<SignedAction>(actions.length);
      for (let i = 0; i < actions.length; i++) signed[i] = signSnapshot(actions[i], sign);
      this.applyLimits(commit, now);
      for (const [device, zone] of effects.positions) this.limits.setPosition(device, zone, now);
      if (effects.mission) {
        this.limits.spend(
          effects.mission.id,
          effects.mission.amounts,
          now,
          this.policy.mission!.forgetAfterMs,
        );
      }
      return this.result('approved', kind, actions, [], signed, request);
    } catch (err) {
      return this.result('rejected', kind, actions, [
        {
          code: 'evaluation_error',
          message: `The guardrail could not evaluate the request: ${(err as Error).message}`,
        },
      ]);
    }
  }

  /** A decision that did not come from evaluating a request (approval denied, expired...). */
  result(
    outcome: Outcome,
    kind: Decision['kind'],
    actions: Action[],
    reasons: Reason[],
    signed: SignedAction[] = [],
    request?: unknown,
  ): Decision {
    let summary: string;
    if (outcome === 'approved') {
      summary =
        kind === 'plan' ? `Approved: all ${actions.length} steps are within the policy.` : 'Approved.';
    } else {
      summary = reasons[0]?.message ?? (outcome === 'rejected' ? 'Rejected.' : 'Needs approval.');
      if (reasons.length > 1) summary += ` (and ${reasons.length - 1} more)`;
    }
    const decision: Decision = {
      outcome,
      kind,
      actions,
      reasons,
      summary,
      policyHash: this.policy.hash,
      signed,
    };
    if (request !== undefined) decision.request = request;
    return decision;
  }

  private parseRequest(payload: unknown): { kind: Decision['kind']; actions: Action[]; reasons: Reason[] } {
    if (!isPlainObject(payload)) {
      return malformed('msg.payload must be an action {action, params, device?} or a plan {steps: [...]}.');
    }
    const hasSteps = Object.hasOwn(payload, 'steps');
    if (hasSteps === Object.hasOwn(payload, 'action')) {
      return malformed(
        hasSteps
          ? 'msg.payload has both "steps" and "action": send either one action or one plan.'
          : 'msg.payload must be an action {action, params, device?} or a plan {steps: [...]}.',
      );
    }
    if (!hasSteps) {
      const reasons: Reason[] = [];
      const action = parseAction(payload, 'action', 0, reasons);
      return { kind: 'action', actions: action ? [action] : [], reasons };
    }
    if (!Array.isArray(payload.steps) || payload.steps.length === 0)
      return { ...malformed('The plan has no steps.'), kind: 'plan' };
    const steps = payload.steps.filter((s) => !isSettled(s));
    if (steps.length === 0) return { ...malformed('The plan has no pending steps.'), kind: 'plan' };
    if (steps.length > HARD_MAX_STEPS || steps.length > this.policy.maxSteps) {
      return {
        kind: 'plan',
        actions: [],
        reasons: [
          {
            code: 'too_many_steps',
            message: `The plan has ${steps.length} steps; the policy allows at most ${this.policy.maxSteps}.`,
          },
        ],
      };
    }
    const actions: Action[] = [];
    const reasons: Reason[] = [];
    const ids = new Set<string>();
    steps.forEach((s, i) => {
      const action = parseAction(s, 'plan', i, reasons);
      if (!action) return;
      if (action.id !== undefined) {
        if (ids.has(action.id)) {
          reasons.push({
            code: 'malformed_action',
            step: i,
            message: `Step ${i + 1} repeats the step id "${clip(action.id)}".`,
          });
        }
        ids.add(action.id);
      }
      actions.push(action);
    });
    return { kind: 'plan', actions: reasons.length ? [] : actions, reasons };
  }

  private checkStep(
    a: Action,
    i: number,
    kind: 'action' | 'plan',
    live: LiveReader,
    reasons: Reason[],
    approvals: Reason[],
  ): StepFacts | undefined {
    const step = new StepCheck(kind, i, a, reasons);
    const rule = this.policy.actions.get(a.action);
    if (!rule) {
      const allowed = [...this.policy.actions.keys()].join(', ');
      step.add(
        'unknown_action',
        `${kind === 'plan' ? `Step ${i + 1}: ` : ''}${show(a.action)} is not an allowed action (allowed: ${allowed}).`,
      );
      return undefined;
    }
    if (rule.devices && (a.device === undefined || !rule.devices.has(a.device))) {
      const allowed = [...rule.devices].join(', ');
      step.add(
        'device_not_allowed',
        a.device === undefined
          ? `${step.label()}: a device is required (one of ${allowed}).`
          : `${step.label()}: device "${clip(a.device)}" is not allowed for this action (allowed: ${allowed}).`,
      );
    }
    const before = reasons.length;
    for (const name of Object.keys(a.params)) {
      if (!rule.params.has(name)) {
        const known = [...rule.params.keys()];
        step.add(
          'unknown_param',
          `${step.label()}: unknown parameter "${clip(name)}"${known.length ? ` (known: ${known.join(', ')})` : ''}.`,
          name,
        );
      }
    }
    const numbers = new Map<string, number>();
    for (const p of rule.params.values()) {
      this.checkParam(p, a.params[p.name], Object.hasOwn(a.params, p.name), step, numbers);
    }
    if (reasons.length > before) return undefined;
    for (const il of this.policy.interlocks) {
      if (interlockApplies(il, rule, a.device)) this.checkInterlock(il, a, step, live);
    }
    if (rule.requiresApproval) {
      const why = this.approvalWhy(rule);
      approvals.push({
        code: 'approval_required',
        message: `${step.label()} needs a person's approval${why}.`,
        ...step.base(),
        // What the approval screen shows as the policy rule: the approval class, or the action's flag.
        rule: rule.approvalClasses.length
          ? `approval.classes: ${rule.approvalClasses.join(', ')}`
          : 'requiresApproval',
      });
    } else {
      // A condition on a parameter that is not given counts as holding: a person decides.
      const held = rule.approvalWhen.find((c) => {
        const v = numbers.get(c.param) ?? a.params[c.param];
        const ok = typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
        return !ok || compare(v, c.op, c.value);
      });
      if (held) {
        const limit = Array.isArray(held.value) ? held.value.map(show).join(', ') : show(held.value);
        approvals.push({
          code: 'approval_required',
          message: `${step.label()} needs a person's approval when ${held.param} is ${OP_WORDS[held.op]} ${limit}.`,
          ...step.base(),
          rule: `approvalWhen: ${held.param} ${held.op} ${limit}`,
        });
      }
    }
    return { action: a, rule, numbers };
  }

  private checkParam(
    p: CompiledParam,
    raw: unknown,
    present: boolean,
    step: StepCheck,
    numbers: Map<string, number>,
  ): void {
    if (!present) {
      if (p.required) step.add('missing_param', `${step.label()}: ${p.name} is required.`, p.name);
      return;
    }
    const numeric = p.type === 'number' || p.type === 'integer';
    let v = raw;
    if (
      isPlainObject(raw) &&
      numeric &&
      p.unit !== undefined &&
      Object.hasOwn(raw, 'value') &&
      Object.hasOwn(raw, 'unit')
    ) {
      if (Object.keys(raw).length !== 2)
        return step.add(
          'param_type',
          `${step.label()}: ${p.name} must be {value, unit} and nothing else.`,
          p.name,
        );
      if (raw.unit !== p.unit) {
        return step.add(
          'unit_mismatch',
          `${step.label()}: ${p.name} is given in ${show(raw.unit)}; the policy expects ${p.unit}.`,
          p.name,
        );
      }
      v = raw.value;
    }
    const unit = p.unit ? ` ${p.unit}` : '';
    if (numeric) {
      if (typeof v !== 'number') {
        const hint = typeof v === 'string' ? ' (a number given as text is not accepted)' : '';
        return step.add(
          'param_type',
          `${step.label()}: ${p.name} must be a number, not ${show(v)}${hint}.`,
          p.name,
        );
      }
      if (!Number.isFinite(v))
        return step.add(
          'param_type',
          `${step.label()}: ${p.name} must be a finite number, not ${v}.`,
          p.name,
        );
      if (p.type === 'integer' && !Number.isInteger(v))
        return step.add('param_type', `${step.label()}: ${p.name} must be a whole number, not ${v}.`, p.name);
      if (p.min !== undefined && v < p.min)
        return step.add(
          'param_range',
          `${step.label()}: ${p.name} ${v}${unit} is below the minimum of ${p.min}${unit}.`,
          p.name,
        );
      if (p.max !== undefined && v > p.max)
        return step.add(
          'param_range',
          `${step.label()}: ${p.name} ${v}${unit} is above the maximum of ${p.max}${unit}.`,
          p.name,
        );
      numbers.set(p.name, v);
    } else if (typeof v !== p.type) {
      return step.add(
        'param_type',
        `${step.label()}: ${p.name} must be a ${p.type}, not ${show(v)}.`,
        p.name,
      );
    }
    if (p.enum && !p.enum.includes(v as Scalar)) {
      return step.add(
        'param_enum',
        `${step.label()}: ${p.name} ${show(v)} is not one of ${p.enum.map(show).join(', ')}.`,
        p.name,
      );
    }
    if (typeof v === 'string') {
      if (p.maxLength !== undefined && v.length > p.maxLength) {
        return step.add(
          'param_length',
          `${step.label()}: ${p.name} is longer than ${p.maxLength} characters.`,
          p.name,
        );
      }
      if (p.regex && !p.regex.test(v))
        return step.add(
          'param_pattern',
          `${step.label()}: ${p.name} ${show(v)} does not match ${p.pattern}.`,
          p.name,
        );
    }
  }

  private checkInterlock(il: CompiledInterlock, a: Action, step: StepCheck, live: LiveReader): void {
    for (const c of il.conditions) {
      const path = resolvePath(c.path, a);
      if (!path.ok) {
        step.add(
          'interlock_value_missing',
          `${step.label()}: interlock "${il.id}" cannot find its value: ${path.error}.`,
          il.id,
        );
        return;
      }
      const where = `${c.source}.${templateText(path.segments)}`;
      const value = live(c.source, path.segments);
      if (value === undefined || value === null) {
        step.add(
          'interlock_value_missing',
          `${step.label()}: interlock "${il.id}" has no value at ${where}, so it is refused.`,
          il.id,
        );
        return;
      }
      const ordered = c.op === '<' || c.op === '<=' || c.op === '>' || c.op === '>=';
      const valid = ordered
        ? typeof value === 'number' && Number.isFinite(value)
        : typeof value === 'string' ||
          typeof value === 'boolean' ||
          (typeof value === 'number' && Number.isFinite(value));
      if (!valid) {
        step.add(
          'interlock_value_invalid',
          `${step.label()}: interlock "${il.id}" found ${show(value)} at ${where}, which it cannot compare.`,
          il.id,
        );
        return;
      }
      if (c.maxAgeMs !== undefined && c.timestamp) {
        const tsPath = resolvePath(c.timestamp.path, a);
        const raw = tsPath.ok ? live(c.source, tsPath.segments) : undefined;
        const at = typeof raw === 'number' ? raw : typeof raw === 'string' ? Date.parse(raw) : NaN;
        const tsWhere = `${c.source}.${c.timestamp.pathText}`;
        if (!Number.isFinite(at)) {
          step.add(
            raw === undefined ? 'interlock_value_missing' : 'interlock_value_invalid',
            `${step.label()}: interlock "${il.id}" has no readable time for its value at ${tsWhere}, so it is refused.`,
            il.id,
          );
          return;
        }
        const now = this.now();
        // A time from the future would keep a reading fresh for ever; a little clock skew is allowed.
        if (at > now + FUTURE_SKEW_MS) {
          step.add(
            'interlock_value_invalid',
            `${step.label()}: interlock "${il.id}": the reading at ${where} is dated ${round((at - now) / 1000)} s in the future.`,
            il.id,
          );
          return;
        }
        if (now - at > c.maxAgeMs) {
          step.add(
            'interlock_stale',
            `${step.label()}: interlock "${il.id}": the reading at ${where} is ${round((now - at) / 1000)} s old; at most ${round(c.maxAgeMs / 1000)} s is accepted.`,
            il.id,
          );
          return;
        }
      }
      if (!compare(value as Scalar, c.op, c.value)) {
        const limit = Array.isArray(c.value) ? c.value.map(show).join(', ') : show(c.value);
        const message = il.message
          ? fillMessage(il.message, a, { value, limit, path: where })
          : `${step.label()}: interlock "${il.id}": ${where} is ${show(value)}, must be ${OP_WORDS[c.op]} ${limit}.`;
        step.add('interlock', message, il.id);
        return;
      }
    }
  }

  /** Travel on the site map, budgets (per request and per mission); returns what an approval changes. */
  private checkPlan(
    facts: StepFacts[],
    kind: 'action' | 'plan',
    now: number,
    live: LiveReader,
    reasons: Reason[],
  ): PlanEffects {
    const map = this.policy.siteMap;
    // Most actions neither move nor cost anything: nothing to count.
    let counts = false;
    for (const f of facts) if (f.rule.costs.length > 0 || (f.rule.moves && map)) counts = true;
    if (!counts) return NO_EFFECTS;
    const stepReason = (i: number, f: StepFacts, code: ReasonCode, message: string, rule?: string) =>
      reasons.push({
        code,
        message: `${stepLabel(kind, i, f.action)}: ${message}`,
        ...(kind === 'plan' ? { step: i } : {}),
        ...(f.action.id !== undefined ? { stepId: f.action.id } : {}),
        action: f.action.action,
        ...(rule !== undefined ? { rule } : {}),
      });
    const positions = new Map<string, string>();
    for (const [i, f] of facts.entries()) {
      if (!f.rule.moves || !map) continue;
      const device = f.action.device ?? '';
      const to = f.action.params[f.rule.moves.to];
      if (typeof to !== 'string' || !map.zones.has(to)) {
        stepReason(i, f, 'travel_unknown', `${show(to)} is not a zone of the site map.`, f.rule.moves.to);
        continue;
      }
      let from = positions.get(device);
      if (from === undefined) {
        const where = this.startZone(f.action, live);
        if ('reason' in where) {
          stepReason(i, f, 'position_unknown', where.reason);
          continue;
        }
        from = where.zone;
      }
      const d = map.distance(from, to);
      if (d === undefined) {
        stepReason(i, f, 'travel_unknown', `the site map has no way from ${from} to ${to}.`);
        continue;
      }
      f.travel = d;
      positions.set(device, to);
    }
    if (reasons.length > 0) return { positions };

    const totals = new Map<string, number>();
    for (const [i, f] of facts.entries()) {
      for (const { budget, cost } of f.rule.costs) {
        let amount: number;
        if (typeof cost === 'number') amount = cost;
        else if ('param' in cost) {
          const v = f.numbers.get(cost.param);
          if (v === undefined) {
            reasons.push({
              code: 'budget_cost_missing',
              message: `${stepLabel(kind, i, f.action)}: ${cost.param} is needed to count the ${budget} budget.`,
              ...(kind === 'plan' ? { step: i } : {}),
              action: f.action.action,
              rule: budget,
            });
            continue;
          }
          amount = Math.abs(v) * (cost.factor ?? 1);
        } else amount = (f.travel ?? 0) * (cost.factor ?? 1);
        totals.set(budget, (totals.get(budget) ?? 0) + amount);
      }
    }
    let mission: PlanEffects['mission'];
    const missionAmounts = new Map<string, number>();
    for (const [budget, total] of totals) {
      const b = this.policy.budgets.get(budget)!;
      const unit = b.unit ? ` ${b.unit}` : '';
      const what = kind === 'plan' ? 'The plan' : 'The action';
      if (b.per === 'mission') {
        if (!mission) {
          const id = this.missionId(facts[0].action, live);
          if (typeof id !== 'string') {
            reasons.push({ code: 'mission_unknown', message: id.reason, rule: budget });
            continue;
          }
          mission = { id, amounts: missionAmounts };
        }
        const spent = this.limits.spent(mission.id, budget);
        if (spent + total > b.max + 1e-9) {
          reasons.push({
            code: 'budget_exceeded',
            message: `${what} needs ${round(total)}${unit} of ${budget}; mission ${show(mission.id)} has used ${round(spent)}${unit} of its ${b.max}${unit}.`,
            rule: budget,
          });
        }
        missionAmounts.set(budget, total);
      } else if (total > b.max + 1e-9) {
        reasons.push({
          code: 'budget_exceeded',
          message: `${what} needs ${round(total)}${unit} of ${budget}; the budget is ${b.max}${unit}.`,
          rule: budget,
        });
      }
    }
    return { positions, mission };
  }

  /** Where a device starts: read live (siteMap.position), else where its last approved move took it, else home. */
  private startZone(action: Action, live: LiveReader): { zone: string } | { reason: string } {
    const map = this.policy.siteMap!;
    if (map.position) {
      const path = resolvePath(map.position.path, action);
      const zone = path.ok ? live(map.position.source, path.segments) : undefined;
      if (typeof zone === 'string' && map.zones.has(zone)) return { zone };
      return {
        reason: `where the device is cannot be told (${map.position.source}.${map.position.pathText} is ${show(zone)}), so its travel cannot be measured.`,
      };
    }
    const zone = this.limits.position(action.device ?? '') ?? map.home;
    return zone !== undefined
      ? { zone }
      : { reason: 'where the device is cannot be told (no site map home, no move approved yet).' };
  }

  private missionId(action: Action, live: LiveReader): string | { reason: string } {
    const m = this.policy.mission!;
    const path = resolvePath(m.path, action);
    const id = path.ok ? live(m.source, path.segments) : undefined;
    if (
      (typeof id === 'string' && id.length > 0 && id.length <= 256) ||
      (typeof id === 'number' && Number.isFinite(id))
    )
      return String(id);
    return {
      reason: `The request names no mission (${m.source}.${m.pathText} is ${show(id)}), so its mission budget cannot be counted.`,
    };
  }

  /** Checks rate limits and rates of change; returns the commit that applies them. */
  private checkLimits(
    facts: StepFacts[],
    kind: 'action' | 'plan',
    now: number,
    live: LiveReader,
    reasons: Reason[],
    effects: PlanEffects = NO_EFFECTS,
  ): LimitCommit {
    // Most requests have a limit to count; one that has none (no rate limit, no rate of change)
    // shares the empty maps and goes straight to the bound on what the limits remember.
    let limited = this.policy.rateLimits.length > 0;
    for (let i = 0; i < facts.length && !limited; i++)
      limited = facts[i].rule.rateLimits.length > 0 || facts[i].rule.rateOfChange.length > 0;
    const demand = limited ? new Map<string, Demand>() : NO_LIMITS.demand;
    for (let i = 0; i < facts.length && limited; i++) {
      const f = facts[i];
      const keys = this.limitKeys(f.rule);
      for (let j = 0; j < keys.length; j++) {
        const lk = keys[j];
        const key = lk.keys.key(f);
        const d = demand.get(key);
        if (d) d.n++;
        else demand.set(key, { key: lk, n: 1, fact: f, step: i });
      }
    }
    const subject = kind === 'plan' ? 'The plan' : 'The action';
    for (const [key, { key: lk, n, fact, step }] of demand) {
      const plan = kind === 'plan' ? { step } : {};
      if (lk.bucket) {
        const limit = lk.limit as RateLimitRule & BucketLimit;
        if (this.limits.available(key, limit, now) + 1e-9 < n) {
          const d = { limit, n, what: limitWhat(lk, fact) };
          const wait = this.limits.waitSeconds(key, d.limit, d.n, now);
          const per = `${d.limit.capacity} at once, ${d.limit.refillPerSecond} per second`;
          reasons.push({
            code: 'rate_limited',
            message:
              d.n > d.limit.capacity
                ? `${subject} needs ${d.n} ${d.what} actions; the rate limit allows ${per}.`
                : `Rate limit for ${d.what} reached (${per}); try again in ${Math.ceil(wait)} s.`,
            ...plan,
            rule: d.what,
          });
        }
      } else {
        const w = lk.limit as RateLimitRule & WindowLimit;
        if (this.limits.counted(key, w, now) + n > w.max) {
          const d = { n, what: limitWhat(lk, fact) };
          const per = `at most ${w.max} in any ${w.windowSeconds} s`;
          const wait = this.limits.windowWaitSeconds(key, w, d.n, now);
          reasons.push({
            code: 'rate_limited',
            message:
              d.n > w.max
                ? `${subject} needs ${d.n} ${d.what} actions; the rate limit allows ${per}.`
                : `Rate limit for ${d.what} reached (${per}); try again in ${Math.ceil(wait)} s.`,
            ...plan,
            rule: d.what,
          });
        }
      }
    }

    const tentative = limited ? new Map<string, { value: number; at: number }>() : NO_LIMITS.tentative;
    for (let i = 0; i < facts.length && limited; i++) {
      const f = facts[i];
      for (const roc of f.rule.rateOfChange) {
        const v = f.numbers.get(roc.param);
        if (v === undefined) continue;
        const key = this.setpointKeys(f.rule, roc).key(f);
        const u = rocUnit(f.rule, roc);
        // The first value after a deploy must be within `first`, whatever the history says.
        if (roc.first && !tentative.has(key) && !this.sinceStart.has(key)) {
          const { min, max } = roc.first;
          if ((min !== undefined && v < min) || (max !== undefined && v > max)) {
            const range =
              min !== undefined && max !== undefined
                ? `between ${min} and ${max}${u}`
                : min !== undefined
                  ? `at least ${min}${u}`
                  : `at most ${max}${u}`;
            rocReason(
              reasons,
              kind,
              i,
              f,
              roc,
              'rate_of_change',
              `${stepLabel(kind, i, f.action)}: the first ${roc.param} after a deploy must be ${range}, not ${round(v)}${u}.`,
            );
            continue;
          }
        }
        let prev = tentative.get(key) ?? this.limits.setpoint(key);
        if (!prev && roc.initial) {
          const path = resolvePath(roc.initial.path, f.action);
          const current = path.ok ? live(roc.initial.source, path.segments) : undefined;
          if (typeof current !== 'number' || !Number.isFinite(current)) {
            rocReason(
              reasons,
              kind,
              i,
              f,
              roc,
              'interlock_value_missing',
              `${stepLabel(kind, i, f.action)}: the present ${roc.param} is unknown (no number at ${roc.initial.source}.${roc.initial.pathText}), so its rate of change cannot be checked.`,
            );
            continue;
          }
          // With no approved history, the live value counts as set one second ago.
          prev = { value: current, at: now - 1000 };
        }
        if (prev) {
          const seconds = Math.max(0, now - prev.at) / 1000;
          const allowed = roc.maxPerSecond * seconds;
          const change = Math.abs(v - prev.value);
          if (change > allowed + 1e-9) {
            rocReason(
              reasons,
              kind,
              i,
              f,
              roc,
              'rate_of_change',
              `${stepLabel(kind, i, f.action)}: ${roc.param} would move by ${round(change)}${u} (from ${round(prev.value)} to ${round(v)}) in ${round(seconds)} s; the limit is ${roc.maxPerSecond}${u} per second.`,
            );
          }
        }
        tentative.set(key, { value: v, at: now });
      }
    }
    const most = demand.size + tentative.size + effects.positions.size + (effects.mission ? 1 : 0);
    // The keys are listed only when they might not fit (rarely): this runs for every decision.
    if (!this.limits.fits(most) && !this.limits.hasRoom(trackedKeys(demand, tentative, effects), now)) {
      reasons.push({
        code: 'rate_limited',
        message: 'The guardrail is tracking as many limits as it may; the request is refused.',
      });
    }
    return { demand, tentative };
  }

  /** Applies what checkLimits found: takes the tokens, counts the windows, records the set-points. */
  private applyLimits({ demand, tentative }: LimitCommit, now: number): void {
    for (const [key, d] of demand) {
      if (d.key.bucket) this.limits.take(key, d.key.limit as RateLimitRule & BucketLimit, d.n, now);
      else this.limits.record(key, d.key.limit as RateLimitRule & WindowLimit, d.n, now);
    }
    for (const [key, p] of tentative) {
      this.limits.setSetpoint(key, p);
      this.sinceStart.add(key);
    }
  }
}

/** Every state key a request would write. */
function trackedKeys(
  demand: ReadonlyMap<string, unknown>,
  tentative: ReadonlyMap<string, unknown>,
  effects: PlanEffects,
): string[] {
  return [
    ...demand.keys(),
    ...tentative.keys(),
    ...[...effects.positions.keys()].map((k) => `p:${k}`),
    ...(effects.mission ? [`m:${effects.mission.id}`] : []),
  ];
}

/** ` Nm`: the unit of a rate-of-change rule's parameter, for a message. */
function rocUnit(rule: CompiledAction, roc: CompiledRateOfChange): string {
  const unit = rule.params.get(roc.param)?.unit;
  return unit ? ` ${unit}` : '';
}

function rocReason(
  reasons: Reason[],
  kind: 'action' | 'plan',
  i: number,
  f: StepFacts,
  roc: CompiledRateOfChange,
  code: ReasonCode,
  message: string,
): void {
  reasons.push({
    code,
    message,
    ...(kind === 'plan' ? { step: i } : {}),
    action: f.rule.name,
    rule: roc.param,
  });
}

function round(n: number): string {
  return String(Math.round(n * 1000) / 1000);
}
