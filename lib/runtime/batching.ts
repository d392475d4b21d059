/**
 * How the sequences of one context share a decode: node-llama-cpp asks its batching strategy which
 * queued tokens go into the next llama_decode.
 *
 * node-llama-cpp starts the next decode as soon as the last one's tokens are sampled. By then the
 * sequence sampled last has not yet queued its next token (its generator needs a few more promise
 * hops), so with four sequences every decode carried three tokens and one sequence always waited:
 * a third more decodes than llama.cpp's batched-bench for the same tokens (bench/README.md,
 * issue #13). The gatherer lets such a decode wait a few turns of the microtask queue for every
 * sequence that is generating; a sequence busy elsewhere (a snapshot, a macrotask) only costs the
 * few empty turns.
 *
 * It also puts a decode's tokens in the order of their sequences. Each sequence has its own stream
 * of the KV cache (node-llama-cpp does not unify them), and llama.cpp then cuts a batch into one
 * micro-batch per run of consecutive sequence ids (llama_batch_allocr::split_equal, "accept only
 * increasing sequence ids"): four sequences queued as 3, 0, 1, 2 cost two passes over the weights,
 * in reverse order four. node-llama-cpp hands the strategy its queue order.
 */

/** A queued decode as node-llama-cpp hands it to a batching strategy. */
export interface BatchItem {
  readonly tokens: readonly unknown[];
  readonly evaluationPriority: number;
}

export interface PrioritizedItem<T extends BatchItem> {
  item: T;
  processAmount: number;
}

/** Empty turns granted to a decode that does not yet hold every generating sequence. */
export const GATHER_TURNS = 16;

/**
 * Shares `size` token slots among the items, higher evaluation priority first: each item gets an
 * equal share of what is left, and what one item does not need goes to the others.
 */
export function fitBatch<T extends BatchItem>(items: readonly T[], size: number): PrioritizedItem<T>[] {
  const out = [...items]
    .sort((a, b) => b.evaluationPriority - a.evaluationPriority)
    .map((item) => ({ item, processAmount: 0 }));
  let left = size;
  let open = out;
  while (left > 0 && open.length > 0) {
    const share = Math.max(1, Math.floor(left / open.length));
    for (const entry of open) {
      const add = Math.min(share, entry.item.tokens.length - entry.processAmount, left);
      entry.processAmount += add;
      left -= add;
      if (left === 0) break;
    }
    open = open.filter((entry) => entry.processAmount < entry.item.tokens.length);
  }
  return out.filter((entry) => entry.processAmount > 0);
}

/**
 * What the gatherer reads of a node-llama-cpp context: its (internal) queueing method, which knows
 * the sequence of each queued decode. Absent in another node-llama-cpp: decodes keep queue order.
 */
interface DecodeQueue {
  _decodeTokens?: (
    options: { sequenceId: number; tokens: readonly unknown[] },
    ...rest: unknown[]
  ) => unknown;
}

/**
 * A batching strategy that waits (a bounded number of empty turns) for every generating sequence,
 * and orders each decode by sequence id (see track()).
 */
export class BatchGatherer {
  /** Sequences between their first and last token: each will queue one. */
  generating = 0;
  /** Decodes started (batches with at least one token). */
  decodes = 0;
  /** Told of every decode as it starts: its token count, and whether each sequence adds one token. */
  onBatch: ((tokens: number, generation: boolean) => void) | undefined;
  private pending = 0;
  /** The sequence of each queued decode, by its token array (the object node-llama-cpp hands on). */
  private readonly sequences = new WeakMap<readonly unknown[], number>();

  /**
   * Learns which sequence queued each decode of this context, so that decodes go to llama.cpp in
   * sequence order. Reaches node-llama-cpp's internal `_decodeTokens` (3.22); where it is missing
   * nothing changes but the order.
   */
  track(context: object): void {
    const queue = context as DecodeQueue;
    const decodeTokens = queue._decodeTokens;
    if (typeof decodeTokens !== 'function') return;
    queue._decodeTokens = (options, ...rest) => {
      this.sequences.set(options.tokens, options.sequenceId);
      return decodeTokens.call(context, options, ...rest);
    };
  }

  strategy = <T extends BatchItem>({
    items,
    size,
  }: {
    items: readonly T[];
    size: number;
  }): PrioritizedItem<T>[] => {
    if (items.length < this.generating && this.pending < GATHER_TURNS) {
      this.pending++;
      return [];
    }
    this.pending = 0;
    const batch = fitBatch(items, size);
    if (batch.length === 0) return batch;
    // Unknown sequences (a prompt's rest after a partial batch is a new array) keep their place at the end.
    const order = (entry: PrioritizedItem<T>): number =>
      this.sequences.get(entry.item.tokens) ?? Number.MAX_SAFE_INTEGER;
    batch.sort((a, b) => order(a) - order(b));
    this.decodes++;
    if (this.onBatch) {
      let tokens = 0;
      let generation = true;
      for (const { item, processAmount } of batch) {
        tokens += processAmount;
        if (item.tokens.length !== 1) generation = false;
      }
      this.onBatch(tokens, generation);
    }
    return batch;
  };
}
