import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * A full garbage collection before a memory reading, also when mocha runs without --expose-gc
 * (where `global.gc` is undefined and `global.gc?.()` does nothing): the flag is set at run time
 * and a fresh context is given the `gc` function it exposes.
 */
export function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}
