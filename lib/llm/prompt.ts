import { createHash } from 'node:crypto';
import type { ChatMessage, CompiledSchema, GenerateOptions, JsonResult, LlmRuntime } from '../runtime';
import { LlmError, isLlmError, type LlmErrorCode } from '../runtime';

/**
 * Fills `{{payload}}`, `{{msg.topic}}`, `{{ sensors.temp }}` from the message, like Node-RED's
 * template node. Objects are written as JSON; a missing value as an empty string.
 */
export function renderTemplate(template: string, get: (path: string) => unknown): string {
  return template.replace(
    /\{\{\s*(?:msg\.)?([A-Za-z_$][\w$]*(?:\.[\w$]+|\[\d+\])*)\s*\}\}/g,
    (_, path: string) => {
      const value = get(path);
      if (value === undefined || value === null) return '';
      return typeof value === 'object' ? JSON.stringify(value) : String(value);
    },
  );
}

/** The longest input an LLM node accepts unless its settings say otherwise (characters). */
export const DEFAULT_MAX_INPUT = 32_000;

/**
 * The characters of a message's input as the model would read them (JSON for objects), counted
 * only up to `limit`: a 10 MB payload is refused after looking at 32,000 characters of it, never
 * serialised or tokenized whole. Returns a number above `limit` when the input is longer.
 */
export function inputLength(value: unknown, limit: number): number {
  let total = 0;
  const seen = new Set<object>();
  const walk = (v: unknown): void => {
    if (total > limit) return;
    if (typeof v === 'string') total += v.length + 2;
    else if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint')
      total += String(v).length;
    else if (v === null) total += 4;
    else if (Buffer.isBuffer(v)) total += v.length * 2;
    else if (typeof v === 'object') {
      if (seen.has(v)) return;
      seen.add(v);
      total += 2;
      if (Array.isArray(v)) {
        for (const item of v) {
          walk(item);
          total += 1;
          if (total > limit) return;
        }
      } else {
        for (const key of Object.keys(v)) {
          total += key.length + 4;
          walk((v as Record<string, unknown>)[key]);
          if (total > limit) return;
        }
      }
    }
  };
  if (typeof value === 'string') return value.length;
  walk(value);
  return total;
}

/** The clear error for an input over the node's bound. */
export function inputTooLong(input: unknown, length: number, limit: number): LlmError {
  // Not toLocaleString: its first call loads ICU data, some 15 ms on a gateway.
  const grouped = (n: number): string => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const size = typeof input === 'string' ? grouped(length) : `more than ${grouped(limit)}`;
  return new LlmError(
    'bad_request',
    `The input is too long: ${size} characters, and this node accepts at most ${grouped(limit)} (its "Max input" setting). Shorten msg.payload or raise the limit.`,
  );
}

export interface Example {
  input: string;
  output: unknown;
}

/**
 * The fixed part first (instruction, schema, examples) and the new text last, so that a sequence
 * which already holds the fixed part only evaluates the new text.
 */
export function buildMessages(system: string, examples: Example[], text: string): ChatMessage[] {
  const messages: ChatMessage[] = [{ role: 'system', content: system }];
  for (const example of examples) {
    messages.push({ role: 'user', content: example.input });
    messages.push({ role: 'assistant', content: JSON.stringify(example.output) });
  }
  messages.push({ role: 'user', content: text });
  return messages;
}

export function prefixKey(messages: ChatMessage[]): string {
  return createHash('sha256')
    .update(JSON.stringify(messages.slice(0, -1)))
    .digest('hex')
    .slice(0, 16);
}

/** Why no valid object could be made: the codes on the nodes' "rejected" output. */
export type RejectReason = Extract<
  LlmErrorCode,
  'invalid' | 'truncated' | 'timeout' | 'queue_full' | 'cancelled' | 'runtime_crashed'
>;

export function rejectReason(err: unknown): RejectReason | undefined {
  if (!isLlmError(err)) return undefined;
  if (err.code === 'closed') return 'cancelled';
  return (['invalid', 'truncated', 'timeout', 'queue_full', 'cancelled', 'runtime_crashed'] as const).find(
    (c) => c === err.code,
  );
}

export interface AttemptOptions extends GenerateOptions {
  /** Extra tries after an invalid or truncated answer (each with another seed), within one timeoutMs. */
  retries: number;
}

/**
 * Asks for JSON until it validates or the tries run out. Only answers that were wrong are retried;
 * a timeout, a full queue or a cancel ends at once.
 */
export async function generateValidJson<T>(
  runtime: LlmRuntime,
  messages: ChatMessage[],
  /** Compiled at deploy, or the source of a msg.schema (the runtime compiles and caches it). */
  schema: CompiledSchema | object,
  options: AttemptOptions,
  check?: (value: T) => string | undefined,
): Promise<JsonResult<T> & { attempts: number }> {
  let lastError: unknown;
  // One deadline for the message, however many answers it takes.
  const deadline = options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : undefined;
  for (let attempt = 0; attempt <= options.retries; attempt++) {
    const timeoutMs = deadline === undefined ? undefined : deadline - Date.now();
    if (timeoutMs !== undefined && timeoutMs <= 0) {
      throw new LlmError(
        'timeout',
        `The request's time ran out after ${attempt} answers that were not valid.`,
        {
          cause: lastError,
        },
      );
    }
    try {
      const result = await runtime.generateJson<T>(messages, schema, {
        ...options,
        timeoutMs,
        seed: (options.seed ?? 0) + attempt,
        temperature: attempt === 0 ? options.temperature : Math.max(options.temperature ?? 0, 0.4),
        affinity: options.affinity ?? prefixKey(messages),
      });
      const problem = check?.(result.value);
      if (problem) throw new LlmError('invalid', problem);
      return { ...result, attempts: attempt + 1 };
    } catch (err) {
      lastError = err;
      const reason = rejectReason(err);
      if (reason !== 'invalid' && reason !== 'truncated') throw err;
    }
  }
  throw lastError;
}
