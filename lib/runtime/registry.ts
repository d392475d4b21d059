import { EventEmitter } from 'node:events';
import { rm, stat } from 'node:fs/promises';
import * as path from 'node:path';
import type { LlamaModel } from 'node-llama-cpp' with { 'resolution-mode': 'import' };
import { redactUrl } from '../util/redact';
import { LlmError, isLlmError } from './errors';
import { getSharedLlama, type GpuChoice } from './llama';
import type { RuntimeMetrics } from './metrics';
import {
  IdentityCache,
  checkGgufFile,
  expectedModelPath,
  resolveModelSource,
  type ModelIdentity,
} from './model-source';
import { verifySpecSource } from './manifest';
import { checkModelKey, checkRamDirectory, decryptModelToRam, readEncryptedHeader } from './encrypted';
import {
  adaptersKey,
  describeAdapter,
  resolveAdapters,
  type AdapterSpec,
  type ResolvedAdapter,
} from './adapters';
import {
  ModelRuntime,
  resolveContextSettings,
  type LlmRuntime,
  type ContextSettings,
  type ModelInfo,
  type ResolvedContextSettings,
} from './runtime';

/** Model files at least this large are read into memory instead of mapped (see modelEntry). */
const READ_MIN_BYTES = 64 * 2 ** 20;

export type LeaseState =
  | 'resolving'
  | 'downloading'
  | 'loading'
  | 'ready'
  /** The model file changed under the loaded model: checked again and reloaded. */
  | 'reloading'
  /** The runtime child process ended; it is started again (after a backoff) and the model reloaded. */
  | 'restarting'
  | 'error'
  | 'closed';

export interface LeaseStatus {
  state: LeaseState;
  /** 0..1 while downloading or loading. */
  progress: number;
  error?: LlmError;
}

export interface RuntimeSpec {
  /** A path, an hf:/https URI, or a name in the models directory. */
  source: string;
  settings?: ContextSettings;
  /**
   * An Ed25519 public key: only `name@version` models whose manifest it signed load (see
   * manifest.ts); without one a manifest's sha256 is still checked.
   */
  publicKey?: string;
  /** LoRA adapters applied to this runtime's context; runtimes with other adapters get their own. */
  adapters?: AdapterSpec[];
  /** The key text of an encrypted model file (see encrypted.ts). */
  modelKey?: string;
}

export interface RuntimeInfo {
  id: string;
  source: string;
  model: { path: string; size: number; sha256: string; gpu: string | false; info?: ModelInfo };
  /** contextSize is what each sequence really has once loaded (the model may cap what was asked). */
  settings: ResolvedContextSettings;
  users: number;
  state: 'loading' | 'ready' | 'error';
  /** The LoRA adapters on this runtime's context (file identity and scale). */
  adapters?: Array<{ source: string; sha256: string; scale: number }>;
  metrics?: RuntimeMetrics;
  /** Where the runtime runs: the runtime child process, Node-RED's own, or a model server. */
  process?: 'child' | 'in-process' | 'server';
  probe?: ProbeResult;
}

export type ProbeResult =
  { ok: true; ms: number; tokens: number; text: string } | { ok: false; error: string };

/** What a node holds of its runtime: the same for one in this process and one in the child. */
export interface Lease extends EventEmitter {
  readonly spec: RuntimeSpec;
  status: LeaseStatus;
  runtime: LlmRuntime | undefined;
  settings: ResolvedContextSettings;
  readonly ready: Promise<LlmRuntime>;
  release(): Promise<void>;
}

/** Every model of a Node-RED process, in the process itself or in the runtime child. */
export interface Registry {
  acquire(spec: RuntimeSpec): Lease;
  list(): Promise<RuntimeInfo[]>;
  /** Asks every ready runtime for a few tokens; one probe at a time, outside the production queue. */
  probe(): Promise<RuntimeInfo[]>;
  close(): Promise<void>;
}

interface ModelEntry {
  identity: ModelIdentity;
  users: number;
  model: Promise<LlamaModel>;
  events: EventEmitter;
  /** Polls the file under the loaded model (size, mtime, inode). */
  watch?: NodeJS.Timeout;
}

