const BEYOND_LATIN = /[\u0370-\uffff]/;
let lastText: string | undefined;
let lastAnswer = false;

/**
 * Whether `text` holds a letter of a script after Latin (Greek, Cyrillic, Arabic, CJK...): several
 * detectors look for words in those scripts only then. Remembered for the last text asked about, as
 * the detectors of one window ask in turn (each scan of a window costs as much as a small pattern).
 */
export function holdsOtherScripts(text: string): boolean {
  if (text !== lastText) {
    lastText = text;
    lastAnswer = BEYOND_LATIN.test(text);
  }
  return lastAnswer;
}
