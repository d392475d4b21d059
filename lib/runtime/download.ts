import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { redactUrl } from '../util/redact';
import { LlmError } from './errors';
import {
  checkManifest,
  formatModelRef,
  contentIdentity,
  versionDir,
  writeManifest,
  type ModelManifest,
  type ModelRef,
} from './manifest';

/** `hf:user/repo/path/file.gguf` → the file's download URL on Hugging Face (main branch). */
export function httpUrlOf(source: string): string {
  const spec = source.trim();
  const hf = /^(?:hf:|huggingface:)([^/\s]+)\/([^/\s]+)\/(.+\.gguf)$/i.exec(spec);
  if (hf) {
    const [, user, repo, file] = hf;
    return `https://huggingface.co/${user}/${repo}/resolve/main/${file.split('/').map(encodeURIComponent).join('/')}`;
  }
  if (/^https?:\/\//i.test(spec)) return spec;
  throw new LlmError(
    'bad_request',
    `A model source to download must be an https:// (or http://) URL or hf:user/repo/file.gguf (got "${redactUrl(spec)}").`,
  );
}

export interface DownloadProgress {
  /** Bytes on disk so far, resumed ones included. */
  received: number;
  /** Total bytes, when the server says. */
  total: number | undefined;
  /** How many times the transfer was resumed after a dropped connection. */
  resumes: number;
}

export interface DownloadOptions {
  modelsDir: string;
  ref: ModelRef;
  /** An https/http URL or an hf: URI. */
  source: string;
  /** The file name in the version's folder; default: the URL's last path segment. */
  fileName?: string;
  /** When given, the file must have this hash (else it is deleted and the download fails). */
  sha256?: string;
  size?: number;
  /** A signature made over the manifest the publisher built (see manifest.ts); kept in the manifest. */
  signature?: string;
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
  /** A connection that sends nothing this long is dropped and resumed (ms). */
  stallMs?: number;
  /** How many dropped connections are resumed before the download fails. */
  maxResumes?: number;
  /** Wait before a resume (ms); doubles each time. */
  retryMs?: number;
}

export interface DownloadResult {
  manifest: ModelManifest;
  file: string;
  bytes: number;
  resumes: number;
  /** Bytes found already on disk from an earlier, interrupted download. */
  resumedFrom: number;
}

/**
 * Downloads a model version into `<modelsDir>/<name>/<version>/`, resuming with HTTP Range
 * requests: a dropped connection (or a restart of Node-RED) continues from the bytes already in
 * the `.part` file. The finished file is hashed, checked against the expected sha256 and size
 * when given, renamed into place, and its manifest written last: a version is complete exactly
 * when its manifest exists.
 */
export async function downloadModel(options: DownloadOptions): Promise<DownloadResult> {
  const url = httpUrlOf(options.source);
  const dir = versionDir(options.modelsDir, options.ref);
  const fileName = options.fileName ?? decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
  if (!fileName || path.basename(fileName) !== fileName || fileName.startsWith('.'))
    throw new LlmError('bad_request', `Cannot tell the model's file name from ${redactUrl(url)}: give one.`);
  if (options.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(options.sha256))
    throw new LlmError('bad_request', 'The expected sha256 must be 64 lowercase hex digits.');
  await mkdir(dir, { recursive: true });
  const target = path.join(dir, fileName);
  const part = path.join(dir, `.${fileName}.part`);
  const maxResumes = options.maxResumes ?? 20;
  const stallMs = options.stallMs ?? 30_000;
  let resumes = 0;
  const resumedFrom = (await stat(part).catch(() => undefined))?.size ?? 0;
  let total: number | undefined;

  for (;;) {
    if (options.signal?.aborted) throw cancelled();
    const have = (await stat(part).catch(() => undefined))?.size ?? 0;
    try {
      const done = await transfer(url, part, have, stallMs, options, (n, t) => {
        total = t ?? total;
        options.onProgress?.({ received: n, total, resumes });
      });
      total = done;
      break;
    } catch (err) {
      if (options.signal?.aborted) throw cancelled();
      if (err instanceof LlmError || resumes >= maxResumes) {
        if (err instanceof LlmError) throw err;
        throw new LlmError(
          'model_load',
          `Download of ${redactUrl(url)} failed after ${resumes} resume(s): ${(err as Error).message}. The bytes so far are kept in ${part}; the next try resumes from there.`,
          { cause: err },
        );
      }
      resumes++;
      await delay((options.retryMs ?? 500) * 2 ** Math.min(resumes - 1, 6), options.signal);
    }
  }

  const bytes = (await stat(part)).size;
  // The expected sha256 and size are the plaintext's for an encrypted file (see contentIdentity).
  const { sha256, size } = await contentIdentity(part, options.signal);
  const mismatch =
    options.sha256 !== undefined && sha256 !== options.sha256
      ? `sha256 ${sha256}, expected ${options.sha256}`
      : options.size !== undefined && size !== options.size
        ? `${size} bytes, expected ${options.size}`
        : total !== undefined && bytes !== total
          ? `${bytes} bytes, the server announced ${total}`
          : undefined;
  if (mismatch) {
    // A wrong file must not be resumed from next time.
    await rm(part, { force: true });
    throw new LlmError(
      'model_load',
      `Downloaded ${redactUrl(url)} for ${formatModelRef(options.ref)} is not the expected file (${mismatch}); it was deleted.`,
    );
  }
  await rename(part, target);
  const manifest = checkManifest(
    {
      name: options.ref.name,
      version: options.ref.version,
      file: fileName,
      sha256,
      size,
      source: options.source.trim(),
      ...(options.signature ? { signature: options.signature } : {}),
    },
    `The manifest for ${formatModelRef(options.ref)}`,
  );
  await writeManifest(options.modelsDir, manifest);
  return { manifest, file: target, bytes, resumes, resumedFrom };
}

function cancelled(): LlmError {
  return new LlmError('cancelled', 'The model download was cancelled.');
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(cancelled());
      },
      { once: true },
    );
  });
}

