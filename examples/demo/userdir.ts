import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import * as path from 'node:path';

/** The package's root (this file runs from dist/examples/demo). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

export interface UserDirOptions {
  port: number;
  /** Flows to deploy; omitted: keep whatever flows.json holds. */
  flows?: object[];
  /** Extra settings for settings.js, as JSON values. */
  settings?: Record<string, unknown>;
}

/**
 * A Node-RED user directory with this package installed the way `npm install` would (a link in
 * node_modules), bound to 127.0.0.1 on the given port.
 */
export async function prepareUserDir(dir: string, options: UserDirOptions): Promise<string> {
  await mkdir(path.join(dir, 'node_modules'), { recursive: true });
  const pkg = JSON.parse(await readFile(path.join(PACKAGE_ROOT, 'package.json'), 'utf8'));
  const link = path.join(dir, 'node_modules', pkg.name);
  await rm(link, { force: true, recursive: true });
  await symlink(PACKAGE_ROOT, link, 'dir');
  await writeFile(
    path.join(dir, 'package.json'),
    JSON.stringify(
      { name: 'edge-llm-demo', private: true, dependencies: { [pkg.name]: `file:${PACKAGE_ROOT}` } },
      null,
      2,
    ),
  );
  const settings = {
    uiHost: '127.0.0.1',
    uiPort: options.port,
    flowFile: 'flows.json',
    // The demo's credentials are throwaway: a fixed secret keeps restarts quiet.
    credentialSecret: 'edge-llm-demo',
    editorTheme: { tours: false, projects: { enabled: false } },
    ...options.settings,
  };
  const settingsFile = path.join(dir, 'settings.js');
  await writeFile(settingsFile, `module.exports = ${JSON.stringify(settings, null, 2)};\n`);
  if (options.flows) await writeFile(path.join(dir, 'flows.json'), JSON.stringify(options.flows, null, 2));
  return settingsFile;
}

/** Every flow in examples/, each on its own tab, ready to deploy side by side. */
export async function exampleFlows(): Promise<object[]> {
  const dir = path.join(PACKAGE_ROOT, 'examples');
  if (!existsSync(dir)) return [];
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  const flows: object[] = [];
  for (const file of files) flows.push(...JSON.parse(await readFile(path.join(dir, file), 'utf8')));
  return flows;
}

/** Where Node-RED's launcher is for the Node-RED in use (NODE_RED_PATH for the Node-RED 5 run). */
export function nodeRedLauncher(): string {
  const main = process.env.NODE_RED_PATH ?? require.resolve('node-red');
  return path.join(path.dirname(main), '..', 'red.js');
}
