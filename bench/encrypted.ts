/**
 * Encrypted models at rest: what decrypting into memory adds to a load. Per model, interleaved
 * rounds load the plain file and its encrypted copy (a fresh in-process registry each, 1 thread)
 * and decrypt the copy alone; prints median [min–max] of the load times (the encrypted one with its
 * scrypt key derivation: each round encrypts anew, with a new salt), their ratio inside each round,
 * the decryption MB/s (the chunks alone, the key already derived) and encryption MB/s, and the longest event-loop block (10 ms gap monitor)
 * while each loads (the GGUF header is parsed on the event loop either way). Not a test.
 *
 *   npm run build && node dist/bench/encrypted.js [--rounds N] [--smol FILE] [--models A,B]
 */
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { RuntimeRegistry, decryptModelToRam, encryptModelFile } from '../lib/runtime';
import { gapMonitor } from '../test/support/gap-monitor';
import { benchModels, cell, machine, parseArgs, table } from './runtime';

const KEY = 'bench key';

async function loadMs(file: string, dir: string, modelKey?: string): Promise<number> {
  const registry = new RuntimeRegistry({ modelsDir: dir, gpu: false });
  const started = performance.now();
  const lease = registry.acquire({
    source: file,
    settings: { threads: 1, sequences: 1, contextSize: 256 },
    modelKey,
  });
  await lease.ready;
  const ms = performance.now() - started;
  await registry.close();
  return ms;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const rounds = Number(args.get('--rounds') ?? 3);
  const models = await benchModels(args);
  const ram = await mkdtemp('/dev/shm/edge-llm-bench-');
  const work = await mkdtemp(path.join(os.tmpdir(), 'edge-llm-bench-enc-'));
  console.log(
    `# Encrypted models: ${new Date().toISOString()}, ${machine()}, load ${os.loadavg()[0].toFixed(1)}\n`,
  );
  const rows: string[][] = [];
  try {
    for (const model of models) {
      const mb = statSync(model.path).size / 2 ** 20;
      const sealed = path.join(work, `${path.basename(model.path)}.enc`);
      const plain: number[] = [];
      const enc: number[] = [];
      const ratio: number[] = [];
      const decrypt: number[] = [];
      const encrypt: number[] = [];
      let block = 0;
      let blockPlain = 0;
      for (let r = 0; r < rounds; r++) {
        let t = performance.now();
        await encryptModelFile(model.path, sealed, KEY);
        encrypt.push(mb / ((performance.now() - t) / 1000));
        // The order alternates so that neither always runs on a warmer page cache.
        const plainLoad = async (): Promise<number> => {
          const monitor = gapMonitor();
          const ms = await loadMs(model.path, work);
          blockPlain = Math.max(blockPlain, monitor.stop());
          return ms;
        };
        const a = r % 2 === 0 ? await plainLoad() : undefined;
        const monitor = gapMonitor();
        process.env.EDGE_LLM_RAM_DIR = ram;
        const b = await loadMs(sealed, work, KEY);
        block = Math.max(block, monitor.stop());
        const c = a ?? (await plainLoad());
        plain.push(c);
        enc.push(b);
        ratio.push(b / c);
        // After the load: the key derived there is reused, so this is the chunks alone.
        t = performance.now();
        const out = await decryptModelToRam(sealed, KEY, { ramDir: ram });
        decrypt.push(mb / ((performance.now() - t) / 1000));
        await rm(out.path);
      }
      rows.push([
        model.label,
        mb.toFixed(1),
        cell(plain, 0),
        cell(enc, 0),
        cell(ratio, 2),
        cell(decrypt, 0),
        cell(encrypt, 0),
        String(blockPlain),
        String(block),
      ]);
      console.error(`${model.label} done`);
    }
  } finally {
    await rm(ram, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
  console.log(
    table(
      [
        'model',
        'MB',
        'load plain (ms)',
        'load encrypted (ms)',
        'encrypted / plain',
        'decrypt MB/s',
        'encrypt MB/s',
        'longest block plain (ms)',
        'longest block encrypted (ms)',
      ],
      rows,
    ),
  );
  console.log(
    `\n${rounds} rounds, load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' / ')} at the end.`,
  );
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
