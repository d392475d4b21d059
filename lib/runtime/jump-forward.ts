import type { LlamaGrammarEvaluationState, LlamaModel, Token } from 'node-llama-cpp' with {
  'resolution-mode': 'import',
};

/** node-llama-cpp's native grammar checks (the ones its own speculative decoding uses). */
interface GrammarChecks {
  canBeNextTokenForGrammarEvaluationState(state: unknown, token: Token): boolean;
  acceptGrammarEvaluationStateToken(state: unknown, token: Token): void;
}

/** Characters probed one by one, the frequent ones in JSON first (a probe stops at the second fit). */
const PROBED =
  ' "e\nat,:{}[]0123456789-.' + "oinsrlhdcumfpgwybvkxjqzTAESRINOLCDMPUBFHGWVYKXJQZ_/\t!#$%&'()*+;<=>?@\\^`|~";
/** A forced run is followed this far at most per step (one key and its colon is well under it). */
const MAX_FORCED_CHARS = 48;

interface Probe {
  checks: GrammarChecks;
  /** Each probed character and the one token that is exactly that character. */
  alphabet: Array<[string, Token]>;
  endTokens: Token[];
  /** A token to detokenize after, so that a leading space is not dropped. */
  before: Token[];
}

const probes = new WeakMap<LlamaModel, Probe | null>();

/**
 * Jump-forward for JSON-schema grammars: where the grammar admits exactly one next character, the
 * model has no choice to make, so those characters are not sampled one decode at a time but fed to
 * the model as one batch. A character is forced when exactly one of the probed one-character
 * tokens fits the grammar and no end-of-generation token does; a run of forced characters is
 * tokenized as the tokenizer would write it and every token is checked against the grammar, so the
 * output stays inside the grammar whatever is fed. Returns undefined where node-llama-cpp lacks the
 * native checks or the vocabulary lacks a one-token form of some probed character (then nothing is
 * forced: a missing character could have been the model's other choice).
 */
export class ForcedRuns {
  private constructor(
    private readonly model: LlamaModel,
    private readonly probe: Probe,
  ) {}

  static for(model: LlamaModel): ForcedRuns | undefined {
    let probe = probes.get(model);
    if (probe === undefined) {
      probe = buildProbe(model);
      probes.set(model, probe);
    }
    return probe ? new ForcedRuns(model, probe) : undefined;
  }

  /**
   * The tokens the grammar forces from `state` on, at most `limit`, and a copy of the state that has
   * accepted them (`state` itself is left as it is); undefined when the next character is the
   * model's to choose. A run stops after a closing bracket: the caller checks whether the value
   * ended there before feeding more.
   */
  next(
    state: LlamaGrammarEvaluationState,
    limit: number,
  ): { tokens: Token[]; state: LlamaGrammarEvaluationState } | undefined {
    if (limit <= 0) return undefined;
    const { checks, alphabet, endTokens } = this.probe;
    const native = (s: LlamaGrammarEvaluationState): unknown => (s as unknown as { _state: unknown })._state;
    const fits = (s: LlamaGrammarEvaluationState, token: Token): boolean =>
      checks.canBeNextTokenForGrammarEvaluationState(native(s), token);
    const probing = state.clone();
    let text = '';
    while (text.length < MAX_FORCED_CHARS) {
      if (endTokens.some((t) => fits(probing, t))) break;
      let only: [string, Token] | undefined;
      let count = 0;
      for (const entry of alphabet) {
        if (fits(probing, entry[1])) {
          only = entry;
          if (++count > 1) break;
        }
      }
      if (count !== 1 || !only) break;
      checks.acceptGrammarEvaluationStateToken(native(probing), only[1]);
      text += only[0];
      if (only[0] === '}' || only[0] === ']') break;
    }
    if (text === '') return undefined;
    // As the tokenizer writes the run; where that is not exactly the run (SentencePiece puts a
    // space before a leading newline), one token per character.
    let tokens = this.model.tokenize(text, false, 'trimLeadingSpace');
    if (this.model.detokenize(tokens, false, this.probe.before) !== text) {
      const byChar = new Map(alphabet);
      tokens = [...text].map((ch) => byChar.get(ch)!);
    }
    const accepted = state.clone();
    const fed: Token[] = [];
    for (const token of tokens.slice(0, limit)) {
      if (!fits(accepted, token)) break;
      checks.acceptGrammarEvaluationStateToken(native(accepted), token);
      fed.push(token);
    }
    return fed.length > 0 ? { tokens: fed, state: accepted } : undefined;
  }
}

function buildProbe(model: LlamaModel): Probe | null {
  const checks = (model.llama as unknown as { _bindings?: { AddonSampler?: Partial<GrammarChecks> } })
    ._bindings?.AddonSampler;
  if (
    typeof checks?.canBeNextTokenForGrammarEvaluationState !== 'function' ||
    typeof checks.acceptGrammarEvaluationStateToken !== 'function'
  ) {
    return null;
  }
  const before = model.tokenize('a', false, 'trimLeadingSpace');
  const alphabet: Array<[string, Token]> = [];
  for (const ch of PROBED) {
    let tokens = model.tokenize(ch, false, 'trimLeadingSpace');
    if (ch === '\n' && model.tokens.nl != null) tokens = [model.tokens.nl];
    if (tokens.length !== 1 || model.detokenize(tokens, false, before) !== ch) return null;
    alphabet.push([ch, tokens[0]]);
  }
  const endTokens = [model.tokens.eos, model.tokens.eot].filter((t): t is Token => t != null);
  return { checks: checks as GrammarChecks, alphabet, endTokens, before };
}
