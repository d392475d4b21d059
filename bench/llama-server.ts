/**
 * llama.cpp's `llama-server`, built once from the llama.cpp source that node-llama-cpp ships
 * (`node_modules/node-llama-cpp/llama/gitRelease.bundle`) into a cache folder outside git:
 * `$EDGE_LLM_CACHE_DIR` or `~/.cache/edge-llm`, then `llama-server-<node-llama-cpp version>/llama-server`.
 * The remote-backend test and bench run it as the "OpenAI-compatible server on the site's network".
 *
 *   npm run build && node dist/bench/llama-server.js          # build (when missing) and print the path
 *   node dist/bench/llama-server.js --check                   # print the path, or why there is none
 *
 * Needs git, cmake and a C++ compiler; about 6 minutes on 2 cores (`nice`d, so it yields to other work).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** node-llama-cpp's package folder (its `exports` hide package.json from require.resolve). */
const NLC_DIR =
  (require.resolve.paths('node-llama-cpp') ?? [])
    .map((dir) => path.join(dir, 'node-llama-cpp'))
    .find((dir) => existsSync(path.join(dir, 'package.json'))) ?? 'node_modules/node-llama-cpp';

export function nodeLlamaCppVersion(): string {
  return (JSON.parse(readFileSync(path.join(NLC_DIR, 'package.json'), 'utf8')) as { version: string })
    .version;
}

export function llamaServerDir(): string {
  const base = process.env.EDGE_LLM_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'edge-llm');
  return path.join(base, `llama-server-${nodeLlamaCppVersion()}`);
}

/** Where the built binary lives (it may not exist yet). */
export function llamaServerPath(): string {
  return path.join(llamaServerDir(), 'llama-server');
}

/** The build tools that are missing on this machine (empty when a build can run). */
export function missingBuildTools(): string[] {
  const has = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
  const missing: string[] = [];
  if (!has('git')) missing.push('git');
  if (!has('cmake')) missing.push('cmake');
  if (!has('c++') && !has('g++') && !has('clang++')) missing.push('a C++ compiler (c++, g++ or clang++)');
  if (!existsSync(path.join(NLC_DIR, 'llama', 'gitRelease.bundle')))
    missing.push('node-llama-cpp/llama/gitRelease.bundle');
  return missing;
}

function run(cmd: string, args: string[], cwd: string, log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (chunk: Buffer): void => {
      tail = (tail + chunk.toString()).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) return resolve();
      log(tail);
      reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`})`));
    });
  });
}

/**
 * gcc 12 drops the stores that fill the AMX tile-config struct before `ldtilecfg`, so on CPUs with AMX
 * every prompt with Q4_0/Q8_0 weights dies with SIGILL. A compiler barrier keeps the stores (see
 * ../shared/perf-anchor/README.md). Harmless elsewhere.
 */
async function patchAmxTileConfig(src: string): Promise<void> {
  const file = path.join(src, 'ggml', 'src', 'ggml-cpu', 'amx', 'mmq.cpp');
  if (!existsSync(file)) return;
  const text = await fs.readFile(file, 'utf8');
  const line = '    _tile_loadconfig(&tc);';
  if (!text.includes(line) || text.includes('__asm__ __volatile__("" : : "r"(&tc) : "memory");')) return;
  await fs.writeFile(
    file,
    text.replace(line, `    __asm__ __volatile__("" : : "r"(&tc) : "memory");\n${line}`),
  );
}

/**
 * The cached llama-server, built first where missing. Concurrent callers (two test runs) share one
 * build through a lock folder; the binary appears by rename, so a half-written file is never used.
 */
export async function ensureLlamaServer(
  opts: { jobs?: number; log?: (line: string) => void } = {},
): Promise<string> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const binary = llamaServerPath();
  if (existsSync(binary)) return binary;
  const missing = missingBuildTools();
  if (missing.length) throw new Error(`cannot build llama-server: missing ${missing.join(', ')}`);
  const dir = llamaServerDir();
  await fs.mkdir(dir, { recursive: true });
  const lock = path.join(dir, 'build.lock');
  for (;;) {
    try {
      await fs.mkdir(lock);
      break;
    } catch {
      // Another process builds; a lock older than 30 minutes is left over from a killed build.
      const age = Date.now() - (await fs.stat(lock).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (age > 30 * 60_000) await fs.rm(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 2000));
      if (existsSync(binary)) return binary;
    }
  }
  const work = path.join(dir, `build-${process.pid}`);
  const started = Date.now();
  try {
    if (existsSync(binary)) return binary;
    const jobs = opts.jobs ?? Math.max(1, os.availableParallelism());
    log(`building llama-server from node-llama-cpp ${nodeLlamaCppVersion()}'s llama.cpp source into ${dir}`);
    log(`(one time, about 6 minutes on 2 cores; ${jobs} jobs, niced)`);
    await fs.rm(work, { recursive: true, force: true });
    const bundle = path.join(NLC_DIR, 'llama', 'gitRelease.bundle');
    await run('git', ['clone', '--quiet', bundle, work], dir, log);
    await patchAmxTileConfig(work);
    await run(
      'cmake',
      [
        '-S',
        '.',
        '-B',
        'build',
        '-DCMAKE_BUILD_TYPE=Release',
        '-DGGML_NATIVE=ON',
        '-DBUILD_SHARED_LIBS=OFF',
        '-DLLAMA_CURL=OFF',
        '-DLLAMA_BUILD_TESTS=OFF',
        '-DLLAMA_BUILD_EXAMPLES=OFF',
        '-DLLAMA_BUILD_TOOLS=ON',
        '-DLLAMA_BUILD_SERVER=ON',
      ],
      work,
      log,
    );
    await run(
      'nice',
      ['-n', '10', 'cmake', '--build', 'build', '-j', String(jobs), '--target', 'llama-server'],
      work,
      log,
    );
    const built = path.join(work, 'build', 'bin', 'llama-server');
    await fs.copyFile(built, `${binary}.tmp`);
    await fs.chmod(`${binary}.tmp`, 0o755);
    await fs.rename(`${binary}.tmp`, binary);
    log(`llama-server built in ${((Date.now() - started) / 60_000).toFixed(1)} min: ${binary}`);
    return binary;
  } finally {
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(lock, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const check = process.argv.includes('--check');
  if (check) {
    const binary = llamaServerPath();
    if (existsSync(binary)) console.log(binary);
    else {
      const missing = missingBuildTools();
      console.log(
        missing.length
          ? `no llama-server at ${binary}, and it cannot be built here: missing ${missing.join(', ')}`
          : `no llama-server at ${binary} yet; run without --check to build it`,
      );
      process.exitCode = 1;
    }
  } else {
    ensureLlamaServer().then(
      (binary) => console.log(binary),
      (err: Error) => {
        console.error(err.message);
        process.exitCode = 1;
      },
    );
  }
}
