import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  randomBytes,
  scrypt,
  timingSafeEqual,
} from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, rm, stat, statfs } from 'node:fs/promises';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { LlmError } from './errors';

/**
 * A model file encrypted at rest. Layout:
 *
 *   "ELLMENC1" | u32 LE header length | header (JSON) | chunk 0 | chunk 1 | ... | chunk n-1
 *
 * Each chunk is `chunkBytes` of the GGUF file (the last one shorter, at least one chunk even for
 * an empty file) encrypted with AES-256-GCM and followed by its 16-byte tag. Chunk i's nonce is
 * the header's 8-byte prefix then i (u32 BE); its additional data is the sha256 of the header
 * bytes, i (u64 BE) and a final flag (1 on the last chunk): chunks cannot be reordered, dropped,
 * cut off at a chunk boundary or moved under another header. The key is derived from the
 * person's key text with scrypt and the header's salt.
 *
 * The header names the plaintext's size and sha256, so a model's identity and its manifest are
 * checked without decrypting; the sha256 is computed again while decrypting and must match. It
 * tells which model a file holds to someone who has that model already, nothing of its content.
 */
export const ENCRYPTED_MAGIC = 'ELLMENC1';
const TAG_BYTES = 16;
const DEFAULT_CHUNK = 1 << 20;
const SCRYPT = { N: 1 << 15, r: 8, p: 1 };
const KEY_CHECK = 'edge-llm model key check';
/** Linux statfs f_type of the filesystems that live in memory. */
const RAM_FS = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */]);

export interface EncryptedHeader {
  v: 1;
  cipher: 'aes-256-gcm';
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  chunkBytes: number;
  /** The plaintext (GGUF) file's size and sha256. */
  size: number;
  sha256: string;
  /** The first 8 bytes of every chunk's nonce (base64). */
  nonce: string;
  /** Tells a wrong key from a damaged file: an HMAC of a fixed text under the derived key (base64). */
  check: string;
}

export interface EncryptedFile {
  header: EncryptedHeader;
  /** Where chunk 0 starts. */
  dataOffset: number;
  /** The header's bytes as stored: what every chunk's additional data is bound to. */
  headerBytes: Buffer;
}

function chunkCount(header: EncryptedHeader): number {
  return Math.max(1, Math.ceil(header.size / header.chunkBytes));
}

function aad(headerHash: Buffer, index: number, final: boolean): Buffer {
  const out = Buffer.alloc(32 + 8 + 1);
  headerHash.copy(out, 0);
  out.writeBigUInt64BE(BigInt(index), 32);
  out[40] = final ? 1 : 0;
  return out;
}

function nonce(prefix: Buffer, index: number): Buffer {
  const out = Buffer.alloc(12);
  prefix.copy(out, 0, 0, 8);
  out.writeUInt32BE(index, 8);
  return out;
}

