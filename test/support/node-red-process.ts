import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { nodeRedLauncher, prepareUserDir, type UserDirOptions } from '../../examples/demo/userdir';

export interface NodeSet {
  module: string;
  name: string;
  version: string;
  enabled: boolean;
  err?: string;
  types: string[];
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Polls `probe` until it returns something, or fails with what it last saw. */
export async function eventually<T>(
  what: string,
  ms: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms${last ? ` (${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A real Node-RED in its own process, with this package installed in a fresh user directory. */
export class NodeRedProcess {
  readonly url: string;
  output = '';
  private child: ChildProcess | undefined;

  private constructor(
    readonly userDir: string,
    readonly port: number,
    /** Made for this run (and removed by stop), or one the test prepared itself. */
    private readonly ownsUserDir: boolean,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  /** In a fresh user directory with this checkout linked in, as `npm install` from a folder would. */
  static async start(
    options: Omit<UserDirOptions, 'port'> = {},
    env: NodeJS.ProcessEnv = {},
  ): Promise<NodeRedProcess> {
    const userDir = await mkdtemp(path.join(tmpdir(), 'edge-llm-nr-'));
    const red = new NodeRedProcess(userDir, await freePort(), true);
    const settings = await prepareUserDir(userDir, { ...options, port: red.port });
    await red.launch(settings, env);
    return red;
  }

  /**
   * On a user directory whose node_modules an `npm install` filled: nothing is linked from this
   * checkout, so it loads exactly what was installed.
   */
  static async startInstalled(
    userDir: string,
    settings: Record<string, unknown> = {},
  ): Promise<NodeRedProcess> {
    const red = new NodeRedProcess(userDir, await freePort(), false);
    const file = path.join(userDir, 'settings.js');
    const all = { uiHost: '127.0.0.1', uiPort: red.port, flowFile: 'flows.json', ...settings };
    await writeFile(file, `module.exports = ${JSON.stringify(all, null, 2)};\n`);
    await red.launch(file, {});
    return red;
  }

  private async launch(settingsFile: string, env: NodeJS.ProcessEnv): Promise<void> {
    const child = spawn(
      process.execPath,
      [nodeRedLauncher(), '--userDir', this.userDir, '--settings', settingsFile],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...env },
      },
    );
    this.child = child;
    child.stdout?.on('data', (c: Buffer) => (this.output += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (this.output += c.toString()));
    const end = Date.now() + 60_000;
    while (!this.output.includes('Server now running')) {
      if (child.exitCode !== null || Date.now() > end) {
        throw new Error(`Node-RED did not start:\n${this.output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  get(route: string, accept = 'application/json'): Promise<Response> {
    return fetch(`${this.url}${route}`, { headers: { Accept: accept } });
  }

  /** The node sets a module brought into this Node-RED, as the editor's /nodes lists them. */
  async nodeSets(module: string): Promise<NodeSet[]> {
    const sets = (await (await this.get('/nodes')).json()) as NodeSet[];
    return sets.filter((s) => s.module === module);
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
    if (this.ownsUserDir) await rm(this.userDir, { recursive: true, force: true });
  }
}
