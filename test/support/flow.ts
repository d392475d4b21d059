import * as path from 'node:path';
import { once } from 'node:events';
import type { Node, NodeInitializer, NodeMessage } from 'node-red';
import type { SinonSpy } from 'sinon';
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

export type Msg = NodeMessage & Record<string, unknown>;

/** Messages that reach a helper node, awaited by count. */
export function collect(node: Node) {
  const messages: Msg[] = [];
  node.on('input', (msg: Msg) => {
    messages.push(msg);
    node.emit('collected');
  });
  return {
    messages,
    async until(count: number) {
      while (messages.length < count) await once(node, 'collected');
    },
  };
}

/** Calls of a helper spy made by one node (the spies sit on Node.prototype). */
export const callsBy = (spy: SinonSpy, node: Node) => spy.getCalls().filter((c) => c.thisValue === node);
