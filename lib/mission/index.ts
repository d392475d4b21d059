import type { Action, SignedAction } from '../device/signing';
import { type PathTemplate, parsePathTemplate, readPath, resolvePath } from '../guardrail/paths';
import type { CompiledPolicy } from '../guardrail/policy';
import { isPlainObject } from '../util/plain';

/**
 * A mission: a goal planned by llm-plan, checked and signed by the guardrail, executed one signed
 * step at a time with the device's ack, watched by declared Monitor conditions, replanned within a
 * budget, and ended Complete, Failed or Aborted with a report. Pure logic: the mission node feeds it
 * what comes back to it and sends what it returns.
 */
export type MissionStatus =
  'planning' | 'checking' | 'approval' | 'executing' | 'complete' | 'failed' | 'aborted';

export type Op = '<' | '<=' | '>' | '>=' | '==' | '!=';

/** A Monitor condition: a live reading that must hold before each step it applies to is sent. */
export interface MonitorCondition {
  /** Names the condition in the feedback and the report. */
  id: string;
  source: 'msg' | 'flow' | 'global';
  /** A path with placeholders from the step: `zones.{params.zone}.temperature`. */
  path: string;
  op: Op;
  value: number | string | boolean;
  /** Only steps of these actions (all steps when absent). */
  actions?: string[];
  /** The mission constraint it protects, said to the planner on Adjust: "never into a zone above 80 °C". */
  constraint?: string;
}

/**
 * A Monitor condition on what the steps still to run will need, measured as the guardrail measures
 * it: travel on its policy's site map from where the device is, and each step's cost in one of its
 * policy's budgets. It holds when what they need, added to what is used already, stays within the
 * budget's maximum (or `max`).
 */
export interface BudgetCondition {
  id: string;
  /** A budget of the guardrail's policy (`battery`), or `travel` for the distance on its site map. */
  budget: string;
  /** The live reading of what is used already, e.g. flow `robotState.robot.battery_used_min`. */
  used?: { source: 'msg' | 'flow' | 'global'; path: string };
  /** The maximum; the policy budget's own maximum when absent (required for travel). */
  max?: number;
  constraint?: string;
}

export interface MissionConfig {
  /** Replans allowed per mission, for refusals, failed steps and Adjust together. */
  maxReplans: number;
  /** Actions a person only sees as suggestions: in the report, never sent to the guardrail. */
  suggestOnly: string[];
  monitor: MonitorCondition[];
  /** Conditions on what the remaining steps need, measured on the guardrail's policy. */
  budgets?: BudgetCondition[];
  /**
   * Device given to a step that names none (llm-plan's steps do not): a name, or a template with
   * the mission's goal and the step in braces, `{goal.asset}`, `{params.zone}`, `{action}`.
   */
  device?: string;
  /** A device template per action, before `device`: `{"stop_line": "{goal.line}"}`. */
  devices?: Record<string, string>;
  /** Constraints sent to the planner with every plan request. */
  constraints?: unknown;
  /**
   * When no replan is left: `fail` the mission, or `drop` the steps the guardrail refused or
   * Monitor stopped and go on with the rest (each round removes at least one step).
   */
  whenSpent?: 'fail' | 'drop';
}

interface CompiledCondition extends MonitorCondition {
  template: PathTemplate;
}

interface CompiledBudget extends BudgetCondition {
  usedTemplate?: PathTemplate;
}

export type CompiledConfig = MissionConfig & { monitor: CompiledCondition[]; budgets: CompiledBudget[] };

export interface StepRecord {
  id: string;
  action: string;
  params: Record<string, unknown>;
  device?: string;
  reason?: string;
  status: 'pending' | 'sent' | 'done' | 'failed' | 'skipped';
  reply?: unknown;
  failure?: unknown;
  /** Why a step was skipped. */
  note?: string;
  sentAt?: number;
  doneAt?: number;
}

export interface MissionEvent {
  at: number;
  event: string;
  detail?: string;
}

export interface MissionState {
  id: string;
  goal: unknown;
  status: MissionStatus;
  replans: number;
  maxReplans: number;
  /** Steps done, in progress and still to do, in order. */
  steps: StepRecord[];
  suggestions: StepRecord[];
  /** Id of the step sent and waiting for its ack. */
  current?: string;
  /** The guardrail's request for a person's approval the mission waits for (status `approval`). */
  approval?: { id: string; expires?: number; reasons?: unknown; answered?: 'approve' | 'reject' };
  started: number;
  ended?: number;
  /** Why it ended, when it did not complete. */
  reason?: string;
  events: MissionEvent[];
}

/** What the mission wants sent, and where. The node sets these fields on the message. */
export interface Effect {
  port: 'plan' | 'check' | 'execute' | 'report' | 'ignored';
  payload: unknown;
  fields?: Record<string, unknown>;
  stage?: 'plan' | 'check' | 'step';
  stepId?: string;
}

