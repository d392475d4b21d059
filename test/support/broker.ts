import * as net from 'node:net';
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
