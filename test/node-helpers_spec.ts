import assert from 'node:assert/strict';
import * as os from 'node:os';
import * as path from 'node:path';
import sinon from 'sinon';
import { i18n } from '@node-red/util';
import { formNumber } from '../nodes/form';
import { STATUS_MAX_CHARS, StatusThrottle, statusText } from '../nodes/status';
import { userDir } from '../lib/util/user-dir';

describe('node helpers', function () {
  describe('formNumber', function () {
    const problem = (raw: string) => `bad "${raw}"`;

    it('gives the fallback for blank, whitespace and absent fields', function () {
      for (const raw of [undefined, null, '', '   '])
        assert.equal(formNumber(raw, 7, { min: 1 }, problem), 7);
      assert.equal(formNumber('', undefined, { min: 1 }, problem), undefined);
    });

    it('accepts numbers in range, with blanks around them', function () {
      assert.equal(formNumber(' 3 ', 7, { min: 1, max: 3, whole: true }, problem), 3);
      assert.equal(formNumber('0.5', 7, { above: 0 }, problem), 0.5);
      assert.equal(formNumber(0, 7, { min: 0 }, problem), 0);
    });

    it('refuses text, out-of-range, not-whole and not-above values with the caller’s message', function () {
      const cases: Array<[unknown, Parameters<typeof formNumber>[2]]> = [
        ['abc', {}],
        ['Infinity', {}],
        ['0', { min: 1 }],
        ['65', { max: 64 }],
        ['1.5', { whole: true }],
        ['0', { above: 0 }],
      ];
      for (const [raw, range] of cases) {
        assert.throws(() => formNumber(raw, 1, range, problem), { message: `bad "${String(raw)}"` });
      }
    });
  });

  describe('statusText', function () {
    it('keeps a short text and cuts a long one to STATUS_MAX_CHARS and "…"', function () {
      assert.equal(statusText('error: no model'), 'error: no model');
      const long = `error: ${'x'.repeat(200)}`;
      const cut = statusText(long);
      assert.equal(cut, `${long.slice(0, STATUS_MAX_CHARS)}…`);
      assert.equal(cut.length, STATUS_MAX_CHARS + 1);
    });
  });

  describe('StatusThrottle', function () {
    let clock: sinon.SinonFakeTimers;
    beforeEach(() => (clock = sinon.useFakeTimers()));
    afterEach(() => clock.restore());

    it('shows the first change on the next turn, then at most once per interval, and always the last', function () {
      let shown = 0;
      const throttle = new StatusThrottle(() => shown++, 500);
      throttle.soon(0);
      assert.equal(shown, 0, 'not inside the caller');
      clock.tick(0);
      assert.equal(shown, 1);
      for (let i = 0; i < 10; i++) throttle.soon();
      clock.tick(499);
      assert.equal(shown, 1, 'within the interval');
      clock.tick(1);
      assert.equal(shown, 2, 'ten changes, one showing');
      clock.tick(5000);
      assert.equal(shown, 2, 'nothing more without a change');
    });

    it('now() shows at once and drops the waiting showing; close() stops everything', function () {
      let shown = 0;
      const throttle = new StatusThrottle(() => shown++, 500);
      throttle.now();
      throttle.soon();
      throttle.now();
      assert.equal(shown, 2);
      clock.tick(1000);
      assert.equal(shown, 2, 'the waiting showing was dropped');
      throttle.soon();
      throttle.close();
      throttle.soon();
      throttle.now();
      clock.tick(1000);
      assert.equal(shown, 2);
    });
  });

  describe('userDir', function () {
    it("is Node-RED's userDir, else ~/.node-red", function () {
      assert.equal(userDir({ userDir: '/srv/nr' }), '/srv/nr');
      assert.equal(userDir({}), path.join(os.homedir(), '.node-red'));
    });
  });

  describe('status wording (en-US)', function () {
    const locales = path.join(__dirname, '..', '..', 'nodes', 'locales');
    const t = (ns: string, key: string, params: object): string =>
      i18n._(`node-red-contrib-edge-llm/${ns}:${ns}.${key}`, params as Record<string, string | number>);

    before(async function () {
      (i18n as unknown as { init(settings: object): void }).init({ lang: 'en-US' });
      for (const ns of ['kv-session', 'llm-parse', 'llm-plan'])
        await i18n.registerMessageCatalog(`node-red-contrib-edge-llm/${ns}`, locales, `${ns}.json`);
    });

    it('says "1 session", "2 sessions", one step and steps, one message and messages', function () {
      assert.equal(t('kv-session', 'status.count', { count: 1 }), '1 session');
      assert.equal(t('kv-session', 'status.count', { count: 2 }), '2 sessions');
      assert.equal(t('kv-session', 'status.summary', { count: 1, states: 'Parse 1' }), '1 session · Parse 1');
      assert.equal(t('llm-plan', 'status.ok', { count: 1, ms: 5 }), '1 step in 5 ms');
      assert.equal(t('llm-plan', 'status.ok', { count: 3, ms: 5 }), '3 steps in 5 ms');
      assert.equal(t('llm-parse', 'status.working', { count: 1 }), 'parsing 1 message');
      assert.equal(t('llm-parse', 'status.working', { count: 2 }), 'parsing 2 messages');
      assert.equal(t('llm-plan', 'status.working', { count: 2 }), 'planning 2 missions');
    });
  });
});
