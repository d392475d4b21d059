import * as net from 'node:net';
import type { Aedes } from 'aedes' with { 'resolution-mode': 'import' };

/**
 * The demo's MQTT broker: aedes in this process, on 127.0.0.1 only. Aedes speaks MQTT 3.1.1, so
 * the demo's broker config nodes are set to protocol 3.1.1 (version 4) when deployed.
 */
export class DemoBroker {
  private constructor(
    private readonly aedes: Aedes,
    private readonly server: net.Server,
    private readonly sockets: Set<net.Socket>,
    readonly port: number,
  ) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Listens on `port` (0: any free port); with `fallback`, on any free port when `port` is taken. */
  static async start(port: number, fallback = false): Promise<DemoBroker> {
    // aedes is ESM-only: a real dynamic import, which the CommonJS output keeps.
    const { Aedes } = await import('aedes');
    const aedes = await Aedes.createBroker();
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.setNoDelay(true);
      socket.on('close', () => sockets.delete(socket));
      aedes.handle(socket);
    });
    const listen = (p: number) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(p, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    try {
      await listen(port);
    } catch (err) {
      if (!fallback || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        throw err;
      }
      await listen(0);
    }
    return new DemoBroker(aedes, server, sockets, (server.address() as net.AddressInfo).port);
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await closed;
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
  }
}
