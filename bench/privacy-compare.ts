/**
 * privacy-guard, two builds on the same texts: whether a change meant to make detection faster
 * changed any finding. Each text (and each JSON value) goes through protect() of this build and of
 * another (DIR: its compiled root, the folder that holds lib/privacy/, e.g. main's build in a second
 * directory), with the person detector on the name lists, on rules only and off; the outputs and the
 * counts are compared. Prints per set and detector the texts compared and how many differ; the frozen
 * test half is compared in aggregate only (a count, never a text).
 * Run: npm run build && node dist/bench/privacy-compare.js --compare=DIR [--seeds=1,2,3]
 *      [--extra-seeds=20240602,1] [--show=N] (--show: the first N differing dev texts)
 */
import { resolve } from 'node:path';
import * as mine from '../lib/privacy';
import { EXTRA_LOCALES, generate, SEED, type Sample } from './privacy-data';
import { mixedText } from './privacy';

const arg = (name: string): string | undefined =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];

const dir = arg('compare');
if (!dir) {
  console.error(
    'usage: node dist/bench/privacy-compare.js --compare=DIR (the other build: holds lib/privacy/)',
  );
  process.exit(2);
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const other = require(resolve(dir, 'lib', 'privacy')) as typeof mine;
const list = (s: string | undefined, fallback: number[]): number[] =>
  s === undefined ? fallback : s.split(',').filter(Boolean).map(Number);
const seeds = list(arg('seeds'), [1, 2, 3]);
const extraSeeds = list(arg('extra-seeds'), [SEED, 1]);
const show = Number(arg('show') ?? 0);

type Item = { text?: string; value?: unknown };
const items = (samples: Sample[]): Item[] =>
  samples.map((s) => (s.text !== undefined ? { text: s.text } : { value: s.value }));
const generated = generate();
const sets: [string, Item[], boolean][] = [
  [`dev half, seed ${SEED}`, items(generated.filter((s) => s.half === 'dev')), true],
  ...seeds.map((seed): [string, Item[], boolean] => [
    `dev half, seed ${seed}`,
    items(generate(seed).filter((s) => s.half === 'dev')),
    true,
  ]),
  ...extraSeeds.map((seed): [string, Item[], boolean] => [
    `extra locales, seed ${seed}`,
    items(generate(seed, EXTRA_LOCALES).filter((s) => s.half === 'dev')),
    true,
  ]),
  ['test half (aggregate only)', items(generated.filter((s) => s.half === 'test')), false],
  ['bench text (2 M characters, one text)', [{ text: mixedText(2e6) }], true],
];

const out = (lib: typeof mine, guard: mine.PrivacyGuard, item: Item): string => {
  const r = guard.protect(item.text ?? item.value, new lib.Pseudonymizer());
  return JSON.stringify([r.value, r.counts, r.total]);
};

let texts = 0;
let differ = 0;
let shown = 0;
console.log('| set | person | texts | differing |\n|---|---|---|---|');
for (const person of ['names', 'rules', 'off'] as const) {
  const a = new mine.PrivacyGuard({ person, limits: { maxChars: 4_000_000 } });
  const b = new other.PrivacyGuard({ person, limits: { maxChars: 4_000_000 } });
  for (const [name, set, readable] of sets) {
    let n = 0;
    for (const item of set) {
      if (out(mine, a, item) === out(other, b, item)) continue;
      n++;
      if (readable && shown < show) {
        shown++;
        console.log(`${person}: ${JSON.stringify(item.text ?? item.value).slice(0, 400)}`);
      }
    }
    texts += set.length;
    differ += n;
    console.log(`| ${name} | ${person} | ${set.length} | ${n} |`);
  }
}
console.log(`\n${texts} comparisons (texts × detectors), ${differ} differing`);
process.exitCode = differ > 0 ? 1 : 0;