interface RuntimeEntry {
  id: string;
  source: string;
  modelKey: string;
  settings: ResolvedContextSettings;
  adapters: ResolvedAdapter[];
  users: number;
  runtime: Promise<ModelRuntime>;
  resolved?: ModelRuntime;
  failed?: boolean;
}

/**
 * A user's claim on a runtime. Created at once; it reports resolving, download and load progress
 * as events and settles to ready or error. Releasing the last lease on a runtime frees its context,
 * and the last on a model file frees the model. A reload (the file changed) makes it not ready
 * again until the new model is loaded.
 */
export class RuntimeLease extends EventEmitter implements Lease {
  status: LeaseStatus = { state: 'resolving', progress: 0 };
  runtime: ModelRuntime | undefined;
  /** This user's settings; the timeout is applied to its requests, the rest shape the shared context. */
  settings: ResolvedContextSettings = resolveContextSettings();
  /** Set when this lease counts as a user of a runtime entry. */
  entryId: string | undefined;
  /** The model file this lease resolved to (watched for a fix after a failed load). */
  file: string | undefined;
  released = false;
  /** Stops this lease's model download when it is released (a redeploy mid-download). */
  readonly cancel = new AbortController();
  private current: Promise<ModelRuntime> | undefined;
  private settle!: { resolve: (r: ModelRuntime) => void; reject: (e: LlmError) => void };
  private settled = false;

  constructor(
    readonly spec: RuntimeSpec,
    private readonly onRelease: (lease: RuntimeLease) => Promise<void>,
  ) {
    super();
    this.reset();
  }

  get ready(): Promise<ModelRuntime> {
    return this.current!;
  }

  /** @internal A new load begins: ready is a new promise unless the old one is still pending. */
  reset(): void {
    this.runtime = undefined;
    if (this.current && !this.settled) return;
    this.settled = false;
    this.current = new Promise<ModelRuntime>((resolve, reject) => (this.settle = { resolve, reject }));
    // A lease nobody awaits must not produce an unhandled rejection: errors are also events.
    this.current.catch(() => undefined);
  }

  /** @internal */
  update(status: LeaseStatus): void {
    if (this.released) return;
    this.status = status;
    this.emit('status', status);
  }

  /** @internal */
  resolve(runtime: ModelRuntime): void {
    this.runtime = runtime;
    this.update({ state: 'ready', progress: 1 });
    this.settled = true;
    this.settle.resolve(runtime);
  }

  /** @internal */
  reject(error: LlmError): void {
    this.update({ state: 'error', progress: 0, error });
    this.settled = true;
    this.settle.reject(error);
  }

  release(): Promise<void> {
    if (this.released) return Promise.resolve();
    this.cancel.abort();
    this.update({ state: 'closed', progress: 0 });
    this.released = true;
    this.removeAllListeners();
    this.settled = true;
    this.settle.reject(new LlmError('closed', 'The runtime lease was released.'));
    return this.onRelease(this);
  }
}

export interface RegistryOptions {
  /** Where model names are looked up and URIs downloaded to. */
  modelsDir: string;
  gpu?: GpuChoice;
  /** Where model hashes are remembered across restarts (JSON); none: hashed once per process. */
  identityCacheFile?: string;
  /** How often the file under a loaded model is checked for a change (ms). */
  watchMs?: number;
  /** How long a URI may go without an answer before its fetch fails (ms); see resolveModelSource. */
  stallMs?: number;
  /** What a person should read in the log: a model file that changed, a reload. */
  onLog?: (level: 'warn' | 'info', message: string) => void;
  /**
   * Where encrypted models are decrypted to, briefly: a RAM-backed filesystem (tmpfs or ramfs), or
   * the load is refused. Default: EDGE_LLM_RAM_DIR, else /dev/shm.
   */
  ramDir?: string;
}

interface FileStamp {
  size: number;
  mtimeMs: number;
  ino: number;
}

