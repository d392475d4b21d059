import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { isPlainObject } from '../util/plain';
import { redactUrl } from '../util/redact';
import type { AdapterSpec } from './adapters';
import { downloadModel, type DownloadProgress } from './download';
import { LlmError, isLlmError } from './errors';
import {
  checkManifest,
  formatModelRef,
  parseModelRef,
  readManifest,
  verifyManifestSignature,
  versionDir,
  type ModelManifest,
  type ModelRef,
} from './manifest';
import { EMPTY_METRICS, type RuntimeMetrics } from './metrics';
import type { Lease, LeaseStatus, Registry, RuntimeSpec } from './registry';
import type {
  ChatMessage,
  ContextSettings,
  GenerateOptions,
  GenerationResult,
  JsonResult,
  LlmRuntime,
  ResolvedContextSettings,
} from './runtime';

/** What a new version must do before it serves anyone: answer a prompt and give schema-valid JSON. */
export interface HealthCheckOptions {
  /** The whole check (both answers) must finish within this (ms). */
  deadlineMs?: number;
  prompt?: string;
  jsonPrompt?: string;
  /** Bounded (every string a maxLength), so that a small model always closes the object. */
  schema?: unknown;
  maxTokens?: number;
}

export const HEALTH_CHECK_SCHEMA = {
  type: 'object',
  properties: { ok: { type: 'boolean' }, word: { type: 'string', maxLength: 8 } },
  required: ['ok', 'word'],
  additionalProperties: false,
} as const;

export interface HealthCheckReport {
  ok: boolean;
  ms: number;
  answer?: { text: string; tokens: number; ms: number };
  json?: { value: unknown; ms: number };
  error?: string;
}

/**
 * The fixed check a new version passes before it is switched to: it answers a prompt (at least
 * one token) and produces a JSON object that the grammar and the schema accept, all within the
 * deadline. Runs as a probe: behind production requests and outside their queue limit.
 */
export async function healthCheck(
  runtime: LlmRuntime,
  options: HealthCheckOptions = {},
): Promise<HealthCheckReport> {
  const started = Date.now();
  const deadline = started + (options.deadlineMs ?? 30_000);
  const left = (): number => {
    const ms = deadline - Date.now();
    if (ms <= 0)
      throw new LlmError(
        'timeout',
        `The health check ran past its ${options.deadlineMs ?? 30_000} ms deadline.`,
      );
    return ms;
  };
  const report: HealthCheckReport = { ok: false, ms: 0 };
  try {
    let t = Date.now();
    const answer = await runtime.complete(options.prompt ?? 'Once upon a time', {
      maxTokens: options.maxTokens ?? 8,
      probe: true,
      timeoutMs: left(),
      temperature: 0,
    });
    report.answer = { text: answer.text, tokens: answer.tokensOut, ms: Date.now() - t };
    if (answer.tokensOut < 1)
      throw new LlmError('invalid', 'The health check prompt got no answer (0 tokens).');
    t = Date.now();
    const json = await runtime.generateJson(
      options.jsonPrompt ?? 'Report your health as a JSON object: ',
      options.schema ?? HEALTH_CHECK_SCHEMA,
      { maxTokens: Math.max(48, (options.maxTokens ?? 8) * 6), probe: true, timeoutMs: left() },
    );
    report.json = { value: json.value, ms: Date.now() - t };
    if (!isPlainObject(json.value)) throw new LlmError('invalid', 'The health check JSON is not an object.');
    left();
    report.ok = true;
  } catch (err) {
    report.error = `${isLlmError(err) ? `${err.code}: ` : ''}${(err as Error).message}`;
  }
  report.ms = Date.now() - started;
  return report;
}

/** What to update to: a version already in the models directory, or one to download first. */
export type UpdateRequest =
  | { model: string }
  | {
      /** Downloaded into `<modelsDir>/<name>/<version>/` (resumed if interrupted), then loaded. */
      name: string;
      version: string;
      /** An https:// or http:// URL, or hf:user/repo/file.gguf. */
      source: string;
      sha256?: string;
      size?: number;
      signature?: string;
      file?: string;
    }
  /** A manifest as its publisher built and signed it; its source is downloaded. */
  | { manifest: ModelManifest };