/**
 * One HTTP request from byte `have` on, appended to `part`. Resolves with the total size once the
 * body ended complete; rejects with a plain Error for what a resume may fix (a dropped or stalled
 * connection, a 5xx) and with an LlmError for what it cannot (404, a refused range).
 */
async function transfer(
  url: string,
  part: string,
  have: number,
  stallMs: number,
  options: DownloadOptions,
  onBytes: (received: number, total: number | undefined) => void,
): Promise<number> {
  const stalled = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => stalled.abort(new Error(`no data for ${stallMs / 1000} s`)), stallMs);
  };
  arm();
  const signal = options.signal ? AbortSignal.any([options.signal, stalled.signal]) : stalled.signal;
  try {
    const response = await fetch(url, {
      headers: have > 0 ? { Range: `bytes=${have}-` } : {},
      signal,
      redirect: 'follow',
    });
    if (response.status === 416 && have > 0) {
      // Asked past the end: the part file is already whole (or longer than the file): start over
      // only if it is longer, which the size check after the loop catches.
      await response.body?.cancel();
      return have;
    }
    if (response.status >= 500) {
      await response.body?.cancel();
      throw new Error(`the server answered ${response.status}`);
    }
    if (response.status !== 200 && response.status !== 206) {
      await response.body?.cancel();
      throw new LlmError(
        'model_load',
        `Download of ${redactUrl(url)} refused: HTTP ${response.status} ${response.statusText}.`,
      );
    }
    // 200 to a range request: the server sends the whole file, so the part starts over.
    const resume = response.status === 206 && have > 0;
    const length = Number(response.headers.get('content-length') ?? NaN);
    const range = /\/(\d+)\s*$/.exec(response.headers.get('content-range') ?? '');
    const total = range
      ? Number(range[1])
      : Number.isFinite(length)
        ? length + (resume ? have : 0)
        : undefined;
    let received = resume ? have : 0;
    const out = createWriteStream(part, { flags: resume ? 'a' : 'w' });
    const closed = new Promise<void>((resolve, reject) => {
      out.on('close', resolve);
      out.on('error', reject);
    });
    try {
      if (!response.body) throw new Error('the answer has no body');
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        arm();
        received += value.byteLength;
        if (!out.write(value)) await new Promise<void>((r) => out.once('drain', () => r()));
        onBytes(received, total);
      }
    } finally {
      out.end();
      await closed;
    }
    if (total !== undefined && received < total)
      throw new Error(`the connection ended after ${received} of ${total} bytes`);
    return received;
  } catch (err) {
    if (stalled.signal.aborted && !options.signal?.aborted) throw stalled.signal.reason as Error;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