/** The 256-bit key of a file from the key text: scrypt (about 32 MiB, run on libuv's pool, never on the event loop). */
export function deriveModelKey(keyText: string, header: Pick<EncryptedHeader, 'kdf'>): Promise<Buffer> {
  if (!keyText) return Promise.reject(new LlmError('bad_request', 'The model key is empty.'));
  const { N, r, p, salt } = header.kdf;
  return new Promise((resolve, reject) =>
    scrypt(keyText, Buffer.from(salt, 'base64'), 32, { N, r, p, maxmem: 128 * N * r * 2 }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

function keyCheck(key: Buffer): string {
  return createHmac('sha256', key).update(KEY_CHECK).digest('base64');
}

/** The header of an encrypted model file; undefined for any other file (a plain GGUF). */
export async function readEncryptedHeader(file: string): Promise<EncryptedFile | undefined> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(12);
    const { bytesRead } = await handle.read(head, 0, 12, 0);
    if (bytesRead < 8 || head.subarray(0, 8).toString('latin1') !== ENCRYPTED_MAGIC) return undefined;
    const bad = (what: string): never => {
      throw new LlmError('model_load', `${file} is an encrypted model file with a damaged header: ${what}.`);
    };
    if (bytesRead < 12) bad('it ends inside the header');
    const length = head.readUInt32LE(8);
    if (length < 2 || length > 64 * 1024) bad(`a header length of ${length} bytes`);
    const headerBytes = Buffer.alloc(length);
    if ((await handle.read(headerBytes, 0, length, 12)).bytesRead < length) bad('it ends inside the header');
    let header: EncryptedHeader;
    try {
      header = JSON.parse(headerBytes.toString('utf8')) as EncryptedHeader;
    } catch {
      return bad('the header is not JSON');
    }
    if (header.v !== 1 || header.cipher !== 'aes-256-gcm') bad(`unknown format ${header.v}/${header.cipher}`);
    if (header.kdf?.name !== 'scrypt' || !header.kdf.salt) bad('unknown key derivation');
    if (!Number.isSafeInteger(header.size) || header.size < 0) bad('no plaintext size');
    if (!/^[0-9a-f]{64}$/.test(header.sha256)) bad('no plaintext sha256');
    if (!Number.isSafeInteger(header.chunkBytes) || header.chunkBytes < 4096 || header.chunkBytes > 1 << 26)
      bad('a bad chunk size');
    if (Buffer.from(header.nonce ?? '', 'base64').length !== 8) bad('a bad nonce');
    const expected = 12 + length + header.size + chunkCount(header) * TAG_BYTES;
    const actual = (await handle.stat()).size;
    if (actual !== expected)
      throw new LlmError(
        'model_load',
        `${file} is an encrypted model file of ${actual} bytes, but its header makes it ${expected}: it was cut off or extended; copy it again.`,
      );
    return { header, dataOffset: 12 + length, headerBytes };
  } finally {
    await handle.close();
  }
}

/**
 * Keys derived lately, by a hash of the key text and the file's salt: a load checks the key before
 * it waits for the model and decrypts after, and scrypt costs 100-300 ms each time on a 2-core
 * gateway. The key text itself is held by the runtime's settings for as long anyway.
 */
const derived = new Map<string, Promise<Buffer>>();
const DERIVED_KEPT = 16;

/** Derives the key and holds it against the file's key check: a clear error for a wrong key. */
export async function checkModelKey(
  file: string,
  encrypted: EncryptedFile,
  keyText: string,
): Promise<Buffer> {
  const { kdf } = encrypted.header;
  const id = createHash('sha256')
    .update(JSON.stringify([keyText, kdf.salt, kdf.N, kdf.r, kdf.p]))
    .digest('hex');
  let pending = derived.get(id);
  if (!pending) {
    pending = deriveModelKey(keyText, encrypted.header);
    if (derived.size >= DERIVED_KEPT) derived.delete(derived.keys().next().value!);
    derived.set(id, pending);
    pending.catch(() => derived.delete(id));
  }
  const key = await pending;
  const a = Buffer.from(keyCheck(key), 'base64');
  const b = Buffer.from(encrypted.header.check ?? '', 'base64');
  if (a.length !== b.length || !timingSafeEqual(a, b))
    throw new LlmError(
      'model_load',
      `${file} cannot be decrypted with this model key: it was encrypted with another one.`,
    );
  return key;
}

/** Pieces are read, sealed and written one at a time: memory stays at about two chunks. */
export async function encryptModelFile(
  input: string,
  output: string,
  keyText: string,
  options: { chunkBytes?: number; signal?: AbortSignal } = {},
): Promise<EncryptedHeader> {
  if (!keyText) throw new LlmError('bad_request', 'The model key is empty.');
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK;
  const info = await stat(input);
  // The plaintext's hash goes in the header (bound to every chunk): one read to hash, one to seal.
  const hash = createHash('sha256');
  const reader = await open(input, 'r');
  const tmp = path.join(path.dirname(output), `.${path.basename(output)}.${process.pid}.tmp`);
  try {
    const buf = Buffer.alloc(chunkBytes);
    for (let pos = 0; pos < info.size;) {
      options.signal?.throwIfAborted();
      const { bytesRead } = await reader.read(buf, 0, chunkBytes, pos);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    const kdf = { name: 'scrypt' as const, ...SCRYPT, salt: randomBytes(16).toString('base64') };
    const key = await deriveModelKey(keyText, { kdf });
    const prefix = randomBytes(8);
    const header: EncryptedHeader = {
      v: 1,
      cipher: 'aes-256-gcm',
      kdf,
      chunkBytes,
      size: info.size,
      sha256: hash.digest('hex'),
      nonce: prefix.toString('base64'),
      check: keyCheck(key),
    };
    const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
    const headerHash = createHash('sha256').update(headerBytes).digest();
    const writer = await open(tmp, 'w', 0o600);
    try {
      const head = Buffer.alloc(12);
      head.write(ENCRYPTED_MAGIC, 0, 'latin1');
      head.writeUInt32LE(headerBytes.length, 8);
      await writer.write(Buffer.concat([head, headerBytes]));
      const count = chunkCount(header);
      for (let i = 0; i < count; i++) {
        options.signal?.throwIfAborted();
        const want = Math.min(chunkBytes, info.size - i * chunkBytes);
        const { bytesRead } = await reader.read(buf, 0, want, i * chunkBytes);
        if (bytesRead !== want) throw new Error(`${input} changed while it was encrypted`);
        const cipher = createCipheriv('aes-256-gcm', key, nonce(prefix, i));
        cipher.setAAD(aad(headerHash, i, i === count - 1));
        const sealed = Buffer.concat([
          cipher.update(buf.subarray(0, want)),
          cipher.final(),
          cipher.getAuthTag(),
        ]);
        await writer.write(sealed);
      }
      await writer.sync();
    } finally {
      await writer.close();
    }
    await rename(tmp, output);
    return header;
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  } finally {
    await reader.close();
  }
}

/**
 * Where a decrypted model may be written: a filesystem in memory (tmpfs or ramfs), with room for
 * it. Anything else is refused: a decrypted model must never reach a disk.
 */
export async function checkRamDirectory(dir: string, bytes: number): Promise<void> {
  let fs: Awaited<ReturnType<typeof statfs>>;
  try {
    fs = await statfs(dir);
  } catch (err) {
    throw new LlmError(
      'model_load',
      `An encrypted model is decrypted only into memory, and ${dir} cannot be used for that (${(err as Error).message}). Mount a tmpfs there (or set EDGE_LLM_RAM_DIR to one).`,
    );
  }
  if (!RAM_FS.has(Number(fs.type)))
    throw new LlmError(
      'model_load',
      `An encrypted model is decrypted only into memory, and ${dir} is not a RAM-backed filesystem (tmpfs/ramfs): refused, nothing was written. Mount a tmpfs there (or set EDGE_LLM_RAM_DIR to one).`,
    );
  const free = Number(fs.bavail) * Number(fs.bsize);
  if (free < bytes)
    throw new LlmError(
      'model_load',
      `The decrypted model needs ${bytes} bytes in ${dir}, which has ${free} free: give the tmpfs more room.`,
    );
}

export interface DecryptedModel {
  /** A mode-0600 file in the RAM directory; the caller removes it as soon as the model is loaded. */
  path: string;
  size: number;
  sha256: string;
}

/** What the decrypting worker thread is given (see decrypt-worker.ts). */
export interface DecryptJob {
  file: string;
  target: string;
  key: Uint8Array;
  header: EncryptedHeader;
  dataOffset: number;
  headerBytes: Uint8Array;
}

/**
 * Decrypts a model into a file in memory. The header, the room in memory and the key are checked
 * here; the chunks are decrypted and hashed on a worker thread, one at a time, so a multi-GB model
 * never holds Node-RED's event loop and never sits whole in any heap. A wrong tag (a changed,
 * reordered or cut file) stops it and removes what was written.
 */
export async function decryptModelToRam(
  file: string,
  keyText: string,
  options: { ramDir: string; signal?: AbortSignal; onProgress?: (fraction: number) => void },
): Promise<DecryptedModel> {
  const encrypted = await readEncryptedHeader(file);
  if (!encrypted) throw new LlmError('model_load', `${file} is not an encrypted model file.`);
  await checkRamDirectory(options.ramDir, encrypted.header.size);
  const key = await checkModelKey(file, encrypted, keyText);
  options.signal?.throwIfAborted();
  const target = path.join(options.ramDir, `edge-llm-${randomBytes(8).toString('hex')}.gguf`);
  const job: DecryptJob = { file, target, key, ...encrypted };
  const worker = new Worker(path.join(__dirname, 'decrypt-worker.js'), { workerData: job });
  let ok = false;
  try {
    const sha256 = await new Promise<string>((resolve, reject) => {
      const abort = (): void => {
        reject(new LlmError('cancelled', 'The model load was cancelled.'));
        void worker.terminate();
      };
      options.signal?.addEventListener('abort', abort, { once: true });
      worker.on('message', (m: { progress?: number; sha256?: string; error?: { message: string } }) => {
        if (m.progress !== undefined) options.onProgress?.(m.progress);
        else if (m.sha256) resolve(m.sha256);
        else if (m.error) reject(new LlmError('model_load', m.error.message));
      });
      worker.on('error', (err) =>
        reject(new LlmError('model_load', `Decrypting ${file} failed: ${err.message}`)),
      );
      worker.on('exit', () => {
        options.signal?.removeEventListener('abort', abort);
        reject(new LlmError('model_load', `Decrypting ${file} stopped without an answer.`));
      });
    });
    ok = true;
    return { path: target, size: encrypted.header.size, sha256 };
  } finally {
    await worker.terminate();
    if (!ok) await rm(target, { force: true });
  }
}

/** The worker thread's part of decryptModelToRam: chunk by chunk, verified, hashed, written. */
export async function decryptChunks(
  job: DecryptJob,
  onProgress: (fraction: number) => void,
): Promise<string> {
  const { file, target, header, dataOffset } = job;
  const key = Buffer.from(job.key);
  const headerHash = createHash('sha256').update(job.headerBytes).digest();
  const prefix = Buffer.from(header.nonce, 'base64');
  const reader = await open(file, 'r');
  const writer = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  const hash = createHash('sha256');
  try {
    const count = chunkCount(header);
    const buf = Buffer.alloc(header.chunkBytes + TAG_BYTES);
    const out = Buffer.alloc(header.chunkBytes);
    for (let i = 0; i < count; i++) {
      const plain = Math.min(header.chunkBytes, header.size - i * header.chunkBytes);
      const at = dataOffset + i * (header.chunkBytes + TAG_BYTES);
      const { bytesRead } = await reader.read(buf, 0, plain + TAG_BYTES, at);
      if (bytesRead !== plain + TAG_BYTES)
        throw new LlmError('model_load', `${file} ends inside chunk ${i}: it was cut off; copy it again.`);
      const decipher = createDecipheriv('aes-256-gcm', key, nonce(prefix, i));
      decipher.setAAD(aad(headerHash, i, i === count - 1));
      decipher.setAuthTag(buf.subarray(plain, plain + TAG_BYTES));
      try {
        const n = decipher.update(buf.subarray(0, plain)).copy(out, 0);
        if (n !== plain || decipher.final().length !== 0) throw new Error('unexpected length');
      } catch {
        throw new LlmError(
          'model_load',
          `${file} fails its integrity check at chunk ${i + 1} of ${count}: it was changed or damaged after it was encrypted (the key is right).`,
        );
      }
      hash.update(out.subarray(0, plain));
      await writer.write(out, 0, plain, i * header.chunkBytes);
      onProgress((i + 1) / count);
    }
    const sha256 = hash.digest('hex');
    if (sha256 !== header.sha256)
      throw new LlmError(
        'model_load',
        `${file} decrypts to sha256 ${sha256}, its header says ${header.sha256}.`,
      );
    return sha256;
  } finally {
    await reader.close();
    await writer.close();
  }
}