/** What came back to the mission, read from a message by classify(). */
export type MissionInput =
  | { kind: 'start'; goal: unknown; id?: string; constraints?: unknown }
  | { kind: 'abort'; id?: string; reason?: string }
  | { kind: 'decide'; decision: 'approve' | 'reject'; id?: string; approver?: string; comment?: string }
  | { kind: 'needs_approval'; id: string; approvalId: string; expires?: number; reasons: unknown }
  | { kind: 'plan'; id: string; plan: { steps: unknown[]; mission?: unknown } }
  | { kind: 'no_plan'; id: string; error: string }
  | { kind: 'signed'; id: string; step: SignedAction; group: string; index: number; count: number }
  | { kind: 'refused'; id: string; decision: string; reasons: unknown; plan: unknown }
  | { kind: 'ack'; id: string; stepId: string; reply: unknown }
  | { kind: 'step_failed'; id: string; stepId: string; failure: unknown }
  | { kind: 'stray'; reason: string };

export type Reader = (source: MonitorCondition['source'], segments: readonly string[]) => unknown;

/** The guardrail's policy and how it reads live values, for the budget conditions. */
export interface PolicyView {
  policy?: CompiledPolicy;
  /** Reads as the guardrail would on the mission's next request (msg.state, msg.missionId). */
  read: Reader;
}

const OPS = new Set<Op>(['<', '<=', '>', '>=', '==', '!=']);
const ACTIVE = new Set<MissionStatus>(['planning', 'checking', 'approval', 'executing']);
const MAX_EVENTS = 200;

/** Checks a configuration once, at deploy; throws a sentence that names the field. */
export function compileConfig(raw: {
  maxReplans?: unknown;
  suggestOnly?: unknown;
  monitor?: unknown;
  budgets?: unknown;
  device?: unknown;
  devices?: unknown;
  constraints?: unknown;
  whenSpent?: unknown;
}): CompiledConfig {
  const maxReplans = raw.maxReplans === undefined ? 2 : Number(raw.maxReplans);
  if (!Number.isInteger(maxReplans) || maxReplans < 0 || maxReplans > 20)
    throw new Error('Replans must be a whole number from 0 to 20.');
  const suggestOnly = raw.suggestOnly ?? [];
  if (!Array.isArray(suggestOnly) || suggestOnly.some((a) => typeof a !== 'string'))
    throw new Error('Suggestions only must be a list of action names.');
  const monitor = raw.monitor ?? [];
  if (!Array.isArray(monitor)) throw new Error('Monitor must be a JSON list of conditions.');
  const ids = new Set<string>();
  const compiled = monitor.map((c: unknown, i): CompiledCondition => {
    const where = `Monitor condition ${i + 1}`;
    if (!isPlainObject(c)) throw new Error(`${where} is not an object {id, source, path, op, value}.`);
    if (typeof c.id !== 'string' || !c.id) throw new Error(`${where} has no id.`);
    if (ids.has(c.id)) throw new Error(`${where}: the id "${c.id}" appears twice.`);
    ids.add(c.id);
    if (c.source !== 'msg' && c.source !== 'flow' && c.source !== 'global')
      throw new Error(`${where} (${c.id}): source must be msg, flow or global.`);
    if (typeof c.path !== 'string') throw new Error(`${where} (${c.id}) has no path.`);
    const parsed = parsePathTemplate(c.path);
    if (!parsed.ok) throw new Error(`${where} (${c.id}): ${parsed.error}.`);
    if (!OPS.has(c.op as Op)) throw new Error(`${where} (${c.id}): op must be one of ${[...OPS].join(' ')}.`);
    if (!['number', 'string', 'boolean'].includes(typeof c.value))
      throw new Error(`${where} (${c.id}): value must be a number, text or true/false.`);
    if (['<', '<=', '>', '>='].includes(c.op as string) && typeof c.value !== 'number')
      throw new Error(`${where} (${c.id}): ${String(c.op)} compares numbers; value must be a number.`);
    if (
      c.actions !== undefined &&
      (!Array.isArray(c.actions) || c.actions.some((a) => typeof a !== 'string'))
    )
      throw new Error(`${where} (${c.id}): actions must be a list of action names.`);
    return { ...(c as unknown as MonitorCondition), template: parsed.template };
  });
  if (raw.device !== undefined && raw.device !== '' && typeof raw.device !== 'string')
    throw new Error('Device must be text.');
  if (typeof raw.device === 'string') checkDeviceTemplate(raw.device, 'Device');
  const devices = raw.devices ?? {};
  if (!isPlainObject(devices) || Object.values(devices).some((d) => typeof d !== 'string' || !d))
    throw new Error('Device per action must be a JSON object of action names to device templates.');
  for (const [action, d] of Object.entries(devices)) checkDeviceTemplate(d as string, `Device of ${action}`);
  const budgetList = raw.budgets ?? [];
  if (!Array.isArray(budgetList)) throw new Error('Budgets must be a JSON list of conditions.');
  const budgets = budgetList.map((c: unknown, i): CompiledBudget => {
    const where = `Budget condition ${i + 1}`;
    if (!isPlainObject(c)) throw new Error(`${where} is not an object {id, budget, used?, max?}.`);
    if (typeof c.id !== 'string' || !c.id) throw new Error(`${where} has no id.`);
    if (ids.has(c.id)) throw new Error(`${where}: the id "${c.id}" appears twice.`);
    ids.add(c.id);
    if (typeof c.budget !== 'string' || !c.budget)
      throw new Error(`${where} (${c.id}): budget must name a budget of the policy, or travel.`);
    if (c.max !== undefined && (typeof c.max !== 'number' || !(c.max >= 0)))
      throw new Error(`${where} (${c.id}): max must be a number, 0 or more.`);
    if (c.budget === 'travel' && c.max === undefined)
      throw new Error(`${where} (${c.id}): travel has no maximum in the policy; give max.`);
    let usedTemplate: PathTemplate | undefined;
    if (c.used !== undefined) {
      const u = c.used;
      if (!isPlainObject(u) || !['msg', 'flow', 'global'].includes(u.source as string))
        throw new Error(`${where} (${c.id}): used must be {source: msg, flow or global, path}.`);
      const parsed = typeof u.path === 'string' ? parsePathTemplate(u.path) : undefined;
      if (!parsed?.ok)
        throw new Error(`${where} (${c.id}): used.path ${parsed ? parsed.error : 'is missing'}.`);
      usedTemplate = parsed.template;
    }
    return { ...(c as unknown as BudgetCondition), ...(usedTemplate ? { usedTemplate } : {}) };
  });
  if (raw.whenSpent !== undefined && raw.whenSpent !== 'fail' && raw.whenSpent !== 'drop')
    throw new Error('When no replan is left must be fail or drop.');
  return {
    maxReplans,
    whenSpent: raw.whenSpent ?? 'fail',
    suggestOnly: suggestOnly as string[],
    monitor: compiled,
    budgets,
    ...(typeof raw.device === 'string' && raw.device ? { device: raw.device } : {}),
    ...(Object.keys(devices).length ? { devices: devices as Record<string, string> } : {}),
    ...(raw.constraints !== undefined ? { constraints: raw.constraints } : {}),
  };
}

