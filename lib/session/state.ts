/**
 * The mission state machine every session follows:
 *
 *   Idle → ReceiveCmd → Parse → Execute → Monitor → Adjust → Execute … → Complete → Idle
 *
 * Monitor goes back to Execute for the next step of a plan, to Adjust when the feedback asks for a
 * change, or to Complete after the last step. Any active state may end in Failed or Aborted; those
 * and Complete return to Idle, which forgets the finished mission but keeps the conversation.
 */
export const MISSION_STATES = [
  'Idle',
  'ReceiveCmd',
  'Parse',
  'Execute',
  'Monitor',
  'Adjust',
  'Complete',
  'Failed',
  'Aborted',
] as const;

export type MissionState = (typeof MISSION_STATES)[number];

const ACTIVE: MissionState[] = ['ReceiveCmd', 'Parse', 'Execute', 'Monitor', 'Adjust'];

export const TRANSITIONS: Readonly<Record<MissionState, readonly MissionState[]>> = {
  Idle: ['ReceiveCmd'],
  ReceiveCmd: ['Parse', 'Failed', 'Aborted'],
  Parse: ['Execute', 'Failed', 'Aborted'],
  Execute: ['Monitor', 'Failed', 'Aborted'],
  Monitor: ['Execute', 'Adjust', 'Complete', 'Failed', 'Aborted'],
  Adjust: ['Execute', 'Failed', 'Aborted'],
  Complete: ['Idle'],
  Failed: ['Idle'],
  Aborted: ['Idle'],
};

export type SessionErrorCode =
  | 'invalid_transition'
  | 'unknown_state'
  | 'bad_key'
  | 'bad_snapshot'
  | 'wrong_key'
  | 'no_key'
  | 'corrupt'
  /** A sealed session file that fails its integrity check although the store's key is right. */
  | 'tampered'
  /** A session whose file could not be read: it refuses changes until cleared. */
  | 'unreadable'
  /** Data that cannot be stored as JSON (a cycle, a BigInt). */
  | 'bad_data'
  | 'closed';

export class SessionError extends Error {
  readonly code: SessionErrorCode;

  constructor(code: SessionErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SessionError';
    this.code = code;
  }
}

export function isMissionState(value: unknown): value is MissionState {
  return typeof value === 'string' && (MISSION_STATES as readonly string[]).includes(value);
}

export function isActive(state: MissionState): boolean {
  return ACTIVE.includes(state);
}

export function canTransition(from: MissionState, to: MissionState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Throws a SessionError that names the allowed next states when `from → to` is not allowed. */
export function checkTransition(from: MissionState, to: unknown, key?: string): MissionState {
  if (!isMissionState(to)) {
    throw new SessionError(
      'unknown_state',
      `"${String(to)}" is not a mission state; the states are ${MISSION_STATES.join(', ')}.`,
    );
  }
  if (!canTransition(from, to)) {
    const where = key === undefined ? '' : ` (session "${key}")`;
    throw new SessionError(
      'invalid_transition',
      `A mission cannot go from ${from} to ${to}${where}; from ${from} it can go to ${TRANSITIONS[from].join(' or ')}.`,
    );
  }
  return to;
}
