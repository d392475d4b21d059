import { EventEmitter } from 'node:events';
import type { LlamaModel } from 'node-llama-cpp' with { 'resolution-mode': 'import' };
import { redactUrl } from '../redact';
import { LlmError, isLlmError } from './errors';
import { getSharedLlama, type GpuChoice } from './llama';
import type { RuntimeMetrics } from './metrics';
import { IdentityCache, checkGgufFile, resolveModelSource, type ModelIdentity } from './model-source';
import {
  ModelRuntime,
  resolveContextSettings,
  type ContextSettings,
  type ModelInfo,
  type ResolvedContextSettings,
} from './runtime';

export type LeaseState = 'resolving' | 'downloading' | 'loading' | 'ready' | 'error' | 'closed';

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
}

export interface RuntimeInfo {
  id: string;
  source: string;
  model: { path: string; size: number; sha256: string; gpu: string | false; info?: ModelInfo };
  settings: ResolvedContextSettings;
  users: number;
  state: 'loading' | 'ready' | 'error';
  metrics?: RuntimeMetrics;
}

interface ModelEntry {
  identity: ModelIdentity;
  users: number;
  model: Promise<LlamaModel>;
  events: EventEmitter;
}

interface RuntimeEntry {
  id: string;
  source: string;
  modelKey: string;
  settings: ResolvedContextSettings;
  users: number;
  runtime: Promise<ModelRuntime>;
  resolved?: ModelRuntime;
  failed?: boolean;
}

/**
 * A user's claim on a runtime. Created at once; it reports resolving, download and load progress
 * as events and settles to ready or error. Releasing the last lease on a runtime frees its context,
 * and the last on a model file frees the model.
 */
export class RuntimeLease extends EventEmitter {
  status: LeaseStatus = { state: 'resolving', progress: 0 };
  runtime: ModelRuntime | undefined;
  /** This user's settings; the timeout is applied to its requests, the rest shape the shared context. */
  settings: ResolvedContextSettings = resolveContextSettings();
  /** Set when this lease counts as a user of a runtime entry. */
  entryId: string | undefined;
  released = false;
  /** Stops this lease's model download when it is released (a redeploy mid-download). */
  readonly cancel = new AbortController();
  readonly ready: Promise<ModelRuntime>;
  private settle!: { resolve: (r: ModelRuntime) => void; reject: (e: LlmError) => void };

  constructor(
    readonly spec: RuntimeSpec,
    private readonly onRelease: (lease: RuntimeLease) => Promise<void>,
  ) {
    super();
    this.ready = new Promise<ModelRuntime>((resolve, reject) => (this.settle = { resolve, reject }));
    // A lease nobody awaits must not produce an unhandled rejection: errors are also events.
    this.ready.catch(() => undefined);
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
    this.settle.resolve(runtime);
  }

  /** @internal */
  reject(error: LlmError): void {
    this.update({ state: 'error', progress: 0, error });
    this.settle.reject(error);
  }

  release(): Promise<void> {
    if (this.released) return Promise.resolve();
    this.cancel.abort();
    this.update({ state: 'closed', progress: 0 });
    this.released = true;
    this.removeAllListeners();
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
}

/**
 * Every loaded model in this Node-RED, keyed by file identity (path, size, sha256): any number of
 * config nodes naming the same file share one load. Contexts are shared by identical settings.
 */
export class RuntimeRegistry {
  private readonly identities: IdentityCache;
  private readonly models = new Map<string, ModelEntry>();
  private readonly runtimes = new Map<string, RuntimeEntry>();
  private readonly leases = new Set<RuntimeLease>();

  constructor(private readonly options: RegistryOptions) {
    this.identities = new IdentityCache(options.identityCacheFile);
  }

  acquire(spec: RuntimeSpec): RuntimeLease {
    const lease = new RuntimeLease(spec, (l) => this.release(l));
    this.leases.add(lease);
    this.attach(lease).catch((err: unknown) => {
      lease.reject(
        isLlmError(err)
          ? err
          : new LlmError('model_load', `Model load failed: ${(err as Error).message}`, { cause: err }),
      );
    });
    return lease;
  }

  private async attach(lease: RuntimeLease): Promise<void> {
    const file = await resolveModelSource(lease.spec.source, {
      modelsDir: this.options.modelsDir,
      signal: lease.cancel.signal,
      onDownloadProgress: (progress) => lease.update({ state: 'downloading', progress }),
    });
    const identity = await this.identities.identify(file);
    if (lease.released) return;
    await checkGgufFile(file, identity.size);
    if (lease.released) return;
    const settings = resolveContextSettings(lease.spec.settings);
    const modelKey = `${identity.sha256}:${identity.size}`;
    // Only what shapes the context keys it: users with other queue limits or timeouts share it.
    const id = `${identity.sha256.slice(0, 12)}-${settings.sequences}x${settings.contextSize}-t${settings.threads}`;
    lease.settings = settings;

    let entry = this.runtimes.get(id);
    if (!entry) {
      const model = this.modelEntry(modelKey, identity);
      model.users++;
      const created: RuntimeEntry = {
        id,
        source: lease.spec.source,
        modelKey,
        settings,
        users: 0,
        runtime: model.model.then((m) => ModelRuntime.create(m, settings, identity.sha256)),
      };
      created.runtime.then(
        (r) => (created.resolved = r),
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

  private modelEntry(key: string, identity: ModelIdentity): ModelEntry {
    let entry = this.models.get(key);
    if (!entry) {
      const events = new EventEmitter();
      const model = getSharedLlama(this.options.gpu ?? 'auto').then((llama) =>
        llama.loadModel({
          modelPath: identity.path,
          onLoadProgress: (progress) => events.emit('progress', progress),
        }),
      );
      model.catch(() => undefined);
      entry = { identity, users: 0, model, events };
      this.models.set(key, entry);
    }
    return entry;
  }

  private async release(lease: RuntimeLease): Promise<void> {
    this.leases.delete(lease);
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
    const loaded = await model.model.catch(() => undefined);
    await loaded?.dispose();
  }

  /** What the admin endpoint shows: every runtime, its model's identity, users, state and metrics. */
  list(): RuntimeInfo[] {
    return [...this.runtimes.values()].map((entry) => {
      const model = this.models.get(entry.modelKey);
      const identity = model?.identity ?? { path: '', size: 0, sha256: '' };
      const runtime = entry.resolved;
      return {
        id: entry.id,
        source: redactUrl(entry.source),
        model: { ...identity, gpu: runtime ? runtime.gpu : false, info: runtime?.modelInfo },
        settings: { ...entry.settings, queueLimit: runtime?.queueLimit ?? entry.settings.queueLimit },
        users: entry.users,
        state: runtime ? 'ready' : entry.failed ? 'error' : 'loading',
        metrics: runtime?.getMetrics(),
      };
    });
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