const PLACEHOLDER = /\{([^{}]*)\}/g;

function checkDeviceTemplate(template: string, what: string): void {
  for (const [, ref] of template.matchAll(PLACEHOLDER)) {
    if (ref !== 'action' && ref !== 'goal' && !/^(goal|params)\.[^.]+(\.[^.]+)*$/.test(ref))
      throw new Error(`${what}: "{${ref}}" is not {goal.NAME}, {params.NAME} or {action}.`);
  }
}

/** A step's device from its template: undefined when a value it names is not there. */
export function fillDevice(
  template: string,
  goal: unknown,
  step: { action: string; params: Record<string, unknown> },
): string | undefined {
  let missing = false;
  const device = template.replace(PLACEHOLDER, (_whole, ref: string) => {
    const [head, ...rest] = ref.split('.');
    const v = ref === 'action' ? step.action : readPath(head === 'goal' ? goal : step.params, rest);
    if (typeof v === 'string' || typeof v === 'number') return String(v);
    missing = true;
    return '';
  });
  return missing || !device ? undefined : device;
}

function isSignedAction(v: unknown): v is SignedAction {
  return isPlainObject(v) && isPlainObject(v.action) && isPlainObject(v.signature);
}

/**
 * Reads what a message coming back to the mission is, from what each node of ours leaves on it:
 * `msg.mission` (stamped by this node on the way out), `msg.guardrail`, `msg.command` and
 * `msg.failure` (actuator-out), a plan in `msg.payload` (llm-plan).
 */
