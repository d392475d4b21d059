import type { Action } from '../device/signing';

/** Keys that can reach an object's prototype; refused anywhere in a request and in any path. */
export const FORBIDDEN_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype'];

/** A path segment: literal text and `{ref}` placeholders, joined after substitution. */
export type Piece = { lit: string } | { ref: string };
export type PathTemplate = Piece[][];

const REF = /^(action|device|id|params\.[A-Za-z_][A-Za-z0-9_.:-]*)$/;
/** What a placeholder may become: no dots, brackets or quotes, so it cannot step into another path. */
const SUBSTITUTE = /^[A-Za-z0-9_ -]{1,64}$/;

/**
 * Parses `zones.{params.zone}.temperature`: dot-separated segments, each of literal text and
 * `{action}`, `{device}`, `{id}` or `{params.NAME}` placeholders taken from the action.
 */
export function parsePathTemplate(
  text: string,
): { ok: true; template: PathTemplate } | { ok: false; error: string } {
  const template: PathTemplate = [];
  let segment: Piece[] = [];
  let literal = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '{') {
      const end = text.indexOf('}', i);
      if (end < 0) return { ok: false, error: `unclosed "{" in "${text}"` };
      const ref = text.slice(i + 1, end);
      if (!REF.test(ref)) {
        return { ok: false, error: `"{${ref}}" in "${text}": use {action}, {device}, {id} or {params.NAME}` };
      }
      if (literal) segment.push({ lit: literal });
      literal = '';
      segment.push({ ref });
      i = end;
    } else if (ch === '}') {
      return { ok: false, error: `unexpected "}" in "${text}"` };
    } else if (ch === '.') {
      if (literal) segment.push({ lit: literal });
      if (segment.length === 0) return { ok: false, error: `empty segment in "${text}"` };
      template.push(segment);
      segment = [];
      literal = '';
    } else {
      literal += ch;
    }
  }
  if (literal) segment.push({ lit: literal });
  if (segment.length === 0) return { ok: false, error: `empty segment in "${text}"` };
  template.push(segment);
  for (const seg of template) {
    if (seg.length === 1 && 'lit' in seg[0] && FORBIDDEN_KEYS.includes(seg[0].lit)) {
      return { ok: false, error: `"${seg[0].lit}" is not allowed in a path` };
    }
  }
  return { ok: true, template };
}

export function templateRefs(template: PathTemplate): string[] {
  return template.flatMap((seg) => seg.flatMap((p) => ('ref' in p ? [p.ref] : [])));
}

function refValue(action: Action, ref: string): unknown {
  if (ref === 'action' || ref === 'device' || ref === 'id') return action[ref];
  const name = ref.slice('params.'.length);
  return Object.hasOwn(action.params, name) ? action.params[name] : undefined;
}

/** Substitutes the action's values into a template; fails rather than build a path from odd values. */
export function resolvePath(
  template: PathTemplate,
  action: Action,
): { ok: true; segments: string[] } | { ok: false; error: string } {
  const segments: string[] = [];
  for (const seg of template) {
    let out = '';
    for (const piece of seg) {
      if ('lit' in piece) {
        out += piece.lit;
        continue;
      }
      const v = refValue(action, piece.ref);
      const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : v;
      if (typeof s !== 'string' || !SUBSTITUTE.test(s)) {
        return {
          ok: false,
          error:
            v === undefined
              ? `{${piece.ref}} is not given`
              : `{${piece.ref}} = ${JSON.stringify(v) ?? String(v)} cannot be used in a path (letters, digits, space, _ and - only)`,
        };
      }
      out += s;
    }
    if (FORBIDDEN_KEYS.includes(out)) return { ok: false, error: `"${out}" is not allowed in a path` };
    segments.push(out);
  }
  return { ok: true, segments };
}

export function templateText(segments: readonly string[]): string {
  return segments.join('.');
}

/** Reads own properties only, so no path can reach a prototype or an inherited getter. */
export function readPath(root: unknown, segments: readonly string[]): unknown {
  let cur: unknown = root;
  for (const seg of segments) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (FORBIDDEN_KEYS.includes(seg)) return undefined;
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9]\d*)$/.test(seg)) return undefined;
      cur = cur[Number(seg)];
      continue;
    }
    if (!Object.hasOwn(cur, seg)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}
