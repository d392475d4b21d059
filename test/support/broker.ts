import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Aedes } from 'aedes' with { 'resolution-mode': 'import' };

/**
 * A real MQTT broker (aedes, in this process) on a loopback TCP port. `stop()` cuts every client
 * off as a crashed broker would; `start()` again listens on the same port, so clients reconnect to
 * the URL they were given. Aedes speaks MQTT 3.1.1 only (MQTT 5 is on its road map), so the
 * clients that use it connect with protocol version 4.
 */
export class TestBroker {
  port = 0;
  private aedes: Aedes | undefined;
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.server !== undefined;
  }

  static async start(): Promise<TestBroker> {
    const broker = new TestBroker();
    await broker.start();
    return broker;
  }

  async start(): Promise<void> {
    if (this.server) return;
    // aedes is ESM-only: a real dynamic import, which the CommonJS output keeps.
    const { Aedes } = await import('aedes');
    const aedes = await Aedes.createBroker();
    const server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.setNoDelay(true);
      socket.on('close', () => this.sockets.delete(socket));
      aedes.handle(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.aedes = aedes;
    this.server = server;
  }

  async stop(): Promise<void> {
    const { server, aedes } = this;
    if (!server || !aedes) return;
    this.server = undefined;
    this.aedes = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await closed;
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
}

/**
 * Mosquitto, where it is installed, as a second broker for what aedes cannot do: MQTT 5 properties
 * end to end. `start()` resolves undefined when there is no `mosquitto` binary on the PATH.
 */
export class MosquittoBroker {
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
    private readonly dir: string,
  ) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<MosquittoBroker | undefined> {
    const binary = ['/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto', '/opt/homebrew/sbin/mosquitto']
      .concat((process.env.PATH ?? '').split(path.delimiter).map((d) => path.join(d, 'mosquitto')))
      .find((p) => existsSync(p));
    if (!binary) return undefined;
    const port = await freePort();
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mosquitto-'));
    const conf = path.join(dir, 'mosquitto.conf');
    await fs.writeFile(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
    const child = spawn(binary, ['-c', conf], { stdio: 'ignore' });
    const broker = new MosquittoBroker(port, child, dir);
    for (let i = 0; i < 100; i++) {
      if (await canConnect(port)) return broker;
      await new Promise((r) => setTimeout(r, 50));
    }
    await broker.stop();
    throw new Error(`mosquitto did not listen on port ${port}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      await exited;
    }
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
