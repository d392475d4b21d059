/**
 * A URL as it may appear in a log, a status or an error: without the user and password an
 * `mqtt://user:pass@host` carries, and without query values (a download token, say).
 */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (!url.host) throw new Error('not a network URL');
    if (url.username || url.password) {
      url.username = '***';
      url.password = '';
    }
    for (const key of [...url.searchParams.keys()]) url.searchParams.set(key, '***');
    return url.toString();
  } catch {
    return raw.replace(/\/\/[^/@\s]*@/, '//***@').replace(/([?&][^=&#\s]+=)[^&#\s]*/g, '$1***');
  }
}