export function classify(msg: Record<string, unknown>): MissionInput {
  const m = msg.mission;
  // A person's message; what comes back from a stage of the mission keeps the topic it was sent with.
  const returning = isPlainObject(m) && typeof m.stage === 'string';
  if (!returning && (msg.topic === 'approve' || msg.topic === 'reject')) {
    return {
      kind: 'decide',
      decision: msg.topic,
      ...(isPlainObject(m) && typeof m.id === 'string' ? { id: m.id } : {}),
      ...(typeof msg.approver === 'string' ? { approver: msg.approver } : {}),
      ...(typeof msg.comment === 'string' ? { comment: msg.comment } : {}),
    };
  }
  if (!returning && msg.topic === 'abort') {
    return {
      kind: 'abort',
      ...(isPlainObject(m) && typeof m.id === 'string' ? { id: m.id } : {}),
      ...(typeof msg.reason === 'string' ? { reason: msg.reason } : {}),
    };
  }
  if (!isPlainObject(m) || typeof m.id !== 'string') {
    if (isSignedAction(msg.payload) || isPlainObject(msg.guardrail) || isPlainObject(msg.command))
      return {
        kind: 'stray',
        reason: 'It carries no mission id (msg.mission.id), so it belongs to no mission.',
      };
    return {
      kind: 'start',
      goal: msg.payload,
      ...(typeof msg.missionId === 'string' && msg.missionId ? { id: msg.missionId } : {}),
      ...(msg.constraints !== undefined ? { constraints: msg.constraints } : {}),
    };
  }
  const id = m.id;
  if (m.stage === 'step') {
    const stepId = typeof m.stepId === 'string' ? m.stepId : '';
    if (msg.failure !== undefined) return { kind: 'step_failed', id, stepId, failure: msg.failure };
    return { kind: 'ack', id, stepId, reply: msg.payload };
  }
  const g = msg.guardrail;
  if (m.stage === 'check' && isPlainObject(g)) {
    const parts = msg.parts as { id?: unknown; index?: unknown; count?: unknown } | undefined;
    const approval = msg.approval;
    if (g.decision === 'needs_approval' && isPlainObject(approval) && typeof approval.id === 'string') {
      return {
        kind: 'needs_approval',
        id,
        approvalId: approval.id,
        ...(typeof approval.expires === 'number' ? { expires: approval.expires } : {}),
        reasons: g.reasons,
      };
    }
    if (g.decision === 'approved' && isSignedAction(msg.payload)) {
      return {
        kind: 'signed',
        id,
        step: msg.payload,
        group: typeof parts?.id === 'string' ? parts.id : 'single',
        index: typeof parts?.index === 'number' ? parts.index : 0,
        count: typeof parts?.count === 'number' ? parts.count : 1,
      };
    }
    return { kind: 'refused', id, decision: String(g.decision), reasons: g.reasons, plan: msg.payload };
  }
  if (m.stage === 'plan') {
    const p = msg.payload;
    // llm-plan's plan names its catalogue; what its Rejected output carries back is the request.
    if (isPlainObject(p) && Array.isArray(p.steps) && typeof p.catalogueHash === 'string')
      return { kind: 'plan', id, plan: p as never };
    const err = (msg.rejected ?? msg.error) as { message?: unknown } | undefined;
    return {
      kind: 'no_plan',
      id,
      error: typeof err?.message === 'string' ? err.message : 'The planner gave no plan.',
    };
  }
  return { kind: 'stray', reason: `msg.mission.stage "${String(m.stage)}" is not one this node sends.` };
}

function compare(actual: unknown, op: Op, expected: unknown): boolean {
  switch (op) {
    case '<':
      return typeof actual === 'number' && actual < (expected as number);
    case '<=':
      return typeof actual === 'number' && actual <= (expected as number);
    case '>':
      return typeof actual === 'number' && actual > (expected as number);
    case '>=':
      return typeof actual === 'number' && actual >= (expected as number);
    case '==':
      return actual === expected;
    case '!=':
      return actual !== expected;
  }
}

/** The step as an action for the guardrail and the path templates. */
function asAction(s: StepRecord): Action {
  return {
    id: s.id,
    action: s.action,
    params: s.params,
    ...(s.device !== undefined ? { device: s.device } : {}),
  };
}

let counter = 0;
function newId(now: number): string {
  counter = (counter + 1) % 1e6;
  return `m-${now.toString(36)}-${counter.toString(36)}`;
}

/** One mission at a time for one robot or line: a new start ends the one before it (Aborted). */
export class MissionControl {
  state?: MissionState;
  private readonly config: CompiledConfig;
  /** Signed steps of the plan being collected (the guardrail sends one message per step). */
  private collecting?: { group: string; count: number; got: Map<number, SignedAction> };
  /** The signed steps still to send, in order. */
  private queue: SignedAction[] = [];

  /** The guardrail's policy for the budget conditions, when the node has one. */
  policy?: () => PolicyView;

  constructor(config: CompiledConfig) {
    this.config = config;
  }

  /** Everything needed to go on after a redeploy or a restart, as plain JSON. */
  snapshot(): MissionSnapshot | undefined {
    if (!this.state) return undefined;
    return {
      version: 1,
      state: this.state,
      queue: this.queue,
      ...(this.collecting
        ? {
            collecting: {
              group: this.collecting.group,
              count: this.collecting.count,
              got: [...this.collecting.got.entries()],
            },
          }
        : {}),
    };
  }

  /** Takes up a snapshot written by snapshot(); throws on one it cannot read. */
  restore(raw: unknown): void {
    if (!isPlainObject(raw) || raw.version !== 1 || !isPlainObject(raw.state))
      throw new Error('it is not a mission snapshot of this version');
    const state = raw.state as unknown as MissionState;
    if (typeof state.id !== 'string' || !Array.isArray(state.steps) || !Array.isArray(state.events))
      throw new Error('its mission has no id or steps');
    const queue = Array.isArray(raw.queue) ? raw.queue.filter(isSignedAction) : [];
    const c = raw.collecting;
    this.state = state;
    this.queue = queue;
    this.collecting =
      isPlainObject(c) && typeof c.group === 'string' && typeof c.count === 'number' && Array.isArray(c.got)
        ? { group: c.group, count: c.count, got: new Map(c.got as Array<[number, SignedAction]>) }
        : undefined;
  }

