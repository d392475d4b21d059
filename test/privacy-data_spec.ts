import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as sinon from 'sinon';
import { familyHalves, generate, halfHash, LOCALES, REF_DATE, SEED } from '../bench/privacy-data';

const lock = JSON.parse(
  readFileSync(join(__dirname, '..', '..', 'bench', 'privacy-data.lock.json'), 'utf8'),
) as {
  seed: number;
  refDate: string;
  fakerVersion: string;
  libphonenumberVersion: string;
  testSha256: string;
  testFamilies: string[];
};

describe('privacy: generated evaluation set', function () {
  this.timeout(60_000);
  const samples = generate(SEED);

  it('has at least 2,000 labelled texts in at least 10 locales, every category in both halves', function () {
    assert.ok(samples.length >= 2000, `${samples.length} samples`);
    assert.ok(new Set(samples.map((s) => s.locale)).size >= 10);
    assert.ok(LOCALES.length >= 10);
    for (const half of ['dev', 'test'] as const) {
      const categories = new Set(samples.filter((s) => s.half === half).map((s) => s.category));
      assert.deepEqual([...categories].sort(), [...new Set(samples.map((s) => s.category))].sort(), half);
    }
    assert.ok(samples.reduce((n, s) => n + s.entities.length, 0) >= 5000);
  });

  it('splits by template family: no family is in both halves', function () {
    const halves = familyHalves();
    for (const s of samples) assert.equal(s.half, halves.get(s.family), s.id);
  });

  it('the test half is the frozen one (bench/privacy-data.lock.json)', function () {
    // A different faker or libphonenumber-js writes different data: say so rather than a bare hash.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    assert.equal(require('@faker-js/faker/package.json').version, lock.fakerVersion);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    assert.equal(require('libphonenumber-js/package.json').version, lock.libphonenumberVersion);
    assert.equal(lock.seed, SEED);
    assert.equal(lock.refDate, REF_DATE.toISOString());
    assert.deepEqual(
      [...familyHalves()].filter(([, h]) => h === 'test').map(([f]) => f),
      lock.testFamilies,
    );
    assert.equal(halfHash(samples, 'test'), lock.testSha256);
  });

  it('is the same on every run, on any day', function () {
    assert.equal(halfHash(generate(SEED), 'dev'), halfHash(samples, 'dev'));
    // Birth dates are drawn relative to a fixed reference date, not to today.
    const clock = sinon.useFakeTimers({ now: new Date('2031-07-15T03:00:00Z'), toFake: ['Date'] });
    try {
      assert.equal(halfHash(generate(SEED), 'test'), lock.testSha256);
    } finally {
      clock.restore();
    }
  });
});
