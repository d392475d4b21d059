/**
 * The second run of the suite: the same compiled tests on Node-RED 5 under Node 22, from this
 * folder's own lockfile (installed on first use), while the first run used Node-RED 4 on Node 20.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..', '..');
const compat = path.join(root, 'test', 'compat');
const nodeRed = path.join(compat, 'node_modules', 'node-red');

if (!existsSync(path.join(nodeRed, 'package.json'))) {
  console.log('Installing Node-RED 5 and Node 22 for the compatibility run (test/compat)...');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: compat, stdio: 'inherit' });
}

// The binary itself, not node_modules/.bin/node: npm ci does not always link a bin called "node".
const node22 = path.join(compat, 'node_modules', `node-${process.platform}-${process.arch}`, 'bin', 'node');
if (!existsSync(node22)) {
  const binary = `node-${process.platform}-${process.arch}`;
  const listed = Object.keys(
    (JSON.parse(readFileSync(path.join(compat, 'package.json'), 'utf8')) as { optionalDependencies?: object })
      .optionalDependencies ?? {},
  );
  if (listed.includes(binary)) {
    // Listed for this platform but not installed: the run would be silently lost, so fail.
    console.error(`test/compat lists ${binary} but ${node22} is missing: the Node-RED 5 run cannot start.`);
    process.exit(1);
  }
  console.log(
    `No Node 22 binary for ${process.platform}-${process.arch} in test/compat: Node-RED 5 run skipped.`,
  );
  process.exit(0);
}

const version = execFileSync(node22, ['--version']).toString().trim();
console.log(`\nNode-RED 5 on Node ${version}:`);
const mocha = path.join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');
const run = spawnSync(
  node22,
  [mocha, ...(process.argv.slice(2).length ? process.argv.slice(2) : ['dist/test/**/*_spec.js'])],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, NODE_RED_PATH: require.resolve('node-red', { paths: [compat] }) },
  },
);
process.exit(run.status ?? 1);