async function stampOf(file: string): Promise<FileStamp | undefined> {
  const info = await stat(file).catch(() => undefined);
  return info ? { size: info.size, mtimeMs: info.mtimeMs, ino: info.ino } : undefined;
}

function sameStamp(a: FileStamp | undefined, b: FileStamp | undefined): boolean {
  return a?.size === b?.size && a?.mtimeMs === b?.mtimeMs && a?.ino === b?.ino;
}

function describeChange(a: FileStamp, b: FileStamp | undefined): string {
  if (!b) return 'it was removed';
  const parts: string[] = [];
  if (a.size !== b.size) parts.push(`size ${a.size} -> ${b.size} bytes`);
  if (a.ino !== b.ino) parts.push('replaced by another file');
  if (a.mtimeMs !== b.mtimeMs) parts.push('modified');
  return parts.join(', ');
}

/**
 * Every loaded model in this Node-RED, keyed by file identity (path, size, sha256): any number of
 * config nodes naming the same file share one load. Contexts are shared by identical settings.
 * The file under a loaded model is watched: a change is reported and the model reloaded once the
 * file holds still and its identity has been checked again.
 */
export class RuntimeRegistry implements Registry {
  private readonly identities: IdentityCache;
  private readonly models = new Map<string, ModelEntry>();
  private readonly runtimes = new Map<string, RuntimeEntry>();
  private readonly leases = new Set<RuntimeLease>();
  /** Files whose load failed, watched so that a fixed file is loaded without a redeploy. */
  private readonly retries = new Map<RuntimeLease, NodeJS.Timeout>();
  private probing: Promise<RuntimeInfo[]> | undefined;

  constructor(private readonly options: RegistryOptions) {
    this.identities = new IdentityCache(options.identityCacheFile);
  }

  /** Calibrated thread counts, beside the model hashes. */
  private get threadsCacheFile(): string | undefined {
    const file = this.options.identityCacheFile;
    return file ? path.join(path.dirname(file), 'threads.json') : undefined;
  }

  private get watchMs(): number {
    return this.options.watchMs ?? 2000;
  }

  acquire(spec: RuntimeSpec): RuntimeLease {
    const lease = new RuntimeLease(spec, (l) => this.release(l));
    this.leases.add(lease);
    this.start(lease);
    return lease;
  }

  private start(lease: RuntimeLease): void {
    this.attach(lease).catch((err: unknown) => {
      if (lease.released) return;
      lease.reject(
        isLlmError(err)
          ? err
          : new LlmError('model_load', `Model load failed: ${(err as Error).message}`, { cause: err }),
      );
      // A file put where it was expected (offline: copied in by hand) is picked up without a redeploy.
      lease.file ??= expectedModelPath(lease.spec.source, this.options.modelsDir);
      this.retryWhenFixed(lease);
    });
  }

