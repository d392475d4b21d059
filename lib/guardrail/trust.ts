import { createHmac, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalJson } from '../device/signing';
import { writeAtomicSync } from '../util/files';

/**
 * Which policy a guardrail approves under now, signed with its signing key, so that an actuator
 * holding the same key can tell the guardrails it serves from any other and accept only signatures
 * made under a policy one of them still holds. `previous` lists the policies it held before, each
 * with the instant it stopped holding it, for an actuator's grace period.
 */
export interface PolicyAnnouncement {
  /** The guardrail node's id. */
  node: string;
  /** The policy it approves under; null when it has none (a bad policy, no key). */
  policyHash: string | null;
  /** Epoch ms since when. */
  since: number;
  previous: Array<{ policyHash: string; until: number }>;
  /** HMAC-SHA256 with a key derived from the signing key over the rest, hex. */
  mac: string;
}

export type TrustVerdict =
  | { ok: true }
  | {
      ok: false;
      code: 'stale_policy';
      message: string;
      /** No guardrail with this key has said which policy it holds (yet). */
      unknown: boolean;
    };

/** What an actuator asks before it accepts or sends a command. */
export interface PolicyTrust {
  check(policyHash: string, now: number): TrustVerdict;
}

const LABEL = 'node-red-contrib-edge-llm/guardrail/policy-announcement/v1';
const HEX64 = /^[0-9a-f]{64}$/;
const KEPT = 8;

function announcementKey(signingKey: string | Buffer): Buffer {
  return createHmac('sha256', signingKey).update(LABEL).digest();
}

function macOf(key: Buffer, body: Omit<PolicyAnnouncement, 'mac'>): string {
  return createHmac('sha256', key).update(canonicalJson(body)).digest('hex');
}

export function announcePolicy(
  signingKey: string | Buffer,
  body: Omit<PolicyAnnouncement, 'mac'>,
): PolicyAnnouncement {
  const clean = { ...body, previous: body.previous.slice(0, KEPT) };
  return { ...clean, mac: macOf(announcementKey(signingKey), clean) };
}

/** True when `a` is an announcement made with this signing key. */
export function verifyAnnouncement(a: unknown, signingKey: string | Buffer): a is PolicyAnnouncement {
  if (typeof a !== 'object' || a === null) return false;
  const { mac, ...body } = a as PolicyAnnouncement;
  if (typeof mac !== 'string' || !HEX64.test(mac)) return false;
  if (typeof body.node !== 'string' || typeof body.since !== 'number' || !Array.isArray(body.previous))
    return false;
  if (body.policyHash !== null && typeof body.policyHash !== 'string') return false;
  let expected: string;
  try {
    expected = macOf(announcementKey(signingKey), body);
  } catch {
    return false;
  }
  return timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(mac, 'hex'));
}

const short = (hash: string) => hash.slice(0, 12);

/**
 * Whether a signature made under `policyHash` may be executed now: yes if a guardrail this key
 * serves holds that policy, or held it until less than `graceMs` ago. Announcements made with
 * another key are ignored.
 */
export function trustPolicy(
  policyHash: string,
  announcements: readonly unknown[],
  signingKey: string | Buffer,
  opts: { graceMs: number; now: number },
): TrustVerdict {
  const mine = announcements.filter((a): a is PolicyAnnouncement => verifyAnnouncement(a, signingKey));
  if (mine.length === 0) {
    return {
      ok: false,
      code: 'stale_policy',
      unknown: true,
      message: 'no guardrail with this signing key is running, so no policy is trusted',
    };
  }
  if (mine.some((a) => a.policyHash === policyHash)) return { ok: true };
  if (
    mine.some((a) => a.previous.some((p) => p.policyHash === policyHash && opts.now < p.until + opts.graceMs))
  )
    return { ok: true };
  const current = mine.map((a) => (a.policyHash ? short(a.policyHash) : 'none')).join(', ');
  return {
    ok: false,
    code: 'stale_policy',
    unknown: false,
    message: `signed under policy ${short(policyHash)}, which the guardrail no longer holds (now: ${current})`,
  };
}

/** A fixed list of trusted policy hashes, for a guardrail that runs in another process. */
export function fixedTrust(hashes: readonly string[]): PolicyTrust {
  const set = new Set(hashes);
  return {
    check: (policyHash) =>
      set.has(policyHash)
        ? { ok: true }
        : {
            ok: false,
            code: 'stale_policy',
            unknown: false,
            message: `signed under policy ${short(policyHash)}, which is not one of the trusted policies`,
          },
  };
}

/** Parses "hash, hash ..." as 64-hex policy hashes; an error text names the first bad one. */
export function parsePolicyHashes(text: string): string[] | { error: string } {
  const hashes = text
    .split(/[\s,;]+/)
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  const bad = hashes.find((h) => !HEX64.test(h));
  return bad === undefined ? hashes : { error: `"${bad}" is not a policy hash (64 hex digits)` };
}

interface PolicyHistory {
  policyHash: string | null;
  since: number;
  previous: Array<{ policyHash: string; until: number }>;
}

/**
 * Records that a guardrail now holds `policyHash` (null: none) in `file`, keeping the policies it
 * held before and when each stopped, across redeploys and restarts. Returns the history to announce.
 */
export function recordPolicy(file: string, policyHash: string | null, now: number): PolicyHistory {
  let before: PolicyHistory | undefined;
  try {
    before = JSON.parse(fs.readFileSync(file, 'utf8')) as PolicyHistory;
    if (typeof before !== 'object' || before === null || !Array.isArray(before.previous)) before = undefined;
  } catch {
    before = undefined;
  }
  if (before && before.policyHash === policyHash) return before;
  const previous = before?.previous.filter((p) => p.policyHash !== policyHash) ?? [];
  if (before?.policyHash) previous.unshift({ policyHash: before.policyHash, until: now });
  const history = { policyHash, since: now, previous: previous.slice(0, KEPT) };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeAtomicSync(file, JSON.stringify(history) + '\n');
  return history;
}
