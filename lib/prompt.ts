import { createHash } from 'node:crypto';
import type { ChatMessage, CompiledSchema, GenerateOptions, JsonResult, ModelRuntime } from './runtime';
import { LlmError, isLlmError, type LlmErrorCode } from './runtime';

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
  'invalid' | 'truncated' | 'timeout' | 'queue_full' | 'cancelled'
>;

export function rejectReason(err: unknown): RejectReason | undefined {
  if (!isLlmError(err)) return undefined;
  if (err.code === 'closed') return 'cancelled';
  return (['invalid', 'truncated', 'timeout', 'queue_full', 'cancelled'] as const).find(
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
  runtime: ModelRuntime,
  messages: ChatMessage[],
  schema: CompiledSchema,
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
