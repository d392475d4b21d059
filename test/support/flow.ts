import * as path from 'node:path';
import type { NodeInitializer } from 'node-red';
import helper from 'node-red-node-test-helper';

/** The Node-RED the flow tests run on: this package's dev dependency, or NODE_RED_PATH (the compat run). */
const nodeRedPath = process.env.NODE_RED_PATH ?? require.resolve('node-red');

export function initHelper(): typeof helper {
  helper.init(nodeRedPath);
  return helper;
}

/** A core node of the Node-RED under test, e.g. coreNode('common/25-catch.js'). */
export function coreNode(file: string): NodeInitializer {
  // The path depends on which Node-RED is under test, so it can only be required at run time.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(require.resolve(`@node-red/nodes/core/${file}`, { paths: [path.dirname(nodeRedPath)] }));
}

export function stopServer(): Promise<void> {
  return new Promise((resolve) => helper.stopServer(() => resolve()));
}

export { helper };

/** Resolves when `predicate` holds, polling; fails after `ms`. */
export async function until(predicate: () => boolean, ms = 30_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
