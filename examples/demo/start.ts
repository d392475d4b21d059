/**
 * `npm start`: Node-RED on 127.0.0.1 with this package and every example flow deployed.
 * Ctrl-C stops it cleanly.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT, exampleFlows, nodeRedLauncher, prepareUserDir } from './userdir';

async function main(): Promise<void> {
  const port = Number(process.env.PORT ?? 1880);
  const userDir = process.env.EDGE_LLM_DEMO_DIR ?? path.join(PACKAGE_ROOT, '.node-red-demo');
  const shared = path.resolve(PACKAGE_ROOT, '..', 'shared', 'models');
  const modelsDir =
    process.env.EDGE_LLM_MODELS_DIR ?? (existsSync(shared) ? shared : path.join(userDir, 'models'));
  // Where only the tiny test models exist (no network to fetch the default), run the demo on one.
  const model =
    process.env.EDGE_LLM_MODEL ??
    (existsSync(path.join(modelsDir, 'stories260K.gguf')) ? 'stories260K.gguf' : undefined);

  const flows = (await exampleFlows()).map((n) =>
    model && (n as { type?: string }).type === 'llm-runtime' ? { ...n, model } : n,
  );
  const settings = await prepareUserDir(userDir, { port, flows });

  console.log(`edge-llm demo: Node-RED user directory ${userDir}`);
  console.log(`models from ${modelsDir}${model ? `, every runtime on ${model}` : ''}`);
  console.log(`${flows.length} nodes from examples/ deployed`);

  const child = spawn(process.execPath, [nodeRedLauncher(), '--userDir', userDir, '--settings', settings], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, EDGE_LLM_MODELS_DIR: modelsDir },
  });
  child.stdout.on('data', (chunk: Buffer) => {
    process.stdout.write(chunk);
    if (chunk.toString().includes('Server now running')) {
      console.log(`\n  Editor:   http://127.0.0.1:${port}/`);
      console.log(`  Runtimes: http://127.0.0.1:${port}/edge-llm/runtimes?probe=1`);
      console.log('  Watch the debug sidebar; Ctrl-C stops everything.\n');
    }
  });
  const stop = (): void => {
    child.kill('SIGINT');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  child.on('exit', (code) => process.exit(code ?? 0));
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
