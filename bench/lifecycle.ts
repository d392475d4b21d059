/**
 * Model update switch-over, in the runtime child process: how long an update takes from the call
 * to the switch (verify = sha256 of the file, load, health check), how many requests the old
 * version still finished after the switch, and what the clients felt: request latency before the
 * update and during it, under a steady load of concurrent clients. Not a test: prints markdown
 * tables (median [min–max] over rounds; each round updates A → B and rolls back B → A).
 *
 *   npm run build && node dist/bench/lifecycle.js [--rounds N] [--clients N] [--smol FILE]
 *
 * Models: stories260K (A) and the SmolLM2-135M-shaped Q8_0 model (B, 133 MB, synthesized into
 * bench/models/ when missing); also the two test models against each other.
 */
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  ModelLifecycle,
  RuntimeProcess,
  hashFile,
  installModelFile,
  type LlmRuntime,
  type UpdateResult,
} from '../lib/runtime';
import { testModel } from '../test/support/models';
import { benchModels, cell, machine, parseArgs, table } from './runtime';

interface Round {
  updateMs: number;
  checkMs: number;
  drained: number;
  rollbackMs: number;
  beforeP50: number;
  duringMax: number;
  failures: number;
  answered: number;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
}

async function pair(a: string, b: string, rounds: number, clients: number): Promise<Round[]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'edge-llm-bench-models-'));
  const rp = new RuntimeProcess({
    modelsDir: dir,
    gpu: false,
    onLog: (level, message) => console.error(`${level}: ${message}`),
  });
  const out: Round[] = [];
  // RuntimeProcess.close() waits for the child's exit with an unref'd timer, and a child without
  // leases is unref'd too: without this, the bench's process would end there, mid-run.
  const keepAlive = setInterval(() => undefined, 1000);
  try {
    await installModelFile(dir, { name: 'm', version: 'a' }, a);
    await installModelFile(dir, { name: 'm', version: 'b' }, b);
    const lc = new ModelLifecycle({
      registry: rp,
      source: 'm@a',
      modelsDir: dir,
      settings: { threads: 1, sequences: 2, contextSize: 512, queueLimit: 256 },
    });
    await lc.ready;
    for (let round = 0; round < rounds; round++) {
      const latencies: Array<{ at: number; ms: number }> = [];
      let failures = 0;
      let stop = false;
      const ask = async (): Promise<void> => {
        const runtime: LlmRuntime = lc.runtime ?? (await lc.ready);
        const started = performance.now();
        try {
          await runtime.complete('Once upon a time', { maxTokens: 16, timeoutMs: 120_000 });
          latencies.push({ at: started, ms: performance.now() - started });
        } catch {
          failures++;
        }
      };
      const load = Array.from({ length: clients }, async () => {
        while (!stop) await ask();
      });
      // A steady state first, then the update, then the rollback, each under the same load.
      await new Promise((r) => setTimeout(r, 1500));
      const updateAt = performance.now();
      const update: UpdateResult = await lc.update({ model: 'm@b' });
      const switchedAt = performance.now();
      await new Promise((r) => setTimeout(r, 500));
      const rollback = await lc.rollback();
      stop = true;
      await Promise.all(load);
      if (!update.ok || !rollback.ok)
        throw new Error(`update: ${update.reason}; rollback: ${rollback.reason}`);
      out.push({
        updateMs: update.ms,
        checkMs: update.check?.ms ?? NaN,
        drained: update.drained ?? 0,
        rollbackMs: rollback.ms,
        beforeP50: percentile(
          latencies.filter((l) => l.at < updateAt).map((l) => l.ms),
          50,
        ),
        duringMax: Math.max(
          ...latencies.filter((l) => l.at >= updateAt && l.at <= switchedAt).map((l) => l.ms),
        ),
        failures,
        answered: latencies.length,
      });
    }
    await lc.release();
  } finally {
    await rp.close();
    clearInterval(keepAlive);
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const rounds = Number(args.get('--rounds') ?? 3);
  const clients = Number(args.get('--clients') ?? 4);
  const [smol] = await benchModels(args);
  const stories = await testModel('stories');
  const tiny = await testModel('tinyRandom');
  console.log(`# Model update switch-over (${new Date().toISOString().slice(0, 10)}, ${machine()})\n`);
  console.log(
    `Runtime child process, 1 thread, 2 sequences; ${clients} clients asking 16 tokens each, again as soon as answered. ${rounds} rounds of update A → B, then rollback B → A.\n`,
  );

  const hashes: string[][] = [];
  for (const file of [stories, tiny, smol.path]) {
    const ms: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await hashFile(file);
      ms.push(performance.now() - t);
    }
    hashes.push([path.basename(file), String(statSync(file).size), cell(ms)]);
  }
  console.log('## sha256 verification (part of every load of a name@version)\n');
  console.log(table(['file', 'bytes', 'hash ms'], hashes));

  const rows: string[][] = [];
  for (const [a, b] of [
    [stories, tiny],
    [stories, smol.path],
  ]) {
    const r = await pair(a, b, rounds, clients);
    rows.push([
      `${path.basename(a)} → ${path.basename(b)}`,
      cell(
        r.map((x) => x.updateMs),
        0,
      ),
      cell(
        r.map((x) => x.checkMs),
        0,
      ),
      cell(
        r.map((x) => x.rollbackMs),
        0,
      ),
      cell(
        r.map((x) => x.drained),
        0,
      ),
      cell(
        r.map((x) => x.beforeP50),
        0,
      ),
      cell(
        r.map((x) => x.duringMax),
        0,
      ),
      String(r.reduce((n, x) => n + x.answered, 0)),
      String(r.reduce((n, x) => n + x.failures, 0)),
    ]);
  }
  console.log('\n## Update under load\n');
  console.log(
    'update ms: from the call to the switch (verify, load beside, health check); check ms: the health check alone; drained: requests the old version held at the switch and finished; latency: one request, before the update (p50) and the longest one started while the update ran.\n',
  );
  console.log(
    table(
      [
        'A → B',
        'update ms',
        'check ms',
        'rollback ms',
        'drained',
        'latency p50 before ms',
        'latency max during ms',
        'answered',
        'failed',
      ],
      rows,
    ),
  );
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      console.error(err);
      process.exit(1);
    },
  );
}