  private async attach(lease: RuntimeLease): Promise<void> {
    const verified = await verifySpecSource(lease.spec, this.options.modelsDir, lease.cancel.signal, (f) => {
      lease.file = f; // a version installed (its manifest written) later is then loaded without a redeploy
    });
    const file =
      verified?.file ??
      (await resolveModelSource(lease.spec.source, {
        modelsDir: this.options.modelsDir,
        signal: lease.cancel.signal,
        stallMs: this.options.stallMs,
        onDownloadProgress: (progress) => lease.update({ state: 'downloading', progress }),
      }));
    if (!verified) lease.file = file;
    const stamp = await stampOf(file);
    const encrypted = await readEncryptedHeader(file);
    // A verified version was hashed just now, against its manifest.
    const identity = verified
      ? { path: file, size: verified.manifest.size, sha256: verified.manifest.sha256 }
      : await this.identify(file);
    if (lease.released) return;
    if (encrypted) {
      // The key and the room in memory are checked before anything else waits on this load.
      if (!lease.spec.modelKey)
        throw new LlmError(
          'model_load',
          `${file} is an encrypted model file and no model key is set: give it in the llm-runtime's credentials or its environment variable.`,
        );
      await checkModelKey(file, encrypted, lease.spec.modelKey);
      await checkRamDirectory(this.ramDir, identity.size);
    } else await checkGgufFile(file, identity.size);
    if (lease.released) return;
    const settings = resolveContextSettings(lease.spec.settings);
    // No thread count set: the runtime times the candidates at load and keeps the fastest.
    const autoThreads = lease.spec.settings?.threads === undefined;
    const adapters = await resolveAdapters(lease.spec.adapters ?? [], {
      modelsDir: this.options.modelsDir,
      publicKey: lease.spec.publicKey,
      identities: this.identities,
      signal: lease.cancel.signal,
    });
    if (lease.released) return;
    const modelKey = `${identity.sha256}:${identity.size}`;
    // Only what shapes the context keys it: users with other queue limits or timeouts share it,
    // users with other adapters (or scales) do not.
    const lora = adaptersKey(adapters);
    const id = `${identity.sha256.slice(0, 12)}-${settings.sequences}x${settings.contextSize}-t${autoThreads ? 'auto' : settings.threads}${lora ? `-lora${lora}` : ''}`;
    lease.settings = settings;

    let entry = this.runtimes.get(id);
    if (!entry) {
      const model = this.modelEntry(modelKey, identity, stamp, encrypted ? lease.spec.modelKey : undefined);
      model.users++;
      const created: RuntimeEntry = {
        id,
        source: lease.spec.source,
        modelKey,
        settings,
        adapters,
        users: 0,
        runtime: model.model.then((m) =>
          ModelRuntime.create(
            m,
            { ...settings, threads: autoThreads ? undefined : settings.threads },
            identity.sha256,
            this.threadsCacheFile,
            adapters,
          ),
        ),
      };
      created.runtime.then(
        (r) => {
          created.resolved = r;
          created.settings = { ...created.settings, threads: r.settings.threads };
        },
        () => {
          created.failed = true;
          // Forget a failed load so that fixing the file and redeploying tries again.
          if (this.runtimes.get(id) === created) this.runtimes.delete(id);
          this.dropModelUser(modelKey);
        },
      );
      this.runtimes.set(id, created);
      entry = created;
    }
    entry.users++;
    lease.entryId = id;
    entry.runtime.then((r) => r.raiseQueueLimit(settings.queueLimit)).catch(() => undefined);

    const events = this.models.get(modelKey)?.events;
    const onProgress = (progress: number): void => lease.update({ state: 'loading', progress });
    events?.on('progress', onProgress);
    lease.update({ state: 'loading', progress: 0 });
    try {
      const runtime = await entry.runtime;
      lease.settings = { ...lease.settings, threads: runtime.settings.threads };
      if (!lease.released) lease.resolve(runtime);
    } catch (err) {
      throw isLlmError(err)
        ? err
        : new LlmError('model_load', `Could not load model ${lease.spec.source}: ${(err as Error).message}`, {
            cause: err,
          });
    } finally {
      events?.off('progress', onProgress);
    }
  }

  private get ramDir(): string {
    return this.options.ramDir || process.env.EDGE_LLM_RAM_DIR || '/dev/shm';
  }

  /** A file's identity: an encrypted one's from its header (its plaintext's), any other hashed once per change. */
  private async identify(file: string): Promise<ModelIdentity> {
    const encrypted = await readEncryptedHeader(file);
    if (encrypted) return { path: file, size: encrypted.header.size, sha256: encrypted.header.sha256 };
    return this.identities.identify(file);
  }

