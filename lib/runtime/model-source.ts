import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { redactUrl } from '../util/redact';
import { LlmError } from './errors';
import { loadNodeLlamaCpp } from './llama';

export interface ModelIdentity {
  path: string;
  size: number;
  sha256: string;
}

export interface ResolveOptions {
  /** Where names are looked up and URIs are downloaded to. */
  modelsDir: string;
  onDownloadProgress?: (fraction: number) => void;
  signal?: AbortSignal;
  /**
   * How long a URI may take to answer (before its download starts) or to send more bytes: without
   * a network a fetch would otherwise retry for minutes with no word to anyone.
   */
  stallMs?: number;
}

/** With the time to load node-llama-cpp and resolve, an offline fetch fails well within 10 s. */
export const DEFAULT_STALL_MS = 8_000;

/**
 * Where a source's file is expected in the models directory (a URI's file name, or a bare name):
 * what a person without a network copies there, and what a failed load watches for.
 */
export function expectedModelPath(source: string, modelsDir: string): string | undefined {
  const spec = source.trim();
  if (!spec) return undefined;
  if (isModelUri(spec)) {
    const base = spec.split(/[?#]/)[0].split('/').pop() ?? '';
    return base.toLowerCase().endsWith('.gguf') ? path.join(modelsDir, base) : undefined;
  }
  if (path.isAbsolute(spec)) return spec;
  return path.resolve(modelsDir, spec.toLowerCase().endsWith('.gguf') ? spec : `${spec}.gguf`);
}

const URI = /^(hf:|huggingface:|https?:\/\/)/i;

export function isModelUri(source: string): boolean {
  return URI.test(source);
}

/**
 * Turns what a user typed (a path, a `hf:`/https URI, or a bare name) into a local file path.
 * A URI whose file already sits in the models directory under its own name is used as is, so a
 * folder of models copied onto an offline gateway is found without any network access.
 */
export async function resolveModelSource(source: string, options: ResolveOptions): Promise<string> {
  const spec = source.trim();
  if (!spec)
    throw new LlmError('model_load', 'No model is configured: give a file path, an hf: URI or a model name.');
  if (isModelUri(spec)) {
    const base = spec.split(/[?#]/)[0].split('/').pop() ?? '';
    const fileName = base.toLowerCase().endsWith('.gguf') ? base : undefined;
    // Already in the models directory (copied there for an offline gateway): no network at all.
    if (fileName) {
      const local = path.join(options.modelsDir, fileName);
      if ((await stat(local).catch(() => undefined))?.isFile()) return local;
    }
    const stallMs = options.stallMs ?? DEFAULT_STALL_MS;
    const stalled = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => stalled.abort(), stallMs);
    };
    arm();
    const signal = options.signal ? AbortSignal.any([options.signal, stalled.signal]) : stalled.signal;
    // Loading node-llama-cpp counts against the stall time too: the 10 s are the person's.
    const { resolveModelFile } = await loadNodeLlamaCpp();
    const where = path.join(options.modelsDir, fileName ?? '<file>.gguf');
    try {
      const file = resolveModelFile(spec, {
        directory: options.modelsDir,
        fileName,
        cli: false,
        signal,
        onProgress: ({ totalSize, downloadedSize }) => {
          arm();
          options.onDownloadProgress?.(totalSize > 0 ? downloadedSize / totalSize : 0);
        },
      });
      // node-llama-cpp may not look at the signal while it resolves the URI: the stall wins the race.
      const stall = new Promise<never>((_, reject) => {
        if (stalled.signal.aborted) reject(new Error('stalled'));
        stalled.signal.addEventListener('abort', () => reject(new Error('stalled')), { once: true });
      });
      file.catch(() => undefined);
      return await Promise.race([file, stall]);
    } catch (err) {
      if (stalled.signal.aborted && !options.signal?.aborted) {
        throw new LlmError(
          'model_load',
          `Could not fetch model ${redactUrl(spec)}: no answer from the network within ${Math.round(stallMs / 1000)} s. ` +
            `Without a network, put the file at ${where} (copy it to a temporary name there, then rename it).`,
          { cause: err },
        );
      }
      throw new LlmError(
        'model_load',
        `Could not get model ${redactUrl(spec)}: ${(err as Error).message}. Without a network, put the file at ${where}.`,
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
  }
  const candidates = path.isAbsolute(spec)
    ? [spec]
    : [
        path.resolve(options.modelsDir, spec),
        path.resolve(options.modelsDir, `${spec}.gguf`),
        path.resolve(spec),
      ];
  for (const candidate of candidates) {
    const info = await stat(candidate).catch(() => undefined);
    if (info?.isFile()) return candidate;
  }
  throw new LlmError(
    'model_load',
    `Model file not found: ${spec} (looked in ${candidates.join(', ')}). Set EDGE_LLM_MODELS_DIR or give a full path or an hf: URI.`,
  );
}

/**
 * Hashes are costly for multi-GB files (about 9 s for 4 GB on a 2-core gateway): computed once per
 * (path, size, mtime), and remembered across restarts in `file` when one is given.
 */
export class IdentityCache {
  private readonly cache = new Map<string, Promise<ModelIdentity>>();
  private stored: Promise<Record<string, string>> | undefined;

  constructor(private readonly file?: string) {}

  async identify(file: string): Promise<ModelIdentity> {
    const info = await stat(file);
    const key = `${file}\0${info.size}\0${info.mtimeMs}`;
    let identity = this.cache.get(key);
    if (!identity) {
      identity = this.lookup(key, file).then((sha256) => ({ path: file, size: info.size, sha256 }));
      this.cache.set(key, identity);
      identity.catch(() => this.cache.delete(key));
    }
    return identity;
  }

  private async lookup(key: string, file: string): Promise<string> {
    if (!this.file) return sha256File(file);
    this.stored ??= readFile(this.file, 'utf8')
      .then((text) => JSON.parse(text) as Record<string, string>)
      .catch(() => ({}));
    const stored = await this.stored;
    const known = stored[key];
    if (typeof known === 'string' && /^[0-9a-f]{64}$/.test(known)) return known;
    const sha256 = await sha256File(file);
    stored[key] = sha256;
    // A lost write only costs one more hash later: written whole, then renamed into place.
    const tmp = `${this.file}.${process.pid}.tmp`;
    await mkdir(path.dirname(this.file), { recursive: true })
      .then(() => writeFile(tmp, JSON.stringify(stored)))
      .then(() => rename(tmp, this.file!))
      .catch(() => undefined);
    return sha256;
  }
}

export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** Whether the file starts with GGUF's magic bytes (a model and a LoRA adapter alike). */
export async function hasGgufMagic(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  const magic = Buffer.alloc(4);
  try {
    await handle.read(magic, 0, 4, 0);
  } finally {
    await handle.close();
  }
  return magic.toString('latin1') === 'GGUF';
}

/**
 * Reads the GGUF header before llama.cpp does, so a wrong or incomplete file gets a sentence a
 * person can act on (llama.cpp itself only says "Failed to load model").
 */
export async function checkGgufFile(file: string, size: number): Promise<void> {
  if (!(await hasGgufMagic(file))) {
    throw new LlmError('model_load', `${file} is not a GGUF model file (it does not start with "GGUF").`);
  }
  const { readGgufFileInfo } = await loadNodeLlamaCpp();
  let lastTensorOffset = 0;
  try {
    const info = await readGgufFileInfo(file, { readTensorInfo: true, logWarnings: false });
    for (const tensor of info.fullTensorInfo ?? []) {
      lastTensorOffset = Math.max(lastTensorOffset, Number(tensor.fileOffset));
    }
  } catch (err) {
    throw new LlmError(
      'model_load',
      `${file} has a truncated or corrupt GGUF header: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if (lastTensorOffset >= size) {
    throw new LlmError(
      'model_load',
      `${file} is truncated (${size} bytes, but its tensors reach past byte ${lastTensorOffset}); download it again.`,
    );
  }
}
