import * as assert from 'node:assert/strict';
import { eventually, NodeRedProcess } from './support/node-red-process';
import { testModel } from './support/models';

describe('the runtimes admin endpoint in a real Node-RED (runtime child process)', function () {
  this.timeout(120_000);
  let red: NodeRedProcess | undefined;

  before(async function () {
    const stories = await testModel('stories');
    red = await NodeRedProcess.start({
      flows: [
        {
          id: 'rt',
          type: 'llm-runtime',
          model: stories,
          threads: '1',
          sequences: '1',
          contextSize: '1048576',
        },
      ],
      // Anyone may read; nobody here may write (no user can log in).
      settings: { adminAuth: { type: 'credentials', users: [], default: { permissions: 'read' } } },
    });
  });
  after(async () => red?.stop());

  it('lists the runtime with the context it really has; a probe needs the write permission', async function () {
    const [info] = await eventually('the runtime ready', 60_000, async () => {
      const infos = (await (await red!.get('/edge-llm/runtimes')).json()) as Array<{
        state: string;
        process: string;
        settings: { contextSize: number };
      }>;
      return infos[0]?.state === 'ready' ? infos : undefined;
    });
    assert.equal(info.process, 'child');
    assert.equal(info.settings.contextSize, 2048, 'asked 1,048,576; the model caps it at 2,048');
    const probe = await red!.get('/edge-llm/runtimes?probe=1');
    assert.ok(probe.status === 401 || probe.status === 403, `a read-only caller got ${probe.status}`);
    assert.match(red!.output, /model ready/);
  });
});