export type UpdatePhase = 'downloading' | 'loading' | 'checking' | 'done' | 'failed';

export interface UpdateResult {
  ok: boolean;
  action: 'update' | 'rollback';
  from: string | undefined;
  to: string;
  /** Why the old version was kept. */
  reason?: string;
  /** The version asked for was already the active one. */
  unchanged?: boolean;
  sha256?: string;
  download?: { bytes: number; resumes: number; resumedFrom: number };
  check?: HealthCheckReport;
  /** From the request to the switch: download, load and check included (ms). */
  ms: number;
  /** Requests the old version still held at the switch: they finished there. */
  drained?: number;
  /** Old versions whose files were removed from the models directory after the switch (keep-N). */
  removed?: string[];
}

export interface UpdateProgress {
  action: 'update' | 'rollback';
  to: string;
  phase: UpdatePhase;
  /** 0..1 while downloading or loading. */
  progress?: number;
  reason?: string;
  at: number;
}

export interface LifecycleInfo {
  /** The version serving requests (name@version, or the configured path / URI). */
  model: string;
  sha256: string;
  previous?: string;
  update?: UpdateProgress;
}

export interface ProbeAnswer {
  ok: boolean;
  ms: number;
  text?: string;
  tokens?: number;
  error?: string;
  /** When it was asked (ms since the epoch): a probe is cached for probeMaxAgeMs. */
  at: number;
}

export interface HealthReport extends LifecycleInfo {
  loaded: boolean;
  state: LeaseStatus['state'];
  error?: string;
  manifest?: { name: string; version: string };
  probe?: ProbeAnswer;
}

export interface ModelLifecycleOptions {
  registry: Registry;
  /** The model the flow configures: a path, a URI, or name@version. */
  source: string;
  settings?: ContextSettings;
  publicKey?: string;
  /** LoRA adapters applied to every version's context. */
  adapters?: AdapterSpec[];
  /** The key text of encrypted model files (any version may be stored encrypted). */
  modelKey?: string;
  modelsDir: string;
  /** Remembers the active and previous versions across restarts (JSON); none: not remembered. */
  stateFile?: string;
  check?: HealthCheckOptions;
  /** How long a new version may take to load (ms). */
  loadTimeoutMs?: number;
  /** How long a replaced version may take to finish what it was given before it is unloaded (ms). */
  drainMs?: number;
  /** A health probe's answer is reused this long (ms): the endpoint may be polled often. */
  probeMaxAgeMs?: number;
  /**
   * After a successful update, versions of the model beyond this many (the newest installed kept)
   * are removed from the models directory; the active version and the rollback target always stay.
   * Default 3; 0: none removed.
   */
  keepVersions?: number;
  /**
   * Files (paths) and name@version models in use anywhere in this Node-RED, which a clean-up must
   * not remove; default: what this lifecycle's registry has loaded.
   */
  inUse?: () => Promise<string[]>;
  onLog?: (level: 'warn' | 'info', message: string) => void;
}

interface LifecycleState {
  configured: string;
  active: string;
  previous?: string;
}

/** One loaded version: its lease on the registry and the runtime view nodes hold. */
class Generation {
  readonly view: VersionView;
  sha256 = '';
  /** Replaced: new requests no longer come here, but what holds its view still runs on it. */
  retired = false;
  /** Unloaded: what still holds its view goes to the active version. */
  released = false;
  private watched: LlmRuntime | undefined;
  private readonly onChange = (): void => {
    this.view.emit('change');
  };
  private readonly onStatus = (s: LeaseStatus): void => {
    if (s.state === 'ready') this.follow();
  };

  constructor(
    readonly source: string,
    readonly lease: Lease,
    owner: ModelLifecycle,
  ) {
    this.view = new VersionView(this, owner);
    lease.on('status', this.onStatus);
    this.follow();
  }

  /** The runtime under a lease may be replaced (a reload after its file changed): follow it. */
  private follow(): void {
    const runtime = this.lease.runtime;
    if (!runtime || runtime === this.watched) return;
    this.watched?.off('change', this.onChange);
    runtime.on('change', this.onChange);
    this.watched = runtime;
    this.sha256 = runtime.modelSha256;
  }

