import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { nodeRedLauncher, prepareUserDir, type UserDirOptions } from '../../examples/demo/userdir';

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

/** A real Node-RED in its own process, with this package installed in a fresh user directory. */
export class NodeRedProcess {
  readonly url: string;
  output = '';
  private child: ChildProcess | undefined;

  private constructor(
    readonly userDir: string,
    readonly port: number,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  static async start(
    options: Omit<UserDirOptions, 'port'> = {},
    env: NodeJS.ProcessEnv = {},
  ): Promise<NodeRedProcess> {
    const userDir = await mkdtemp(path.join(tmpdir(), 'edge-llm-nr-'));
    const red = new NodeRedProcess(userDir, await freePort());
    const settings = await prepareUserDir(userDir, { ...options, port: red.port });
    red.child = spawn(process.execPath, [nodeRedLauncher(), '--userDir', userDir, '--settings', settings], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
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
    await rm(this.userDir, { recursive: true, force: true });
  }
}
