import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { GgufFileInfo } from 'node-llama-cpp' with { 'resolution-mode': 'import' };
import { redactUrl } from '../util/redact';
import { LlmError } from './errors';
import { loadNodeLlamaCpp } from './llama';
import { formatModelRef, parseModelRef, verifyModelRef } from './manifest';
import { hasGgufMagic, resolveModelSource, type IdentityCache } from './model-source';

/** A LoRA adapter as a runtime names it: a file (path, name in the models directory, name@version) and its scale. */
export interface AdapterSpec {
  source: string;
  /** How strongly the adapter applies: 0 is the base model, 1 the adapter as trained. */
  scale: number;
}

/** An adapter found, checked and hashed: what a context is created with and keyed by. */
export interface ResolvedAdapter {
  source: string;
  file: string;
  scale: number;
  sha256: string;
  size: number;
}

export const MAX_ADAPTERS = 8;
const MAX_SCALE = 10;

/**
 * The adapters field as a person types it: one adapter a line, its file then an optional scale
 * (default 1), e.g. `tone@1.0.0 0.8` or `/data/lora/terse.gguf`; blank lines and `#` comments
 * are skipped. Also accepts a list of {source, scale} (from JSON).
 */
export function parseAdapters(value: unknown): AdapterSpec[] {
  if (value === undefined || value === null || value === '') return [];
  const out: AdapterSpec[] = [];
  const add = (source: string, scale: number, where: string): void => {
    if (!source) throw new LlmError('bad_request', `LoRA adapter ${where}: no file is named.`);
    if (!Number.isFinite(scale) || Math.abs(scale) > MAX_SCALE)
      throw new LlmError(
        'bad_request',
        `LoRA adapter ${where}: the scale must be a number from -${MAX_SCALE} to ${MAX_SCALE}.`,
      );
    out.push({ source, scale });
  };
  if (Array.isArray(value)) {
    value.forEach((item: unknown, i) => {
      const a = item as { source?: unknown; scale?: unknown } | null;
      const scale = a?.scale === undefined ? 1 : Number(a.scale);
      add(typeof a?.source === 'string' ? a.source.trim() : '', scale, `${i + 1}`);
    });
  } else if (typeof value === 'string') {
    value.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.replace(/(^|\s)#.*$/, '').trim();
      if (!line) return;
      const m = /^(.*\S)\s+(-?[\d.]+(?:e-?\d+)?)$/i.exec(line);
      const source = m ? m[1] : line;
      const scale = m ? Number(m[2]) : 1;
      add(source, scale, `on line ${i + 1} ("${raw.trim()}")`);
    });
  } else {
    throw new LlmError('bad_request', 'LoRA adapters must be text (one "file scale" a line) or a list.');
  }
  if (out.length > MAX_ADAPTERS)
    throw new LlmError(
      'bad_request',
      `At most ${MAX_ADAPTERS} LoRA adapters apply to one runtime (got ${out.length}).`,
    );
  return out;
}

/**
 * Finds each adapter's file and its identity: a name@version is verified like a model (its
 * manifest's sha256, and its signature when a key is configured); with a signing key nothing else
 * is accepted. A plain path is hashed once per file change (the registry's identity cache).
 */
export async function resolveAdapters(
  specs: readonly AdapterSpec[],
  options: { modelsDir: string; publicKey?: string; identities: IdentityCache; signal?: AbortSignal },
): Promise<ResolvedAdapter[]> {
  const out: ResolvedAdapter[] = [];
  for (const spec of specs) {
    const ref = parseModelRef(spec.source);
    if (ref) {
      const verified = await verifyModelRef(options.modelsDir, ref, options.publicKey, options.signal).catch(
        (err: Error) => {
          throw new LlmError('model_load', `LoRA adapter ${formatModelRef(ref)}: ${err.message}`, {
            cause: err,
          });
        },
      );
      out.push({
        source: spec.source,
        file: verified.file,
        scale: spec.scale,
        sha256: verified.manifest.sha256,
        size: verified.manifest.size,
      });
      continue;
    }
    if (options.publicKey)
      throw new LlmError(
        'model_load',
        `A model signing key is configured, so LoRA adapters too load only as signed name@version from the models directory (got "${redactUrl(spec.source)}").`,
      );
    const file = await resolveModelSource(spec.source, {
      modelsDir: options.modelsDir,
      signal: options.signal,
    }).catch((err: Error) => {
      throw new LlmError('model_load', `LoRA adapter ${redactUrl(spec.source)}: ${err.message}`, {
        cause: err,
      });
    });
    const identity = await options.identities.identify(file);
    out.push({ source: spec.source, file, scale: spec.scale, sha256: identity.sha256, size: identity.size });
  }
  return out;
}

