/**
 * Reason codes shared by the runtime and the nodes that use it; llm-parse and llm-plan put them on
 * their "rejected" output, so they are part of the public contract.
 */
export type LlmErrorCode =
  | 'queue_full'
  | 'timeout'
  | 'cancelled'
  | 'truncated'
  | 'invalid'
  | 'closed'
  | 'model_load'
  | 'bad_request'
  /** The runtime child process ended while the request was decoding (it restarts by itself). */
  | 'runtime_crashed'
  /** The model server (the "OpenAI-compatible server" backend) could not be reached or kept failing. */
  | 'unavailable'
  /** Something failed that is neither the answer's fault nor the caller's (a native error, a full disk). */
  | 'internal';

export class LlmError extends Error {
  readonly code: LlmErrorCode;

  constructor(code: LlmErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LlmError';
    this.code = code;
  }
}

export function isLlmError(err: unknown, code?: LlmErrorCode): err is LlmError {
  return err instanceof LlmError && (code === undefined || err.code === code);
}
