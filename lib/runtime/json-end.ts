/**
 * Watches decoded text for the end of one JSON object or array: the grammar lets a model go on
 * after the closing bracket (whitespace up to a stop trigger), and every such token is a decode
 * the answer does not need. Strings and escapes are followed so that brackets inside them do not
 * count. Text that starts with anything else (a bare string or number) is never reported complete.
 */
export class JsonEnd {
  private depth = 0;
  private started = false;
  private inString = false;
  private escaped = false;
  private done = false;

  /** Feeds the next piece of text; true once the outermost value has closed. */
  push(text: string): boolean {
    if (this.done) return true;
    for (const ch of text) {
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === '\\') this.escaped = true;
        else if (ch === '"') this.inString = false;
        continue;
      }
      if (ch === '"') {
        if (!this.started) return false;
        this.inString = true;
      } else if (ch === '{' || ch === '[') {
        this.started = true;
        this.depth++;
      } else if (ch === '}' || ch === ']') {
        this.depth--;
        if (this.started && this.depth === 0) {
          this.done = true;
          return true;
        }
      } else if (!this.started && !/\s/.test(ch)) {
        // A top-level string, number or literal: its end is the grammar's to decide.
        this.done = false;
        return false;
      }
    }
    return false;
  }
}