  async release(): Promise<void> {
    this.released = true;
    this.lease.off('status', this.onStatus);
    this.watched?.off('change', this.onChange);
    await this.lease.release();
  }
}

/**
 * The runtime a node holds: bound to one version for the whole of a message (its session's KV
 * snapshot is tied to that model file). A view whose version was unloaded after an update sends
 * what still comes to it to the active version, without the snapshot.
 */
class VersionView extends EventEmitter implements LlmRuntime {
  inFlight = 0;

  constructor(
    private readonly generation: Generation,
    private readonly owner: ModelLifecycle,
  ) {
    super();
  }

  get modelSha256(): string {
    return this.generation.sha256;
  }

  get settings(): ResolvedContextSettings {
    return this.generation.lease.runtime?.settings ?? this.generation.lease.settings;
  }

  getMetrics(): RuntimeMetrics {
    const runtime = this.generation.released ? this.owner.runtime : this.generation.lease.runtime;
    return runtime && runtime !== this ? runtime.getMetrics() : EMPTY_METRICS;
  }

  complete(prompt: string, options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.run(options, (r, o) => r.complete(prompt, o));
  }

  chat(messages: ChatMessage[], options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.run(options, (r, o) => r.chat(messages, o));
  }

  generateJson<T = unknown>(
    input: string | ChatMessage[],
    schema: unknown,
    options: GenerateOptions = {},
  ): Promise<JsonResult<T>> {
    return this.run(options, (r, o) => r.generateJson<T>(input, schema, o));
  }

  tokenCounts(texts: string[]): Promise<number[]> {
    return this.run({}, (r) => r.tokenCounts(texts));
  }

  private async run<T>(
    options: GenerateOptions,
    call: (r: LlmRuntime, o: GenerateOptions) => Promise<T>,
  ): Promise<T> {
    this.inFlight++;
    try {
      if (!this.generation.released) {
        try {
          const runtime = this.generation.lease.runtime ?? (await this.generation.lease.ready);
          return await call(runtime, options);
        } catch (err) {
          // Unloaded under it after the drain time: asked again of the active version below.
          if (!(isLlmError(err, 'closed') && this.generation.released && !this.owner.released)) throw err;
          this.owner.counts.retried++;
        }
      }
      this.owner.counts.redirected++;
      const current = await this.owner.activeRuntime();
      if (!options.snapshot) return await call(current, options);
      // The snapshot was made by the replaced model: loading it into another can crash llama.cpp.
      const rest = { ...options };
      delete rest.snapshot;
      const result = await call(current, rest);
      return options.snapshot.save && isPlainObject(result)
        ? ({ ...result, snapshotSaved: false } as T)
        : result;
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) this.emit('idle');
    }
  }
}

/**
 * The model behind one llm-runtime: its active version, the one before it, and updates between
 * them. An update loads the new version beside the old one, runs the health check on it, and only
 * then switches: requests already given to the old version finish there, new ones go to the new
 * one, and the old one is unloaded once it is idle. A failed download, verification, load or check
 * keeps the old version and says why. It is a Lease, so every node uses it unchanged.
 */
export class ModelLifecycle extends EventEmitter implements Lease {
  status: LeaseStatus = { state: 'resolving', progress: 0 };
  released = false;
  /**
   * Requests that came to a version after it was unloaded (passed on to the active one), and those
   * of them that had been closed under them by a drain that ran out of time (asked again).
   */
  readonly counts = { redirected: 0, retried: 0 };
  private active: Generation;
  private previous: string | undefined;
  private readonly others = new Set<Generation>();
  private updating: Promise<UpdateResult> | undefined;
  private progress: UpdateProgress | undefined;
  private probeAnswer: ProbeAnswer | undefined;
  private probing: Promise<ProbeAnswer> | undefined;
  private readonly onStatus = (s: LeaseStatus): void => {
    this.status = s;
    this.emit('status', s);
  };

  constructor(private readonly options: ModelLifecycleOptions) {
    super();
    const saved = readState(options.stateFile);
    let source = options.source;
    // An update made over the air survives a restart, unless the flow now names another model.
    if (saved && saved.configured === options.source) {
      source = saved.active;
      this.previous = saved.previous;
    }
    this.active = this.load(source);
    this.active.lease.on('status', this.onStatus);
    this.status = this.active.lease.status;
  }

