const escape = (c: string): string => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Words as one pattern shaped like a trie ("a(?:sk|ttn)|b(?:y|…)"): V8 tries the alternatives of a
 * flat list one by one at every position it may start, so a list of two hundred words costs two
 * hundred tries there; a trie, a few. `space`: what a space in a word stands for (itself by default).
 * `shortestFirst`: where one word is the start of another, try the shorter first (a lazy `??`), as a
 * flat list that names the shorter first does.
 */
export function alternatives(
  ws: readonly string[],
  { space = ' ', shortestFirst = false }: { space?: string; shortestFirst?: boolean } = {},
): string {
  const node = (list: string[]): string => {
    const groups = new Map<string, string[]>();
    let ends = false;
    for (const w of list) {
      if (w === '') ends = true;
      else {
        const rest = groups.get(w[0]) ?? [];
        rest.push(w.slice(1));
        groups.set(w[0], rest);
      }
    }
    const branches = [...groups].map(([c, rest]) => (c === ' ' ? space : escape(c)) + node(rest));
    if (branches.length === 0) return '';
    const body = branches.length === 1 ? branches[0] : `(?:${branches.join('|')})`;
    return ends ? `(?:${body})${shortestFirst ? '??' : '?'}` : body;
  };
  return node([...new Set(ws)]);
}