/** What keys a context by its adapters: the same files at the same scales share one; none: ''. */
export function adaptersKey(adapters: readonly ResolvedAdapter[]): string {
  if (adapters.length === 0) return '';
  const hash = createHash('sha256');
  for (const a of adapters) hash.update(`${a.sha256}:${a.scale}\n`);
  return hash.digest('hex').slice(0, 12);
}

const BYTES_PER_VALUE: Record<number, number> = { 0: 4, 1: 2, 30: 2 };

/**
 * Reads an adapter's GGUF header and holds it against the loaded model before llama.cpp does, so a
 * wrong file gets a sentence a person can act on (llama.cpp only says it failed to initialize).
 * The checks are llama.cpp's own (llama-adapter.cpp): an adapter of type lora, the model's
 * architecture, `<tensor>.lora_a` / `.lora_b` pairs for tensors the model has, in shapes that fit.
 */
export async function checkAdapterFile(adapter: ResolvedAdapter, model: GgufFileInfo): Promise<void> {
  const file = adapter.file;
  const bad = (what: string): never => {
    throw new LlmError('model_load', `LoRA adapter ${file}: ${what}`);
  };
  const size = (await stat(file).catch(() => undefined))?.size;
  if (size === undefined) bad('the file is missing.');
  if (!(await hasGgufMagic(file))) bad('not a GGUF file (it does not start with "GGUF").');
  const { readGgufFileInfo } = await loadNodeLlamaCpp();
  let info: GgufFileInfo;
  try {
    info = await readGgufFileInfo(file, { readTensorInfo: true, logWarnings: false });
  } catch (err) {
    return bad(`a truncated or corrupt GGUF header (${(err as Error).message}).`);
  }
  const meta = info.metadata as unknown as {
    general?: { type?: unknown; architecture?: unknown };
    adapter?: { type?: unknown };
  };
  if (meta.general?.type !== 'adapter')
    bad(
      `not an adapter (general.type is ${JSON.stringify(meta.general?.type ?? null)}; a LoRA adapter file says "adapter").`,
    );
  if (meta.adapter?.type !== 'lora')
    bad(`not a LoRA adapter (adapter.type is ${JSON.stringify(meta.adapter?.type ?? null)}).`);
  const arch = String(model.metadata?.general?.architecture ?? '');
  if (meta.general?.architecture !== arch)
    bad(`made for the ${String(meta.general?.architecture)} architecture; the model is ${arch}.`);
  const base = new Map((model.fullTensorInfo ?? []).map((t) => [t.name, t.dimensions.map(Number)]));
  const pairs = new Map<string, { a?: number[]; b?: number[] }>();
  for (const t of info.fullTensorInfo ?? []) {
    const dims = t.dimensions.map(Number);
    const bytes = BYTES_PER_VALUE[t.ggmlType];
    if (bytes !== undefined && Number(t.fileOffset) + dims.reduce((x, y) => x * y, 1) * bytes > size!)
      bad(`tensor ${t.name} reaches past the end of the file (${size} bytes): the file is truncated.`);
    const m = /^(.*)\.lora_([ab])$/.exec(t.name);
    if (!m) {
      if (t.name.endsWith('_norm.weight')) continue; // llama.cpp skips these too
      bad(`tensor ${t.name} is neither <tensor>.lora_a nor <tensor>.lora_b.`);
    }
    const pair = pairs.get(m![1]) ?? {};
    pair[m![2] as 'a' | 'b'] = dims;
    pairs.set(m![1], pair);
  }
  if (pairs.size === 0) bad('it holds no LoRA tensors.');
  for (const [name, { a, b }] of pairs) {
    if (!a || !b) bad(`${name} has only its lora_${a ? 'a' : 'b'} tensor.`);
    const w = base.get(name);
    if (base.size > 0 && !w) bad(`the model has no tensor ${name}: the adapter was made for another model.`);
    if (!w) continue;
    const fits = name.endsWith('token_embd.weight')
      ? w[0] === b![1] && w[1] === a![1]
      : w[0] === a![0] && w[1] === b![1] && a![1] === b![0];
    if (!fits)
      bad(
        `${name} has the shape [${w.join(', ')}] in the model, which lora_a [${a!.join(', ')}] and lora_b [${b!.join(', ')}] do not fit: the adapter was made for another model.`,
      );
  }
}

/** What the runtime list shows of an adapter: where it came from, not the key of any cache. */
export function describeAdapter(adapter: ResolvedAdapter): { source: string; sha256: string; scale: number } {
  return { source: redactUrl(adapter.source), sha256: adapter.sha256, scale: adapter.scale };
}