  get spec(): RuntimeSpec {
    return this.active.lease.spec;
  }

  get runtime(): LlmRuntime | undefined {
    return this.active.lease.runtime ? this.active.view : undefined;
  }

  get settings(): ResolvedContextSettings {
    return this.active.lease.settings;
  }

  get ready(): Promise<LlmRuntime> {
    const generation = this.active;
    const ready = generation.lease.ready.then(() => generation.view as LlmRuntime);
    ready.catch(() => undefined);
    return ready;
  }

  /** @internal The active version's runtime, for views of an unloaded one. */
  async activeRuntime(): Promise<LlmRuntime> {
    const generation = this.active;
    return generation.lease.runtime ?? (await generation.lease.ready);
  }

  info(): LifecycleInfo {
    return {
      model: this.active.source,
      sha256: this.active.sha256,
      ...(this.previous ? { previous: this.previous } : {}),
      ...(this.progress ? { update: this.progress } : {}),
    };
  }

  private load(source: string): Generation {
    const lease = this.options.registry.acquire({
      source,
      settings: this.options.settings,
      ...(this.options.publicKey ? { publicKey: this.options.publicKey } : {}),
      ...(this.options.adapters?.length ? { adapters: this.options.adapters } : {}),
      ...(this.options.modelKey ? { modelKey: this.options.modelKey } : {}),
    });
    return new Generation(source, lease, this);
  }

  private report(progress: Omit<UpdateProgress, 'at'>): void {
    this.progress = { ...progress, at: Date.now() };
    this.emit('lifecycle', this.info());
  }

  /** Updates to another version; resolves (never rejects for a failed check) with what happened. */
  update(request: UpdateRequest): Promise<UpdateResult> {
    return this.begin('update', request);
  }

  /** Back to the version before the active one (after a check that it still works). */
  rollback(): Promise<UpdateResult> {
    if (!this.previous) {
      return Promise.resolve({
        ok: false,
        action: 'rollback',
        from: this.active.source,
        to: '',
        reason: 'There is no previous version to roll back to.',
        ms: 0,
      });
    }
    return this.begin('rollback', { model: this.previous });
  }

  private begin(action: 'update' | 'rollback', request: UpdateRequest): Promise<UpdateResult> {
    if (this.released) return Promise.reject(new LlmError('closed', 'The model runtime was closed.'));
    if (this.updating) {
      return Promise.resolve({
        ok: false,
        action,
        from: this.active.source,
        to: targetName(request),
        reason: `Another update (to ${this.progress?.to ?? '?'}) is running; try again when it has finished.`,
        ms: 0,
      });
    }
    const updating = this.run(action, request).finally(() => {
      if (this.updating === updating) this.updating = undefined;
    });
    this.updating = updating;
    return updating;
  }

  private async run(action: 'update' | 'rollback', request: UpdateRequest): Promise<UpdateResult> {
    const started = Date.now();
    const from = this.active.source;
    const result: UpdateResult = { ok: false, action, from, to: targetName(request), ms: 0 };
    const fail = (reason: string): UpdateResult => {
      result.reason = reason;
      result.ms = Date.now() - started;
      this.report({ action, to: result.to, phase: 'failed', reason });
      this.options.onLog?.('warn', `Model ${action} to ${result.to} failed, ${from} kept: ${reason}`);
      return result;
    };
    let candidate: Generation | undefined;
    try {
      const target = await this.install(action, request, result);
      result.to = target;
      if (target === this.active.source && this.status.state === 'ready') {
        result.ok = true;
        result.unchanged = true;
        result.sha256 = this.active.sha256;
        result.ms = Date.now() - started;
        return result;
      }
      this.report({ action, to: target, phase: 'loading', progress: 0 });
      candidate = this.load(target);
      this.others.add(candidate);
      const loading = candidate.lease;
      loading.on('status', (s: LeaseStatus) => {
        if (s.state === 'loading' && this.progress?.phase === 'loading')
          this.report({ action, to: target, phase: 'loading', progress: s.progress });
      });
      const runtime = await withDeadline(
        candidate.lease.ready,
        this.options.loadTimeoutMs ?? 300_000,
        `${target} did not load within ${Math.round((this.options.loadTimeoutMs ?? 300_000) / 1000)} s`,
      );
      if (this.released) throw new LlmError('closed', 'The model runtime was closed during the update.');
      this.report({ action, to: target, phase: 'checking' });
      const check = await healthCheck(runtime, this.options.check);
      result.check = check;
      result.sha256 = runtime.modelSha256;
      if (!check.ok) throw new LlmError('invalid', `the health check failed: ${check.error}`);
      if (this.released) throw new LlmError('closed', 'The model runtime was closed during the update.');
      result.drained = this.switchTo(candidate);
      candidate = undefined;
      result.ok = true;
      result.ms = Date.now() - started;
      this.report({ action, to: target, phase: 'done' });
      this.options.onLog?.(
        'info',
        `Model ${action === 'rollback' ? 'rolled back' : 'updated'}: ${from} -> ${target} (checked in ${result.check?.ms} ms, switched after ${result.ms} ms).`,
      );
      await this.saveState();
      if (action === 'update') {
        const removed = await this.cleanUp();
        if (removed.length) result.removed = removed;
      }
      return result;
    } catch (err) {
      return fail((err as Error).message);
    } finally {
      if (candidate) {
        this.others.delete(candidate);
        await candidate.release().catch(() => undefined);
      }
    }
  }

