import { randomBytes } from 'node:crypto';
import type { Reason } from './evaluate';

export interface PendingApproval {
  /** Random 128-bit id, hex; the approver's message names it. */
  id: string;
  /** The request's snapshot (plain data nobody else holds), evaluated again when the approval arrives. */
  payload: unknown;
  kind: 'action' | 'plan';
  created: number;
  expires: number;
  reasons: Reason[];
  requestMsgId?: string;
  /** The request's msg.mission, given back with the decision made later. */
  mission?: unknown;
}

export type TakeResult =
  | { status: 'found'; entry: PendingApproval }
  | { status: 'expired'; entry: PendingApproval }
  | { status: 'unknown' };

export interface ApprovalDecision {
  id: string;
  decision: 'approve' | 'reject';
  approver?: string;
  comment?: string;
}

/** Requests waiting for a person. Bounded: when full, new requests are refused, not older ones dropped. */
export class PendingApprovals {
  private readonly pending = new Map<string, PendingApproval>();

  constructor(private readonly maxPending: number) {}

  add(entry: Omit<PendingApproval, 'id' | 'payload'> & { payload: unknown }): PendingApproval | undefined {
    if (this.pending.size >= this.maxPending) return undefined;
    const stored: PendingApproval = {
      ...entry,
      id: randomBytes(16).toString('hex'),
      payload: entry.payload,
    };
    this.pending.set(stored.id, stored);
    return stored;
  }

  /** Removes and returns the entry; each approval can be used once. */
  take(id: string, now: number): TakeResult {
    const entry = this.pending.get(id);
    if (!entry) return { status: 'unknown' };
    this.pending.delete(id);
    return now >= entry.expires ? { status: 'expired', entry } : { status: 'found', entry };
  }

  /** Removes and returns every entry whose time is up. */
  expire(now: number): PendingApproval[] {
    const out: PendingApproval[] = [];
    for (const [id, entry] of this.pending) {
      if (now >= entry.expires) {
        this.pending.delete(id);
        out.push(entry);
      }
    }
    return out;
  }

  get size(): number {
    return this.pending.size;
  }

  clear(): void {
    this.pending.clear();
  }
}

/**
 * Reads an approver's decision from `msg.approval`: `{id, decision: 'approve' | 'reject', approver?,
 * comment?}`. Returns undefined when the message carries no decision (it is then a new request), or an
 * error text when it tries to and is malformed.
 */
export function parseApprovalDecision(approval: unknown): ApprovalDecision | { error: string } | undefined {
  if (typeof approval !== 'object' || approval === null || !Object.hasOwn(approval, 'decision'))
    return undefined;
  const a = approval as Record<string, unknown>;
  if (typeof a.id !== 'string' || !/^[0-9a-f]{32}$/.test(a.id))
    return { error: 'msg.approval.id must be the id of a pending approval.' };
  if (a.decision !== 'approve' && a.decision !== 'reject') {
    return { error: 'msg.approval.decision must be "approve" or "reject".' };
  }
  if (a.approver !== undefined && typeof a.approver !== 'string')
    return { error: 'msg.approval.approver must be text.' };
  if (a.comment !== undefined && typeof a.comment !== 'string')
    return { error: 'msg.approval.comment must be text.' };
  return {
    id: a.id,
    decision: a.decision,
    ...(a.approver !== undefined ? { approver: a.approver as string } : {}),
    ...(a.comment !== undefined ? { comment: a.comment as string } : {}),
  };
}
