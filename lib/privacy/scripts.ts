/**
 * Letters of scripts after Latin: Greek to Ethiopic, Greek Extended, Glagolitic to Ethiopic
 * Extended, CJK, Hangul, presentation forms. Not the Latin Extended Additional block (Vietnamese),
 * nor punctuation, primes, dashes, arrows and other symbols (2000-2BFF), which Latin text holds.
 */
const BEYOND_LATIN =
  /[\u0370-\u1dff\u1f00-\u1fff\u2c00-\u2dff\u3040-\ud7ff\uf900-\ufaff\ufb1d-\ufdff\ufe70-\ufefe]/;

/**
 * Whether `text` holds a letter of a script after Latin (Greek, Cyrillic, Arabic, CJK...): several
 * detectors look for words in those scripts only then. Each scan of a window costs as much as a small
 * pattern: the caller asks once per window and passes the answer down.
 */
export function holdsOtherScripts(text: string): boolean {
  return BEYOND_LATIN.test(text);
}
