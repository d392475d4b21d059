import type { ChatMessage, GenerateOptions, GenerationResult, LlmRuntime } from '../runtime';
import { LlmError } from '../runtime';

/** What the chat node asks with when its system prompt is left blank. */
export const CHAT_SYSTEM = 'You are a helpful assistant. Answer briefly and plainly.';

/**
 * One piece of an answer while it is decoded: `index` counts from 0 in the order the pieces were
 * made; the last piece has `done` and no text, so a reader knows the stream has ended.
 */
export interface StreamPart {
  index: number;
  done: boolean;
  text: string;
}

export interface ChatResult extends GenerationResult {
  /** How many pieces with text were streamed (the closing `done` piece not counted). */
  parts: number;
}

/**
 * The text a message asks: a string with something in it, or a number or boolean written as text.
 * Anything else is refused with a sentence that says what was sent.
 */
export function chatText(payload: unknown): string {
  if (typeof payload === 'number' || typeof payload === 'boolean') return String(payload);
  if (typeof payload !== 'string') {
    const what = payload === null ? 'null' : Array.isArray(payload) ? 'an array' : typeof payload;
    throw new LlmError('bad_request', `msg.payload must be the text to send to the model, not ${what}.`);
  }
  if (!payload.trim()) throw new LlmError('bad_request', 'msg.payload is empty: there is nothing to ask.');
  return payload;
}

/** The system prompt (when there is one) and the user's text, for a message without history. */
export function chatMessages(system: string, text: string): ChatMessage[] {
  const messages: ChatMessage[] = system.trim() ? [{ role: 'system', content: system }] : [];
  messages.push({ role: 'user', content: text });
  return messages;
}

/**
 * Asks the model for free text. Each piece of the answer goes to `onPart` as it is decoded, in
 * order, then a closing piece with `done`; the pieces joined are the result's text. `options.onText`
 * (a node's progress status) still sees every piece.
 */
export async function generateChat(
  runtime: LlmRuntime,
  messages: ChatMessage[],
  options: GenerateOptions,
  onPart?: (part: StreamPart) => void,
): Promise<ChatResult> {
  const pieces: string[] = [];
  const progress = options.onText;
  const result = await runtime.chat(messages, {
    ...options,
    onText: (text: string) => {
      progress?.(text);
      if (!text) return;
      pieces.push(text);
      onPart?.({ index: pieces.length - 1, done: false, text });
    },
  });
  onPart?.({ index: pieces.length, done: true, text: '' });
  return { ...result, parts: pieces.length };
}