  get active(): boolean {
    return this.state !== undefined && ACTIVE.has(this.state.status);
  }

  handle(input: MissionInput, read: Reader, now: number): Effect[] {
    if (input.kind === 'start') return this.start(input, now);
    if (input.kind === 'stray') return [this.ignored(input.reason)];
    if (input.kind === 'decide') return this.decide(input, now);
    if (input.kind === 'abort') {
      if (!this.active) return [this.ignored('No mission is active: there is nothing to abort.')];
      if (input.id !== undefined && input.id !== this.state!.id)
        return [this.ignored(`Mission ${input.id} is not the active one (${this.state!.id}).`)];
      return this.end('aborted', input.reason ?? 'Aborted by the operator.', now);
    }
    const s = this.state;
    if (!s || s.id !== input.id)
      return [this.ignored(`Stale: mission ${input.id} is not the current one (${s?.id ?? 'none'}).`)];
    if (!this.active) return [this.ignored(`Stale: mission ${s.id} has already ended (${s.status}).`)];
    switch (input.kind) {
      case 'plan':
        return this.check(input.plan, now);
      case 'no_plan':
        return this.replan(input.error, now);
      case 'needs_approval':
        if (s.status !== 'checking')
          return [this.ignored('Stale: no plan of this mission is being checked.')];
        s.status = 'approval';
        s.approval = {
          id: input.approvalId,
          ...(input.expires !== undefined ? { expires: input.expires } : {}),
          reasons: input.reasons,
        };
        this.log('approval', now, `waiting for a person (${input.approvalId})`);
        return [];
      case 'refused':
        if (s.status !== 'checking' && s.status !== 'approval')
          return [this.ignored('Stale: no plan of this mission is being checked.')];
        if (this.spent && this.config.whenSpent === 'drop') return this.dropRefused(input.reasons, now);
        return this.replan(`The guardrail did not approve the plan (${input.decision}).`, now, {
          refused: input.reasons,
        });
      case 'signed':
        return this.collect(input, read, now);
      case 'ack':
      case 'step_failed':
        if (s.status !== 'executing' || s.current !== input.stepId)
          return [this.ignored(`Stale: step ${input.stepId || '?'} is not the step in progress.`)];
        return input.kind === 'ack' ? this.acked(input, read, now) : this.stepFailed(input, now);
    }
  }

  private log(event: string, now: number, detail?: string): void {
    const ev = this.state!.events;
    ev.push({ at: now, event, ...(detail !== undefined ? { detail } : {}) });
    if (ev.length > MAX_EVENTS) ev.splice(0, ev.length - MAX_EVENTS);
  }

  /** A person's answer to the approval the mission waits for, sent to the guardrail's approval path. */
  private decide(input: Extract<MissionInput, { kind: 'decide' }>, now: number): Effect[] {
    const s = this.state;
    if (!s || s.status !== 'approval' || !s.approval)
      return [this.ignored("No mission is waiting for a person's approval.")];
    if (input.id !== undefined && input.id !== s.id)
      return [this.ignored(`Mission ${input.id} is not the one waiting for approval (${s.id}).`)];
    if (s.approval.answered)
      return [this.ignored(`Mission ${s.id}: the approval was already answered (${s.approval.answered}).`)];
    s.approval.answered = input.decision;
    this.log(input.decision === 'approve' ? 'approved' : 'rejected', now, input.approver);
    return [
      {
        port: 'check',
        stage: 'check',
        payload: null,
        fields: {
          approval: {
            id: s.approval.id,
            decision: input.decision,
            ...(input.approver !== undefined ? { approver: input.approver } : {}),
            ...(input.comment !== undefined ? { comment: input.comment } : {}),
          },
        },
      },
    ];
  }

  private ignored(reason: string): Effect {
    return { port: 'ignored', payload: undefined, fields: { ignored: reason } };
  }

  private start(input: Extract<MissionInput, { kind: 'start' }>, now: number): Effect[] {
    const out: Effect[] = this.active ? this.end('aborted', 'A new mission was started.', now) : [];
    const id = input.id ?? newId(now);
    this.state = {
      id,
      goal: input.goal,
      status: 'planning',
      replans: 0,
      maxReplans: this.config.maxReplans,
      steps: [],
      suggestions: [],
      started: now,
      events: [],
    };
    this.queue = [];
    this.collecting = undefined;
    this.log('started', now);
    const constraints = input.constraints ?? this.config.constraints;
    out.push({
      port: 'plan',
      stage: 'plan',
      payload: input.goal,
      fields: constraints !== undefined ? { constraints } : {},
    });
    return out;
  }

