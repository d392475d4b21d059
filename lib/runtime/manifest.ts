import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { redactUrl } from '../util/redact';
import { readEncryptedHeader } from './encrypted';
import { LlmError } from './errors';

/**
 * A model version in the models directory: `<dir>/<name>/<version>/` holds the GGUF file and this
 * manifest. The signature (Ed25519, base64) covers the canonical form of every other field.
 */
export interface ModelManifest {
  name: string;
  version: string;
  /** The GGUF file's name inside the version's folder. */
  file: string;
  sha256: string;
  size: number;
  /** Where the file came from (a URI, or `local`). */
  source: string;
  signature?: string;
}

export interface ModelRef {
  name: string;
  version: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

/** `inspector@1.3.0` → {name, version}; anything else (a path, a URI, a file name) → undefined. */
export function parseModelRef(source: string): ModelRef | undefined {
  const spec = source.trim();
  const at = spec.lastIndexOf('@');
  if (at <= 0) return undefined;
  const name = spec.slice(0, at);
  const version = spec.slice(at + 1);
  // `model@2.gguf` stays a file name, as it always was.
  if (version.toLowerCase().endsWith('.gguf')) return undefined;
  return NAME.test(name) && VERSION.test(version) ? { name, version } : undefined;
}

export function formatModelRef(ref: ModelRef): string {
  return `${ref.name}@${ref.version}`;
}

export function checkModelRef(ref: ModelRef): void {
  if (!NAME.test(ref.name))
    throw new LlmError(
      'bad_request',
      `A model name is letters, digits, ".", "_" and "-" (got "${ref.name}").`,
    );
  if (!VERSION.test(ref.version))
    throw new LlmError(
      'bad_request',
      `A model version is letters, digits, ".", "_", "+" and "-" (got "${ref.version}").`,
    );
}

export function versionDir(modelsDir: string, ref: ModelRef): string {
  checkModelRef(ref);
  return path.join(modelsDir, ref.name, ref.version);
}

/** The bytes a signature covers: every field but the signature, keys sorted, no spaces. */
export function canonicalManifest(manifest: ModelManifest): string {
  const fields: Record<string, string | number> = {
    file: manifest.file,
    name: manifest.name,
    sha256: manifest.sha256,
    size: manifest.size,
    source: manifest.source,
    version: manifest.version,
  };
  return JSON.stringify(fields, Object.keys(fields).sort());
}

/**
 * A public key as a person pastes it: PEM, or base64 / hex of the raw 32-byte Ed25519 key, or
 * base64 of its SPKI DER form (what `openssl pkey -pubout -outform DER | base64` prints).
 */
export function parsePublicKey(text: string): KeyObject {
  const raw = text.trim();
  let key: KeyObject;
  try {
    if (raw.startsWith('-----BEGIN')) key = createPublicKey(raw);
    else {
      const bytes = /^[0-9a-f]{64}$/i.test(raw) ? Buffer.from(raw, 'hex') : Buffer.from(raw, 'base64');
      key =
        bytes.length === 32
          ? createPublicKey({
              key: { kty: 'OKP', crv: 'Ed25519', x: bytes.toString('base64url') },
              format: 'jwk',
            })
          : createPublicKey({ key: bytes, format: 'der', type: 'spki' });
    }
  } catch (err) {
    throw new LlmError(
      'bad_request',
      `The model signing public key cannot be read (PEM, or base64/hex of the 32-byte Ed25519 key): ${(err as Error).message}`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new LlmError(
      'bad_request',
      `The model signing public key must be Ed25519 (got ${key.asymmetricKeyType}).`,
    );
  return key;
}

/** Signs a manifest (what a publisher does before shipping a version); returns it with the signature. */
export function signManifest(manifest: ModelManifest, privateKeyPem: string): ModelManifest {
  const unsigned = { ...manifest };
  delete unsigned.signature;
  const signature = sign(null, Buffer.from(canonicalManifest(unsigned)), createPrivateKey(privateKeyPem));
  return { ...unsigned, signature: signature.toString('base64') };
}

/** Throws a clear error unless the manifest carries a valid signature by `publicKey`. */
export function verifyManifestSignature(manifest: ModelManifest, publicKey: string, where: string): void {
  const key = parsePublicKey(publicKey);
  if (!manifest.signature)
    throw new LlmError(
      'model_load',
      `${where} is not signed, and a model signing key is configured: only signed models load.`,
    );
  const ok = verify(
    null,
    Buffer.from(canonicalManifest(manifest)),
    key,
    Buffer.from(manifest.signature, 'base64'),
  );
  if (!ok)
    throw new LlmError(
      'model_load',
      `${where} has a bad signature: it was not signed by the configured key, or it was changed after signing.`,
    );
}

export function checkManifest(value: unknown, where: string): ModelManifest {
  const m = value as Partial<ModelManifest> | null;
  const bad = (what: string): never => {
    throw new LlmError('model_load', `${where} is not a valid model manifest: ${what}.`);
  };
  if (!m || typeof m !== 'object' || Array.isArray(m)) return bad('not a JSON object');
  if (typeof m.name !== 'string' || !NAME.test(m.name)) bad('"name" is missing or not a valid name');
  if (typeof m.version !== 'string' || !VERSION.test(m.version))
    bad('"version" is missing or not a valid version');
  if (typeof m.file !== 'string' || !m.file || path.basename(m.file) !== m.file || m.file.startsWith('.'))
    bad('"file" must be a plain file name inside the version folder');
  if (typeof m.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(m.sha256))
    bad('"sha256" must be 64 lowercase hex digits');
  if (typeof m.size !== 'number' || !Number.isSafeInteger(m.size) || m.size < 0)
    bad('"size" must be a whole number of bytes');
  if (typeof m.source !== 'string') bad('"source" must be a string');
  if (m.signature !== undefined && typeof m.signature !== 'string') bad('"signature" must be base64 text');
  return m as ModelManifest;
}

export async function readManifest(modelsDir: string, ref: ModelRef): Promise<ModelManifest> {
  const dir = versionDir(modelsDir, ref);
  const file = path.join(dir, 'manifest.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new LlmError(
      'model_load',
      `Model ${formatModelRef(ref)} not found: there is no ${file}. Install it first (an update with a source URL downloads it).`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new LlmError('model_load', `${file} is not JSON: ${(err as Error).message}`);
  }
  const manifest = checkManifest(parsed, file);
  if (manifest.name !== ref.name || manifest.version !== ref.version)
    throw new LlmError(
      'model_load',
      `${file} describes ${manifest.name}@${manifest.version}, not ${formatModelRef(ref)}.`,
    );
  return manifest;
}

export async function writeManifest(modelsDir: string, manifest: ModelManifest): Promise<string> {
  const dir = versionDir(modelsDir, manifest);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, 'manifest.json');
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return file;
}

/**
 * The sha256 of a file, read in 1 MiB pieces: each piece is hashed in a few milliseconds, so a
 * multi-GB model never holds the event loop (about 9 s for 4 GB on a 2-core gateway in all).
 */
export function hashFile(file: string, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const stream = createReadStream(file, { highWaterMark: 1 << 20, signal });
    stream
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/**
 * What a manifest records of a file: its sha256 and size. For an encrypted model file (see
 * encrypted.ts) these are the plaintext GGUF's, as its header states them (bound to every chunk;
 * decrypting checks them): a version is the same model whether it is stored encrypted or not.
 */
export async function contentIdentity(
  file: string,
  signal?: AbortSignal,
): Promise<{ sha256: string; size: number; encrypted: boolean }> {
  const encrypted = await readEncryptedHeader(file);
  if (encrypted) return { sha256: encrypted.header.sha256, size: encrypted.header.size, encrypted: true };
  return { sha256: await hashFile(file, signal), size: (await stat(file)).size, encrypted: false };
}

export interface VerifiedModel {
  ref: ModelRef;
  manifest: ModelManifest;
  /** The GGUF file, checked against the manifest. */
  file: string;
  /** Stored encrypted: checked against the manifest by its header, its content when it is decrypted. */
  encrypted?: boolean;
}

/**
 * A `name@version` from the models directory: its manifest read, its signature checked when a key
 * is configured, and its file hashed afresh (never from a cache: a file changed under an unchanged
 * size and time must not pass) and compared with the manifest.
 */
export async function verifyModelRef(
  modelsDir: string,
  ref: ModelRef,
  publicKey: string | undefined,
  signal?: AbortSignal,
): Promise<VerifiedModel> {
  const manifest = await readManifest(modelsDir, ref);
  const dir = versionDir(modelsDir, ref);
  const where = `The manifest of ${formatModelRef(ref)} (${path.join(dir, 'manifest.json')})`;
  if (publicKey) verifyManifestSignature(manifest, publicKey, where);
  const file = path.join(dir, manifest.file);
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile())
    throw new LlmError('model_load', `Model ${formatModelRef(ref)}: its file ${file} is missing.`);
  const encrypted = await readEncryptedHeader(file);
  if (encrypted) {
    const { size, sha256 } = encrypted.header;
    if (size !== manifest.size || sha256 !== manifest.sha256)
      throw new LlmError(
        'model_load',
        `Model ${formatModelRef(ref)} refused: ${file} is encrypted from a file of ${size} bytes with sha256 ${sha256}, the manifest expects ${manifest.size} bytes with sha256 ${manifest.sha256}.`,
      );
    return { ref, manifest, file, encrypted: true };
  }
  if (info.size !== manifest.size)
    throw new LlmError(
      'model_load',
      `Model ${formatModelRef(ref)} refused: ${file} has ${info.size} bytes, the manifest says ${manifest.size}.`,
    );
  const actual = await hashFile(file, signal);
  if (actual !== manifest.sha256)
    throw new LlmError(
      'model_load',
      `Model ${formatModelRef(ref)} refused: ${file} has sha256 ${actual}, the manifest expects ${manifest.sha256}.`,
    );
  return { ref, manifest, file };
}

/**
 * Puts a local GGUF file into the models directory as `name@version` (copied, then hashed) and
 * writes its manifest: how a person installs a version by hand, and what the tests and bench use.
 */
export async function installModelFile(
  modelsDir: string,
  ref: ModelRef,
  from: string,
  options: { source?: string; privateKeyPem?: string } = {},
): Promise<ModelManifest> {
  const dir = versionDir(modelsDir, ref);
  await mkdir(dir, { recursive: true });
  const fileName = path.basename(from);
  const target = path.join(dir, fileName);
  const tmp = path.join(dir, `.${fileName}.${process.pid}.tmp`);
  await copyFile(from, tmp);
  await rename(tmp, target);
  const content = await contentIdentity(target);
  let manifest: ModelManifest = {
    name: ref.name,
    version: ref.version,
    file: fileName,
    sha256: content.sha256,
    size: content.size,
    source: options.source ?? 'local',
  };
  if (options.privateKeyPem) manifest = signManifest(manifest, options.privateKeyPem);
  await writeManifest(modelsDir, manifest);
  return manifest;
}

/**
 * What the registry checks before it loads a source: a `name@version` is verified against its
 * manifest (and signature); with a signing key configured nothing else loads. Undefined for a
 * plain path or URI without a key.
 */
export async function verifySpecSource(
  spec: { source: string; publicKey?: string },
  modelsDir: string,
  signal?: AbortSignal,
  onManifest?: (manifestFile: string) => void,
): Promise<VerifiedModel | undefined> {
  const ref = parseModelRef(spec.source);
  if (!ref) {
    if (spec.publicKey)
      throw new LlmError(
        'model_load',
        `A model signing key is configured, so only signed versions from the models directory load: give the model as name@version (got "${redactUrl(spec.source)}").`,
      );
    return undefined;
  }
  onManifest?.(path.join(versionDir(modelsDir, ref), 'manifest.json'));
  return verifyModelRef(modelsDir, ref, spec.publicKey, signal);
}