  private modelEntry(
    key: string,
    identity: ModelIdentity,
    stamp: FileStamp | undefined,
    /** Set for an encrypted file: decrypted into memory, loaded, and its plaintext removed at once. */
    modelKey?: string,
  ): ModelEntry {
    let entry = this.models.get(key);
    if (!entry) {
      const events = new EventEmitter();
      const load = async (): Promise<LlamaModel> => {
        const llama = await getSharedLlama(this.options.gpu ?? 'auto');
        const plain = modelKey
          ? await decryptModelToRam(identity.path, modelKey, {
              ramDir: this.ramDir,
              onProgress: (p) => events.emit('progress', p / 2),
            })
          : undefined;
        try {
          if (plain) await checkGgufFile(plain.path, plain.size);
          return await llama.loadModel({
            modelPath: plain?.path ?? identity.path,
            // A large model is read into memory rather than mapped: the CPU backend repacks most
            // weights into its own buffer, and mapped file pages beside that copy cost the weights'
            // size again in RSS. A small one stays mapped: its buffers would fall under malloc's
            // mmap threshold and be kept by the allocator after an unload.
            useMmap: identity.size < READ_MIN_BYTES,
            onLoadProgress: (progress) => events.emit('progress', plain ? 0.5 + progress / 2 : progress),
          });
        } finally {
          // Loaded (or failed): the plaintext leaves the filesystem at once; a mapped model keeps
          // its pages in memory until it is unloaded, and nothing else can open them.
          if (plain) await rm(plain.path, { force: true });
        }
      };
      const model = load();
      model.catch(() => undefined);
      const created: ModelEntry = { identity, users: 0, model, events };
      if (stamp) this.watch(key, created, stamp);
      entry = created;
      this.models.set(key, entry);
    }
    return entry;
  }

  /**
   * Polls the file under a loaded model. A change (an in-place copy, a rename over it, a
   * truncation) is reported at once; the model is reloaded when the file has held still for one
   * poll and its hash says it really is another file.
   */
  private watch(key: string, entry: ModelEntry, loaded: FileStamp): void {
    let last = loaded;
    let reported = false;
    let busy = false;
    entry.watch = setInterval(() => {
      if (busy) return;
      busy = true;
      void (async () => {
        const now = await stampOf(entry.identity.path);
        if (this.models.get(key) !== entry) return;
        if (sameStamp(now, loaded)) return;
        if (!reported) {
          reported = true;
          this.options.onLog?.(
            'warn',
            `The model file ${entry.identity.path} changed while loaded (${describeChange(loaded, now)}); it is reloaded once it holds still.`,
          );
        }
        if (!now || !sameStamp(now, last)) {
          last = now ?? last;
          return; // still being written (or gone): wait for it to hold still
        }
        const identity = await this.identify(entry.identity.path).catch(() => undefined);
        if (this.models.get(key) !== entry) return;
        if (identity && identity.sha256 === entry.identity.sha256 && identity.size === entry.identity.size) {
          this.options.onLog?.('info', `The model file ${entry.identity.path} has the same content: kept.`);
          loaded = now;
          reported = false;
          return;
        }
        clearInterval(entry.watch);
        await this.reload(key);
      })().finally(() => (busy = false));
    }, this.watchMs);
    entry.watch.unref();
  }

  /** Every lease on the model gives it back and loads its file again (hashed and checked anew). */
  private async reload(key: string): Promise<void> {
    const affected = [...this.leases].filter(
      (l) => l.entryId !== undefined && this.runtimes.get(l.entryId)?.modelKey === key,
    );
    for (const lease of affected) {
      lease.reset();
      lease.update({
        state: 'reloading',
        progress: 0,
        error: new LlmError('model_load', 'The model file changed: reloading it.'),
      });
    }
    await Promise.all(affected.map((l) => this.detach(l)));
    for (const lease of affected) if (!lease.released) this.start(lease);
    this.options.onLog?.(
      'info',
      `Reloading the model for ${affected.length} user(s) after its file changed.`,
    );
  }

  /** After a failed load of a file that exists: loads again once the file changes and holds still. */
  private retryWhenFixed(lease: RuntimeLease): void {
    const file = lease.file;
    if (!file || lease.released || this.retries.has(lease)) return;
    let seen: FileStamp | undefined;
    let changed = false;
    void stampOf(file).then((first) => {
      seen = first;
      const timer = setInterval(() => {
        void stampOf(file).then((now) => {
          if (lease.released) return this.stopRetry(lease);
          if (!now) return;
          if (!sameStamp(now, seen)) {
            seen = now;
            changed = true;
            return;
          }
          if (!changed) return;
          this.stopRetry(lease);
          this.options.onLog?.(
            'info',
            `The model file ${file} changed after a failed load: loading it again.`,
          );
          lease.reset();
          lease.update({ state: 'loading', progress: 0 });
          this.start(lease);
        });
      }, this.watchMs);
      timer.unref();
      this.retries.set(lease, timer);
    });
  }

