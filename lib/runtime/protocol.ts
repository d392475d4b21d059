import type { LlmErrorCode } from './errors';
import { LlmError } from './errors';
import type { RuntimeMetrics } from './metrics';
import type { LeaseState, RegistryOptions, RuntimeInfo, RuntimeSpec } from './registry';
import type { ChatMessage, GenerateOptions, ModelInfo, ResolvedContextSettings } from './runtime';

/** The messages between Node-RED's process and the runtime child: plain JSON, one per line of IPC. */

export interface WireError {
  code: LlmErrorCode;
  message: string;
}

/** What of GenerateOptions crosses the boundary: no signal and no callbacks (they become messages). */
export type WireOptions = Omit<GenerateOptions, 'signal' | 'onText' | 'onStart'>;

export type RequestKind = 'complete' | 'chat' | 'json';

export type ToChild =
  | { t: 'init'; options: Omit<RegistryOptions, 'onLog'> }
  | { t: 'acquire'; lease: number; spec: RuntimeSpec }
  | { t: 'release'; lease: number }
  | {
      t: 'run';
      id: number;
      lease: number;
      kind: RequestKind;
      input: string | ChatMessage[];
      schema?: unknown;
      options: WireOptions;
      /** Whether the parent wants the text as it is decoded. */
      stream: boolean;
    }
  | { t: 'cancel'; id: number; error: WireError }
  | { t: 'count'; id: number; lease: number; texts: string[] }
  | { t: 'list'; id: number }
  | { t: 'probe'; id: number };

export interface ReadyInfo {
  modelSha256: string;
  settings: ResolvedContextSettings;
  contextSize: number;
  gpu: string | false;
  modelInfo: ModelInfo;
  metrics: RuntimeMetrics;
}

export type FromChild =
  | { t: 'status'; lease: number; state: LeaseState; progress: number; error?: WireError }
  | { t: 'ready'; lease: number; info: ReadyInfo }
  | { t: 'change'; lease: number; metrics: RuntimeMetrics }
  | { t: 'started'; id: number }
  | { t: 'text'; id: number; text: string }
  | { t: 'result'; id: number; value: unknown }
  | { t: 'error'; id: number; error: WireError }
  | { t: 'log'; level: 'warn' | 'info'; message: string };

export type ListReply = RuntimeInfo[];

export function toWire(err: unknown): WireError {
  if (err instanceof LlmError) return { code: err.code, message: err.message };
  return { code: 'internal', message: (err as Error)?.message ?? String(err) };
}

export function fromWire(error: WireError): LlmError {
  return new LlmError(error.code, error.message);
}
