import { createCipheriv, createHash, randomBytes } from 'node:crypto';
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
  /** Credentials of the deployed nodes, by node id: written encrypted, never into flows.json. */
  credentials?: Record<string, Record<string, string>>;
}

/** The demo's credentialSecret: its credentials are throwaway, and a fixed secret keeps restarts quiet. */
const CREDENTIAL_SECRET = 'edge-llm-demo';

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
    credentialSecret: CREDENTIAL_SECRET,
    // File nodes with a relative path write into the user directory, next to the flows.
    fileWorkingDirectory: dir,
    editorTheme: { tours: false, projects: { enabled: false } },
    // A gateway is often offline, and the demo should open on the flows, not on a consent dialog.
    telemetry: { enabled: false, updateNotification: false },
    ...options.settings,
  };
  const settingsFile = path.join(dir, 'settings.js');
  await writeFile(settingsFile, `module.exports = ${JSON.stringify(settings, null, 2)};\n`);
  if (options.flows) await writeFile(path.join(dir, 'flows.json'), JSON.stringify(options.flows, null, 2));
  if (options.credentials) {
    await writeFile(
      path.join(dir, 'flows_cred.json'),
      JSON.stringify(encryptCredentials(options.credentials)),
      {
        mode: 0o600,
      },
    );
  }
  return settingsFile;
}

/** As Node-RED stores credentials: AES-256-CTR keyed by the sha256 of credentialSecret. */
function encryptCredentials(credentials: object): { $: string } {
  const key = createHash('sha256').update(CREDENTIAL_SECRET).digest();
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  const text = cipher.update(JSON.stringify(credentials), 'utf8', 'base64') + cipher.final('base64');
  return { $: iv.toString('hex') + text };
}

/**
 * Every flow in examples/, each on its own tab, ready to deploy side by side. A config node that
 * several examples share (the one model runtime; the dashboard's ui-base, ui-theme and Approvals
 * ui-page) is in each file with the same id and content, as the editor's import reuses it; here it
 * is deployed once. The same id with other content is an error in the examples.
 */
export async function exampleFlows(): Promise<object[]> {
  const dir = path.join(PACKAGE_ROOT, 'examples');
  if (!existsSync(dir)) return [];
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  const flows = new Map<string, { node: object; file: string }>();
  for (const file of files) {
    for (const node of JSON.parse(await readFile(path.join(dir, file), 'utf8')) as Array<{ id: string }>) {
      const seen = flows.get(node.id);
      if (seen && JSON.stringify(seen.node) !== JSON.stringify(node)) {
        throw new Error(
          `examples/${file}: node ${node.id} differs from the one with that id in ${seen.file}`,
        );
      }
      if (!seen) flows.set(node.id, { node, file });
    }
  }
  return [...flows.values()].map((f) => f.node);
}

/** Where Node-RED's launcher is for the Node-RED in use (NODE_RED_PATH for the Node-RED 5 run). */
export function nodeRedLauncher(): string {
  const main = process.env.NODE_RED_PATH ?? require.resolve('node-red');
  return path.join(path.dirname(main), '..', 'red.js');
}