  private stopRetry(lease: RuntimeLease): void {
    clearInterval(this.retries.get(lease));
    this.retries.delete(lease);
  }

  private async release(lease: RuntimeLease): Promise<void> {
    this.leases.delete(lease);
    this.stopRetry(lease);
    await this.detach(lease);
  }

  private async detach(lease: RuntimeLease): Promise<void> {
    const id = lease.entryId;
    if (!id) return;
    lease.entryId = undefined;
    const entry = this.runtimes.get(id);
    if (!entry || entry.failed) return;
    entry.users--;
    if (entry.users > 0) return;
    this.runtimes.delete(id);
    const runtime = await entry.runtime.catch(() => undefined);
    // A runtime that failed to start has already given its model back (see attach).
    if (!runtime) return;
    await runtime.dispose();
    await this.dropModelUser(entry.modelKey);
  }

  private async dropModelUser(key: string): Promise<void> {
    const model = this.models.get(key);
    if (!model) return;
    model.users--;
    if (model.users > 0) return;
    this.models.delete(key);
    clearInterval(model.watch);
    const loaded = await model.model.catch(() => undefined);
    await loaded?.dispose();
  }

  /** What the admin endpoint shows: every runtime, its model's identity, users, state and metrics. */
  async list(): Promise<RuntimeInfo[]> {
    return this.listNow();
  }

  listNow(): RuntimeInfo[] {
    return [...this.runtimes.values()].map((entry) => {
      const model = this.models.get(entry.modelKey);
      const identity = model?.identity ?? { path: '', size: 0, sha256: '' };
      const runtime = entry.resolved;
      return {
        id: entry.id,
        source: redactUrl(entry.source),
        model: {
          path: identity.path,
          size: identity.size,
          sha256: identity.sha256,
          gpu: runtime ? runtime.gpu : false,
          info: runtime?.modelInfo,
        },
        settings: {
          ...entry.settings,
          contextSize: runtime?.contextSize ?? entry.settings.contextSize,
          queueLimit: runtime?.queueLimit ?? entry.settings.queueLimit,
        },
        users: entry.users,
        state: runtime ? 'ready' : entry.failed ? 'error' : 'loading',
        ...(entry.adapters.length ? { adapters: entry.adapters.map(describeAdapter) } : {}),
        metrics: runtime?.getMetrics(),
      };
    });
  }

  /**
   * Asks every ready runtime for a few tokens. One probe runs at a time (callers meanwhile share
   * its answer), and each waits behind production requests without taking a place in their queue.
   */
  probe(): Promise<RuntimeInfo[]> {
    this.probing ??= this.probeAll().finally(() => (this.probing = undefined));
    return this.probing;
  }

  private async probeAll(): Promise<RuntimeInfo[]> {
    const out: RuntimeInfo[] = [];
    for (const info of this.listNow()) {
      const runtime = this.get(info.id);
      if (!runtime) {
        out.push({ ...info, probe: { ok: false, error: info.state } });
        continue;
      }
      const started = Date.now();
      try {
        const r = await runtime.complete('Hello', { maxTokens: 4, probe: true, timeoutMs: 30_000 });
        out.push({
          ...info,
          probe: { ok: true, ms: Date.now() - started, tokens: r.tokensOut, text: r.text },
        });
      } catch (err) {
        out.push({ ...info, probe: { ok: false, error: (err as Error).message } });
      }
    }
    return out;
  }

  get(id: string): ModelRuntime | undefined {
    return this.runtimes.get(id)?.resolved;
  }

  /** Number of distinct model files loaded (or loading). */
  get loadedModels(): number {
    return this.models.size;
  }

  async close(): Promise<void> {
    await Promise.all([...this.leases].map((l) => l.release()));
  }
}