  /** The name@version (or source) to load, downloading it into the models directory first if asked. */
  private async install(
    action: 'update' | 'rollback',
    request: UpdateRequest,
    result: UpdateResult,
  ): Promise<string> {
    if ('model' in request) return request.model.trim();
    let ref: ModelRef;
    let source: string;
    let expected: { sha256?: string; size?: number; signature?: string; file?: string };
    if ('manifest' in request) {
      const m = checkManifest(request.manifest, 'The update manifest');
      // A manifest the configured key did not sign is refused before a byte is downloaded.
      if (this.options.publicKey)
        verifyManifestSignature(m, this.options.publicKey, `The update manifest of ${m.name}@${m.version}`);
      ref = { name: m.name, version: m.version };
      source = m.source;
      expected = { sha256: m.sha256, size: m.size, signature: m.signature, file: m.file };
    } else {
      ref = { name: request.name, version: request.version };
      source = request.source;
      expected = {
        sha256: request.sha256,
        size: request.size,
        signature: request.signature,
        file: request.file,
      };
    }
    const target = formatModelRef(ref);
    this.report({ action, to: target, phase: 'downloading', progress: 0 });
    let last = 0;
    const download = await downloadModel({
      modelsDir: this.options.modelsDir,
      ref,
      source,
      fileName: expected.file,
      sha256: expected.sha256,
      size: expected.size,
      signature: expected.signature,
      onProgress: (p: DownloadProgress) => {
        const now = Date.now();
        if (now - last < 250 || !p.total) return;
        last = now;
        this.report({ action, to: target, phase: 'downloading', progress: p.received / p.total });
      },
    });
    result.download = { bytes: download.bytes, resumes: download.resumes, resumedFrom: download.resumedFrom };
    this.options.onLog?.(
      'info',
      `Model ${target} downloaded from ${redactUrl(source)} (${download.bytes} bytes, ${download.resumes} resume(s)).`,
    );
    return target;
  }

  private switchTo(next: Generation): number {
    const old = this.active;
    this.others.delete(next);
    old.lease.off('status', this.onStatus);
    this.active = next;
    this.previous = old.source;
    next.lease.on('status', this.onStatus);
    // The nodes hear 'ready' again and follow the new version's metrics.
    this.onStatus(next.lease.status);
    const holding = old.view.inFlight;
    this.retire(old);
    return holding;
  }

  /** The replaced version finishes what it holds, then is unloaded (after drainMs at the latest). */
  private retire(old: Generation): void {
    old.retired = true;
    this.others.add(old);
    const timers: NodeJS.Timeout[] = [];
    const unload = (): void => {
      old.view.off('idle', unload);
      timers.forEach(clearTimeout);
      this.others.delete(old);
      void old.release().catch(() => undefined);
    };
    if (old.view.inFlight === 0) return unload();
    old.view.on('idle', unload);
    timers.push(setTimeout(unload, this.options.drainMs ?? old.lease.settings.defaultTimeoutMs + 5000));
    timers[0].unref();
  }

