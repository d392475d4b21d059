import type { ChatMessage } from '../runtime';

/** Counts the tokens of a text: the model's tokenizer where the caller has it, else `estimateTokens`. */
export type CountTokens = (text: string) => number;

/** Tokens a chat template adds around each message (role markers, separators): a safe average. */
export const MESSAGE_OVERHEAD_TOKENS = 4;

/** English runs at about four characters a token in a BPE vocabulary: 3.5 errs on the high side. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 3.5);
}

export function messageTokens(message: ChatMessage, count: CountTokens): number {
  return count(message.content) + MESSAGE_OVERHEAD_TOKENS;
}

/**
 * Splits a conversation into turns: a user message and the replies that follow it. A window only
 * ever drops whole turns, so it never starts with an answer whose question was cut.
 */
export function turnsOf(conversation: readonly ChatMessage[]): ChatMessage[][] {
  const turns: ChatMessage[][] = [];
  for (const message of conversation) {
    if (message.role === 'system') continue;
    if (message.role === 'user' || turns.length === 0) turns.push([message]);
    else turns[turns.length - 1].push(message);
  }
  return turns;
}

/**
 * The newest whole turns of `conversation` whose tokens fit in `budget`, oldest first. System
 * messages in the stored conversation are left out: the caller passes the instruction it wants now.
 */
export function newestTurns(
  conversation: readonly ChatMessage[],
  budget: number,
  count: CountTokens,
): ChatMessage[] {
  const kept: ChatMessage[][] = [];
  let used = 0;
  const turns = turnsOf(conversation);
  for (let i = turns.length - 1; i >= 0; i--) {
    const cost = turns[i].reduce((n, m) => n + messageTokens(m, count), 0);
    if (used + cost > budget) break;
    used += cost;
    kept.unshift(turns[i]);
  }
  return kept.flat();
}

/**
 * The messages to send for a new user text: the system instruction, then as many of the newest
 * turns as fit, then the new text. The instruction and the new text are always sent, even when they
 * alone exceed `maxTokens` (the runtime then reports the context as too small), because dropping
 * either would change what is asked.
 */
export function messagesFor(
  record: { conversation: readonly ChatMessage[] },
  system: string | undefined,
  newUserText: string,
  maxTokens: number,
  countTokens: CountTokens = estimateTokens,
): ChatMessage[] {
  const head: ChatMessage[] = system ? [{ role: 'system', content: system }] : [];
  const last: ChatMessage = { role: 'user', content: newUserText };
  const fixed = [...head, last].reduce((n, m) => n + messageTokens(m, countTokens), 0);
  const history = newestTurns(record.conversation, Math.max(0, maxTokens - fixed), countTokens);
  return [...head, ...history, last];
}
