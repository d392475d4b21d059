import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';

/** A free TCP port on loopback (closed again at once). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A real llama-server on a loopback port, serving one model. */
export class LlamaServer {
  private log = '';

  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
  ) {
    const keep = (chunk: Buffer): void => {
      this.log = (this.log + chunk.toString()).slice(-8000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  static async start(binary: string, model: string, args: string[] = []): Promise<LlamaServer> {
    const port = await freePort();
    const child = spawn(
      binary,
      [
        '-m',
        model,
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '-t',
        '1',
        '-c',
        '2048',
        '-np',
        '2',
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const server = new LlamaServer(`http://127.0.0.1:${port}`, child);
    const end = Date.now() + 60_000;
    while (Date.now() < end) {
      if (child.exitCode !== null) break;
      const ok = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return server;
      await new Promise((r) => setTimeout(r, 100));
    }
    const log = server.log;
    await server.stop();
    throw new Error(`llama-server did not become healthy on port ${port}:\n${log}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

export type ProxyMode =
  /** Forward as is. */
  | { kind: 'pass' }
  /** Answer this many requests with HTTP 503 (as llama-server does while loading), then forward. */
  | { kind: 'fail'; status: number; times: number }
  /** Accept the request and never answer. */
  | { kind: 'stall' }
  /** Forward, but cut the connection after the first streamed token reached the client. */
  | { kind: 'cut' };

/**
 * A tiny HTTP proxy in front of the real server that injects faults, and records what the client
 * sent (paths and JSON bodies) and how its connections ended.
 */
export class FaultProxy {
  mode: ProxyMode = { kind: 'pass' };
  readonly requests: { path: string; body: Record<string, unknown> | undefined; authorization?: string }[] =
    [];
  /** Requests whose client went away before the answer ended (an abort reached the wire). */
  clientAborts = 0;
  private readonly sockets = new Set<net.Socket>();

  private server!: http.Server;
  url = '';

  static async start(upstream: string): Promise<FaultProxy> {
    const target = new URL(upstream);
    const proxy = new FaultProxy();
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        let body: Record<string, unknown> | undefined;
        try {
          body = raw.length ? (JSON.parse(raw.toString()) as Record<string, unknown>) : undefined;
        } catch {
          body = undefined;
        }
        proxy.requests.push({ path: req.url ?? '', body, authorization: req.headers.authorization });
        let ended = false;
        res.on('finish', () => (ended = true));
        res.on('close', () => {
          if (!ended) proxy.clientAborts++;
        });
        const mode = proxy.mode;
        if (mode.kind === 'fail' && mode.times > 0) {
          mode.times--;
          res.writeHead(mode.status, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              error: { code: mode.status, message: 'Loading model', type: 'unavailable_error' },
            }),
          );
          return;
        }
        if (mode.kind === 'stall') return;
        const up = http.request(
          {
            host: target.hostname,
            port: target.port,
            path: req.url,
            method: req.method,
            headers: { ...req.headers, host: target.host },
          },
          (upRes) => {
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.on('data', (chunk: Buffer) => {
              res.write(chunk);
              if (mode.kind === 'cut' && /"(content|text)":"[^"]/.test(chunk.toString())) {
                // The client gets what was written, then the connection ends mid-answer.
                upRes.destroy();
                res.socket?.end();
              }
            });
            upRes.on('end', () => res.end());
            upRes.on('error', () => res.destroy());
          },
        );
        up.on('error', () => res.destroy());
        res.on('close', () => up.destroy());
        up.end(raw);
      });
    });
    server.on('connection', (s: net.Socket) => {
      proxy.sockets.add(s);
      s.on('close', () => proxy.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    proxy.server = server;
    proxy.url = `http://127.0.0.1:${port}`;
    return proxy;
  }

  /** Requests to the generation endpoints (not the health checks). */
  get generations(): FaultProxy['requests'] {
    return this.requests.filter((r) => r.path.includes('completions'));
  }

  reset(mode: ProxyMode = { kind: 'pass' }): void {
    this.mode = mode;
    this.requests.length = 0;
    this.clientAborts = 0;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