  /** A plan from llm-plan: suggestions apart, a device on each step, then to the guardrail. */
  private check(plan: { steps: unknown[]; mission?: unknown }, now: number): Effect[] {
    const s = this.state!;
    if (s.status !== 'planning') return [this.ignored('Stale: this mission is not waiting for a plan.')];
    const known = new Set([...s.steps, ...s.suggestions].map((x) => x.id));
    const steps: StepRecord[] = [];
    for (const raw of plan.steps) {
      if (!isPlainObject(raw) || typeof raw.action !== 'string') continue;
      const id = typeof raw.id === 'string' ? raw.id : `s${steps.length + 1}`;
      if (known.has(id) || raw.status === 'done') continue;
      const suggestion = this.config.suggestOnly.includes(raw.action);
      const params = isPlainObject(raw.params) ? raw.params : {};
      const template = this.config.devices?.[raw.action] ?? this.config.device;
      const device =
        typeof raw.device === 'string'
          ? raw.device
          : template !== undefined
            ? fillDevice(template, s.goal, { action: raw.action, params })
            : undefined;
      steps.push({
        id,
        action: raw.action,
        params,
        ...(device !== undefined ? { device } : {}),
        ...(typeof raw.reason === 'string' ? { reason: raw.reason } : {}),
        status: suggestion ? 'skipped' : 'pending',
      });
    }
    s.suggestions.push(...steps.filter((x) => x.status === 'skipped'));
    const pending = steps.filter((x) => x.status === 'pending');
    if (pending.length === 0) return this.end('complete', undefined, now);
    s.steps = [...s.steps, ...pending];
    this.log('planned', now, `${pending.length} steps to check`);
    return this.checkRequest();
  }

  private get spent(): boolean {
    return this.state!.replans >= this.state!.maxReplans;
  }

  /** Steps done, dropped and suggested travel as history (the guardrail leaves them out); pending ones are judged. */
  private checkRequest(): Effect[] {
    const s = this.state!;
    s.status = 'checking';
    this.collecting = undefined;
    const steps = [...s.steps, ...s.suggestions].map((x) => ({ ...asAction(x), status: x.status }));
    return [{ port: 'check', stage: 'check', payload: { mission: s.goal, steps } }];
  }

  /** No replan left: the steps the guardrail named (else the last one) are dropped, the rest checked again. */
  private dropRefused(reasons: unknown, now: number): Effect[] {
    const s = this.state!;
    const pending = s.steps.filter((x) => x.status === 'pending');
    const list = Array.isArray(reasons) ? reasons.filter(isPlainObject) : [];
    const named = new Set(list.map((r) => r.stepId).filter((id): id is string => typeof id === 'string'));
    const drop = pending.filter((x) => named.has(x.id));
    if (drop.length === 0 && pending.length > 0) drop.push(pending[pending.length - 1]);
    for (const x of drop) {
      const why = list
        .filter((r) => r.stepId === undefined || r.stepId === x.id)
        .map((r) => String(r.message));
      x.status = 'skipped';
      x.note = `refused by the guardrail: ${why.join(' ')}`.trim();
    }
    this.log('dropped', now, drop.map((x) => x.id).join(' '));
    if (!s.steps.some((x) => x.status === 'pending')) return this.end('complete', undefined, now);
    return this.checkRequest();
  }