  /** Keep-N after an update: never the active version, the rollback target, or a file in use. */
  private async cleanUp(): Promise<string[]> {
    const keep = this.options.keepVersions ?? 3;
    const ref = parseModelRef(this.active.source);
    if (!ref || keep <= 0) return [];
    try {
      const inUse = this.options.inUse
        ? await this.options.inUse()
        : (await this.options.registry.list()).map((info) => info.model.path);
      const removed = await pruneVersions(this.options.modelsDir, ref.name, keep, [
        this.active.source,
        ...(this.previous ? [this.previous] : []),
        ...[...this.others].map((g) => g.source),
        ...inUse,
      ]);
      if (removed.length)
        this.options.onLog?.(
          'info',
          `Removed old versions of ${ref.name} from ${this.options.modelsDir} (keeping ${keep}): ${removed.join(', ')}.`,
        );
      return removed;
    } catch (err) {
      this.options.onLog?.(
        'warn',
        `Old versions of ${ref.name} were not cleaned up: ${(err as Error).message}`,
      );
      return [];
    }
  }

  private async saveState(): Promise<void> {
    const file = this.options.stateFile;
    if (!file) return;
    const state: LifecycleState = {
      configured: this.options.source,
      active: this.active.source,
      ...(this.previous ? { previous: this.previous } : {}),
    };
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(tmp, JSON.stringify(state));
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      this.options.onLog?.(
        'warn',
        `The active model version could not be remembered in ${file} (${(err as Error).message}): a restart loads ${this.options.source}.`,
      );
    }
  }

  /**
   * What the health endpoint shows: loaded or not, the version and its hash, and a probe's answer
   * (a few tokens, outside the production queue; one at a time, reused for probeMaxAgeMs).
   */
  async health(): Promise<HealthReport> {
    const ref = parseModelRef(this.active.source);
    const report: HealthReport = {
      loaded: this.status.state === 'ready',
      state: this.status.state,
      ...this.info(),
      ...(this.status.error ? { error: this.status.error.message } : {}),
      ...(ref ? { manifest: ref } : {}),
    };
    if (!report.loaded) return report;
    report.model = this.active.source;
    report.sha256 = this.active.sha256;
    const maxAge = this.options.probeMaxAgeMs ?? 10_000;
    if (this.probeAnswer && Date.now() - this.probeAnswer.at < maxAge) report.probe = this.probeAnswer;
    else report.probe = await (this.probing ??= this.probe().finally(() => (this.probing = undefined)));
    return report;
  }

  private async probe(): Promise<ProbeAnswer> {
    const at = Date.now();
    try {
      const runtime = this.runtime ?? (await this.ready);
      const r = await runtime.complete('Hello', { maxTokens: 4, probe: true, timeoutMs: 30_000 });
      this.probeAnswer = { ok: r.tokensOut > 0, ms: Date.now() - at, text: r.text, tokens: r.tokensOut, at };
      if (r.tokensOut === 0) this.probeAnswer.error = 'no tokens';
    } catch (err) {
      this.probeAnswer = { ok: false, ms: Date.now() - at, error: (err as Error).message, at };
    }
    return this.probeAnswer;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.active.lease.off('status', this.onStatus);
    this.status = { state: 'closed', progress: 0 };
    this.emit('status', this.status);
    this.removeAllListeners();
    const all = [this.active, ...this.others];
    this.others.clear();
    await Promise.all(all.map((g) => g.release().catch(() => undefined)));
  }
}

/**
 * Removes the files of old versions of one model from the models directory: the `keep` most
 * recently installed versions stay (by their manifest's time), and so does every version named in
 * `protect` (as name@version, or by a path inside its folder: a file loaded somewhere). A folder
 * without a readable manifest is not ours to judge and stays. Returns the name@version removed.
 */
