import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { nodeRedLauncher } from '../../examples/demo/userdir';
import { freePort } from './node-red-process';

/**
 * A real Node-RED on a user directory whose node_modules an `npm install` filled: unlike
 * NodeRedProcess it links nothing from this checkout, so it loads exactly what was installed.
 */
export class InstalledNodeRed {
  readonly url: string;
  output = '';
  private child: ChildProcess | undefined;

  private constructor(
    readonly userDir: string,
    readonly port: number,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  static async start(userDir: string, settings: Record<string, unknown> = {}): Promise<InstalledNodeRed> {
    const red = new InstalledNodeRed(userDir, await freePort());
    const file = path.join(userDir, 'settings.js');
    const all = { uiHost: '127.0.0.1', uiPort: red.port, flowFile: 'flows.json', ...settings };
    await writeFile(file, `module.exports = ${JSON.stringify(all, null, 2)};\n`);
    red.child = spawn(process.execPath, [nodeRedLauncher(), '--userDir', userDir, '--settings', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    red.child.stdout?.on('data', (c: Buffer) => (red.output += c.toString()));
    red.child.stderr?.on('data', (c: Buffer) => (red.output += c.toString()));
    const end = Date.now() + 60_000;
    while (!red.output.includes('Server now running')) {
      if (red.child.exitCode !== null || Date.now() > end) {
        throw new Error(`Node-RED did not start:\n${red.output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return red;
  }

  get(route: string, accept = 'application/json'): Promise<Response> {
    return fetch(`${this.url}${route}`, { headers: { Accept: accept } });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
  }
}
