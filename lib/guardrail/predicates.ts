import type { CompareOp, CompiledAction, CompiledInterlock, Scalar } from './policy';

/**
 * The questions a decision asks of a compiled policy. policy.ts compiles, evaluate.ts decides; the
 * compiler asks `matchesClass` too, to know which actions an interlock's paths must fit.
 */

/** Whether the action has one of `classes` (no classes given: every action). */
export function matchesClass(action: CompiledAction, classes: Set<string> | undefined): boolean {
  if (!classes) return true;
  for (const c of classes) if (action.classes.has(c)) return true;
  return false;
}

/** Whether an interlock's `when` selects this action on this device. */
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

/** A condition's comparison; ordered operators are only compiled with numbers. */
export function compare(actual: Scalar, op: CompareOp, expected: Scalar | Scalar[]): boolean {
  switch (op) {
    case '<':
      return (actual as number) < (expected as number);
    case '<=':
      return (actual as number) <= (expected as number);
    case '>':
      return (actual as number) > (expected as number);
    case '>=':
      return (actual as number) >= (expected as number);
    case '==':
      return actual === expected;
    case '!=':
      return actual !== expected;
    case 'in':
      return (expected as Scalar[]).includes(actual);
    case 'notIn':
      return !(expected as Scalar[]).includes(actual);
  }
}
