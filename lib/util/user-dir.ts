import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Node-RED's user directory, where the package keeps its files (policies, audit logs, outboxes,
 * sessions, models): the `userDir` Node-RED runs with, else `~/.node-red`, Node-RED's own default.
 */
export function userDir(settings: { userDir?: string }): string {
  return settings.userDir ?? path.join(os.homedir(), '.node-red');
}