  private collect(input: Extract<MissionInput, { kind: 'signed' }>, read: Reader, now: number): Effect[] {
    const s = this.state!;
    if (s.status !== 'checking' && s.status !== 'approval')
      return [this.ignored('Stale: no plan of this mission is being checked.')];
    if (!this.collecting || this.collecting.group !== input.group)
      this.collecting = { group: input.group, count: input.count, got: new Map() };
    this.collecting.got.set(input.index, input.step);
    if (this.collecting.got.size < this.collecting.count) return [];
    const signed = [...this.collecting.got.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
    this.collecting = undefined;
    // Only steps the mission asked for are executed, in the mission's order.
    const byId = new Map(signed.map((x) => [x.action.id, x]));
    const pending = s.steps.filter((x) => x.status === 'pending');
    if (pending.some((x) => !byId.has(x.id)) || signed.length !== pending.length)
      return this.end('failed', 'The signed steps do not match the plan that was checked.', now);
    this.queue = pending.map((x) => byId.get(x.id)!);
    s.status = 'executing';
    s.approval = undefined;
    this.log('signed', now, `${signed.length} steps`);
    return this.next(read, now);
  }

  /** Monitor, then the next signed step, or Complete. */
  private next(read: Reader, now: number): Effect[] {
    const s = this.state!;
    const remaining = s.steps.filter((x) => x.status === 'pending');
    if (remaining.length === 0) return this.end('complete', undefined, now);
    const problems = [...this.monitor(remaining, read), ...this.budgetsFor(remaining)];
    if (problems.length > 0 && this.spent && this.config.whenSpent === 'drop') {
      const ids = new Set(problems.map((p) => p.step));
      for (const x of remaining) {
        if (!ids.has(x.id)) continue;
        x.status = 'skipped';
        x.note = problems
          .filter((p) => p.step === x.id)
          .map((p) => p.message)
          .join(' ');
      }
      this.queue = this.queue.filter((a) => !ids.has(a.action.id ?? ''));
      this.log('dropped', now, [...ids].join(' '));
      return this.next(read, now);
    }
    if (problems.length > 0) {
      this.log('adjust', now, problems.map((p) => p.message).join(' '));
      this.queue = [];
      return this.replan(`Adjust: ${problems.map((p) => p.message).join(' ')}`, now, { monitor: problems });
    }
    const step = remaining[0];
    const signed = this.queue.shift();
    if (!signed || signed.action.id !== step.id)
      return this.end('failed', `No signed action for step ${step.id}.`, now);
    step.status = 'sent';
    step.sentAt = now;
    s.current = step.id;
    this.log('sent', now, `${step.id} ${step.action}`);
    return [{ port: 'execute', stage: 'step', stepId: step.id, payload: signed }];
  }

  /** Conditions that do not hold for a step still to run. A missing reading is not a violation. */
  monitor(
    steps: StepRecord[],
    read: Reader,
  ): Array<{ condition: string; step: string; value: unknown; constraint?: string; message: string }> {
    const out = [];
    for (const step of steps) {
      for (const c of this.config.monitor) {
        if (c.actions && !c.actions.includes(step.action)) continue;
        const path = resolvePath(c.template, asAction(step));
        if (!path.ok) continue;
        const value = read(c.source, path.segments);
        if (value === undefined) continue;
        if (compare(value, c.op, c.value)) continue;
        out.push({
          condition: c.id,
          step: step.id,
          value,
          ...(c.constraint ? { constraint: c.constraint } : {}),
          message: `Step ${step.id} (${step.action}): ${path.segments.join('.')} is ${JSON.stringify(value)}, not ${c.op} ${JSON.stringify(c.value)}${c.constraint ? ` (${c.constraint})` : ''}.`,
        });
      }
    }
    return out;
  }

  /**
   * Budget conditions: what the steps still to run need, measured on the guardrail's policy as the
   * guardrail measures it (travel on its site map from where the device is, each step's costs).
   * Without the policy, or where the position cannot be told, nothing is judged here: the guardrail
   * refuses what it cannot measure.
   */
  budgetsFor(
    steps: StepRecord[],
  ): Array<{ condition: string; step: string; value: unknown; constraint?: string; message: string }> {
    if (this.config.budgets.length === 0 || steps.length === 0) return [];
    const view = this.policy?.();
    const policy = view?.policy;
    if (!view || !policy) return [];
    const need = planNeeds(policy, steps, this.state!.steps, view.read);
    if (!need) return [];
    const out = [];
    for (const c of this.config.budgets) {
      const total = c.budget === 'travel' ? need.travel : need.budgets.get(c.budget);
      const max = c.max ?? policy.budgets.get(c.budget)?.max;
      if (total === undefined || max === undefined) continue;
      let used = 0;
      if (c.used && c.usedTemplate) {
        const path = resolvePath(c.usedTemplate, asAction(steps[0]));
        const v = path.ok ? view.read(c.used.source, path.segments) : undefined;
        if (typeof v === 'number' && Number.isFinite(v)) used = v;
      }
      if (used + total <= max + 1e-9) continue;
      const unit =
        c.budget === 'travel' ? (policy.siteMap?.unit ?? '') : (policy.budgets.get(c.budget)?.unit ?? '');
      const u = unit ? ` ${unit}` : '';
      out.push({
        condition: c.id,
        // The last step: dropped first when no replan is left.
        step: steps[steps.length - 1].id,
        value: { need: round(total), used: round(used), max },
        ...(c.constraint ? { constraint: c.constraint } : {}),
        message: `The ${steps.length} steps left need ${round(total)}${u} of ${c.budget}; ${round(used)}${u} of ${max}${u} used already${c.constraint ? ` (${c.constraint})` : ''}.`,
      });
    }
    return out;
  }

  private acked(input: Extract<MissionInput, { kind: 'ack' }>, read: Reader, now: number): Effect[] {
    const s = this.state!;
    const step = s.steps.find((x) => x.id === input.stepId)!;
    step.status = 'done';
    step.reply = input.reply;
    step.doneAt = now;
    s.current = undefined;
    this.log('done', now, step.id);
    return this.next(read, now);
  }

  private stepFailed(input: Extract<MissionInput, { kind: 'step_failed' }>, now: number): Effect[] {
    const s = this.state!;
    const step = s.steps.find((x) => x.id === input.stepId)!;
    step.status = 'failed';
    step.failure = input.failure;
    s.current = undefined;
    const code = isPlainObject(input.failure) ? String(input.failure.code) : 'failed';
    this.log('step_failed', now, `${step.id} ${code}`);
    this.queue = [];
    return this.replan(`Step ${step.id} (${step.action}) failed: ${code}.`, now, { failed: step.id });
  }

  /** Asks for a new plan of what remains, if the budget allows; otherwise the mission fails. */
  private replan(why: string, now: number, extra: Record<string, unknown> = {}): Effect[] {
    const s = this.state!;
    if (s.replans >= s.maxReplans)
      return this.end('failed', `${why} No replans left (${s.maxReplans} allowed).`, now);
    s.replans++;
    s.status = 'planning';
    s.approval = undefined;
    this.collecting = undefined;
    // Steps not run are dropped, but stay in the record: a new plan never reuses their ids.
    for (const x of s.steps) if (x.status === 'pending') x.status = 'skipped';
    const done = s.steps.filter((x) => x.status === 'done');
    this.log('replan', now, why);
    const previous = {
      mission: s.goal,
      steps: [...s.steps, ...s.suggestions].map((x) => ({
        id: x.id,
        action: x.action,
        params: x.params,
        reason: x.reason ?? '',
        status: x.status === 'sent' ? 'failed' : x.status,
      })),
    };
    const feedback = { completed: done.map((x) => x.id), problem: why, ...extra };
    const constraints = this.config.constraints;
    return [
      {
        port: 'plan',
        stage: 'plan',
        payload: previous,
        fields: { plan: previous, feedback, ...(constraints !== undefined ? { constraints } : {}) },
      },
    ];
  }

  private end(status: 'complete' | 'failed' | 'aborted', reason: string | undefined, now: number): Effect[] {
    const s = this.state!;
    s.status = status;
    s.ended = now;
    s.current = undefined;
    s.approval = undefined;
    if (reason !== undefined) s.reason = reason;
    // A step sent but not acked stays `sent`: whether the device did it is not known.
    for (const x of s.steps) if (x.status === 'pending') x.status = 'skipped';
    this.queue = [];
    this.collecting = undefined;
    this.log(status, now, reason);
    return [{ port: 'report', payload: report(s) }];
  }
}

export interface MissionSnapshot {
  version: 1;
  state: MissionState;
  queue: SignedAction[];
  collecting?: { group: string; count: number; got: Array<[number, SignedAction]> };
}

const round = (x: number): number => Math.round(x * 100) / 100;

function numberOf(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (isPlainObject(v) && typeof v.value === 'number' && Number.isFinite(v.value)) return v.value;
  return undefined;
}

/**
 * What `steps` need, in the order they run: travel on the policy's site map (from the device's
 * position as the guardrail reads it, else the last move done, else the map's home) and each
 * budget's costs. Undefined when a move's start cannot be told.
 */
export function planNeeds(
  policy: CompiledPolicy,
  steps: StepRecord[],
  history: StepRecord[],
  read: Reader,
): { travel: number; budgets: Map<string, number> } | undefined {
  const map = policy.siteMap;
  const positions = new Map<string, string>();
  const budgets = new Map<string, number>();
  let travel = 0;
  const startOf = (step: StepRecord): string | undefined => {
    const device = step.device ?? '';
    const known = positions.get(device);
    if (known !== undefined) return known;
    if (map?.position) {
      const path = resolvePath(map.position.path, asAction(step));
      const zone = path.ok ? read(map.position.source, path.segments) : undefined;
      if (typeof zone === 'string' && map.zones.has(zone)) return zone;
    }
    for (const x of [...history].reverse()) {
      const to = policy.actions.get(x.action)?.moves?.to;
      if (x.status === 'done' && (x.device ?? '') === device && to && typeof x.params[to] === 'string')
        return x.params[to] as string;
    }
    return map?.home;
  };
  for (const step of steps) {
    const rule = policy.actions.get(step.action);
    if (!rule) continue;
    let distance = 0;
    if (rule.moves && map) {
      const to = step.params[rule.moves.to];
      const from = startOf(step);
      if (typeof to !== 'string' || from === undefined) return undefined;
      const d = map.distance(from, to);
      if (d === undefined) return undefined;
      distance = d;
      travel += d;
      positions.set(step.device ?? '', to);
    }
    for (const { budget, cost } of rule.costs) {
      let amount: number;
      if (typeof cost === 'number') amount = cost;
      else if ('param' in cost)
        amount = Math.abs(numberOf(step.params[cost.param]) ?? 0) * (cost.factor ?? 1);
      else amount = distance * (cost.factor ?? 1);
      budgets.set(budget, (budgets.get(budget) ?? 0) + amount);
    }
  }
  return { travel, budgets };
}

/** The mission as a person reads it after the fact: outcome, steps with their acks, suggestions. */
export function report(s: MissionState): Record<string, unknown> {
  return {
    mission: s.id,
    outcome: s.status,
    goal: s.goal,
    ...(s.reason !== undefined ? { reason: s.reason } : {}),
    started: new Date(s.started).toISOString(),
    ...(s.ended !== undefined
      ? { ended: new Date(s.ended).toISOString(), durationMs: s.ended - s.started }
      : {}),
    replans: s.replans,
    steps: s.steps.map((x) => ({
      id: x.id,
      action: x.action,
      params: x.params,
      status: x.status,
      ...(x.note !== undefined ? { note: x.note } : {}),
      ...(x.reply !== undefined ? { reply: x.reply } : {}),
      ...(x.failure !== undefined ? { failure: x.failure } : {}),
    })),
    suggestions: s.suggestions.map((x) => ({
      id: x.id,
      action: x.action,
      params: x.params,
      reason: x.reason,
    })),
    events: s.events,
  };
}