export async function pruneVersions(
  modelsDir: string,
  name: string,
  keep: number,
  protect: readonly string[],
): Promise<string[]> {
  const base = path.join(modelsDir, name);
  const entries = await readdir(base, { withFileTypes: true }).catch(() => []);
  const versions: Array<{ ref: ModelRef; dir: string; at: number }> = [];
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const ref = { name, version: entry.name };
    if (!parseModelRef(formatModelRef(ref))) continue;
    const dir = versionDir(modelsDir, ref);
    const manifest = await readManifest(modelsDir, ref).catch(() => undefined);
    if (!manifest) continue;
    const at = (await stat(path.join(dir, 'manifest.json'))).mtimeMs;
    versions.push({ ref, dir, at });
  }
  versions.sort((a, b) => b.at - a.at || b.ref.version.localeCompare(a.ref.version));
  const resolved = protect.map((p) => path.resolve(p));
  const isProtected = (v: { ref: ModelRef; dir: string }): boolean =>
    protect.includes(formatModelRef(v.ref)) ||
    resolved.some((p) => p === v.dir || p.startsWith(v.dir + path.sep));
  const removed: string[] = [];
  for (const v of versions.slice(keep)) {
    if (isProtected(v)) continue;
    await rm(v.dir, { recursive: true, force: true });
    removed.push(formatModelRef(v.ref));
  }
  return removed;
}

function targetName(request: UpdateRequest): string {
  if ('model' in request) return String(request.model);
  if ('manifest' in request) {
    const m = request.manifest as Partial<ModelManifest> | undefined;
    return `${m?.name ?? '?'}@${m?.version ?? '?'}`;
  }
  return `${request.name}@${request.version}`;
}

function readState(file: string | undefined): LifecycleState | undefined {
  if (!file) return undefined;
  try {
    // A few hundred bytes, read once at deploy.
    const state = JSON.parse(readFileSync(file, 'utf8')) as Partial<LifecycleState>;
    if (typeof state.configured === 'string' && typeof state.active === 'string' && state.active.trim())
      return {
        configured: state.configured,
        active: state.active,
        ...(typeof state.previous === 'string' ? { previous: state.previous } : {}),
      };
  } catch {
    // none yet, or unreadable: the configured model
  }
  return undefined;
}

function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LlmError('timeout', what)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Reads an update request from a message or an HTTP body: `{model}`, `{name, version, source,
 * sha256?, size?, signature?, file?}` or `{manifest}`; a clear error for anything else.
 */
export function parseUpdateRequest(value: unknown): UpdateRequest {
  if (!isPlainObject(value))
    throw new LlmError(
      'bad_request',
      'An update needs an object: {model}, {name, version, source} or {manifest}.',
    );
  if (value.manifest !== undefined) return { manifest: checkManifest(value.manifest, 'The update manifest') };
  if (typeof value.source === 'string' && value.source.trim()) {
    for (const key of ['name', 'version'] as const)
      if (typeof value[key] !== 'string' || !value[key])
        throw new LlmError('bad_request', `An update from a source URL needs "${key}" (a string).`);
    const ref = { name: value.name as string, version: value.version as string };
    const optional = (key: string, test: (v: unknown) => boolean, what: string): void => {
      if (value[key] !== undefined && !test(value[key]))
        throw new LlmError('bad_request', `"${key}" must be ${what}.`);
    };
    optional('sha256', (v) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v), '64 lowercase hex digits');
    optional('size', (v) => Number.isSafeInteger(v) && (v as number) >= 0, 'a whole number of bytes');
    optional('signature', (v) => typeof v === 'string', 'base64 text');
    optional('file', (v) => typeof v === 'string', 'a file name');
    // Checked here so the person sees a bad name before any download starts.
    formatModelRef(ref);
    if (!parseModelRef(formatModelRef(ref)))
      throw new LlmError(
        'bad_request',
        `"${formatModelRef(ref)}" is not a valid name@version (letters, digits, ".", "_", "-").`,
      );
    return {
      ...ref,
      source: value.source,
      ...(value.sha256 !== undefined ? { sha256: value.sha256 as string } : {}),
      ...(value.size !== undefined ? { size: value.size as number } : {}),
      ...(value.signature !== undefined ? { signature: value.signature as string } : {}),
      ...(value.file !== undefined ? { file: value.file as string } : {}),
    };
  }
  if (typeof value.model === 'string' && value.model.trim()) return { model: value.model.trim() };
  throw new LlmError(
    'bad_request',
    'An update needs "model" (name@version already installed), or "name", "version" and "source" (a URL to download), or "manifest".',
  );
}
