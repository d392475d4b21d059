/**
 * What privacy-guard hides, per entity type, on three sets reported apart: the generated dev half
 * (the rules were tuned on it), the generated test half (frozen before tuning: the number that
 * counts) and the hand-written fixture test/fixtures/privacy-labelled.json.
 * Run: npm run build && node dist/bench/privacy-eval.js [--set=dev|test|fixture|extra] [--seed=N]
 *      [--person=names|rules|off] [--misses[=N]] [--type=PERSON]
 * --set=extra: the dev families in EXTRA_LOCALES (locales of neither half), for dev checks of how far
 * a change holds; --seed: another seed for the dev half and the extra locales (never the test half).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrivacyGuard, type GuardConfig } from '../lib/privacy';
import { evaluate, formatScores, type LabelledSet, type Miss } from '../lib/privacy/evaluate';
import { EXTRA_LOCALES, generate, SEED, type Sample } from './privacy-data';

const arg = (name: string): string | undefined =>
  process.argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`))?.split('=')[1] ??
  (process.argv.includes(`--${name}`) ? '' : undefined);

const fixture = JSON.parse(
  readFileSync(join(__dirname, '..', '..', 'test', 'fixtures', 'privacy-labelled.json'), 'utf8'),
) as LabelledSet & { options: GuardConfig };

function labelled(samples: Sample[]): LabelledSet {
  return {
    samples: samples
      .filter((s) => s.text !== undefined)
      .map((s) => ({ text: s.text as string, entities: s.entities })),
    json: samples.filter((s) => s.text === undefined).map((s) => ({ value: s.value, entities: s.entities })),
  };
}

const only = arg('set');
// Other seeds and the extra locales write dev families only; the test half is always SEED's.
const seed = Number(arg('seed') ?? SEED);
const generated = generate();
const devGenerated = seed === SEED ? generated : generate(seed);
const sets: [string, LabelledSet, GuardConfig][] = [
  ['dev', labelled(devGenerated.filter((s) => s.half === 'dev')), {}],
  ['test', labelled(generated.filter((s) => s.half === 'test')), {}],
  ['fixture', fixture, fixture.options],
];
if (only === 'extra')
  sets.push(['extra', labelled(generate(seed, EXTRA_LOCALES).filter((s) => s.half === 'dev')), {}]);
const person = arg('person') as GuardConfig['person'] | undefined;

for (const [name, set, options] of sets) {
  if (only && only !== name) continue;
  const guard = new PrivacyGuard({ ...options, ...(person ? { person } : {}) });
  const started = process.hrtime.bigint();
  const misses: Miss[] = [];
  const scores = evaluate(guard, set, misses);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const texts = set.samples.length + (set.json?.length ?? 0);
  const title =
    name === 'dev'
      ? `generated, dev half (rules tuned on it), seed ${seed}`
      : name === 'test'
        ? 'generated, test half (frozen before tuning)'
        : name === 'extra'
          ? `generated, dev families in ${EXTRA_LOCALES.length} locales of neither half, seed ${seed}`
          : 'hand-written fixture';
  console.log(`\n${title}: ${texts} texts, ${ms.toFixed(0)} ms\n`);
  console.log(formatScores(scores));
  const oov = evaluate(guard, set, undefined, (e) => e.oov === true).find((s) => s.type === 'PERSON');
  if (oov && oov.expected > 0)
    console.log(
      `\nPERSON names in no list (made-up, found by context alone): ${oov.hidden}/${oov.expected} hidden, ${oov.partly} partly`,
    );
  if (arg('misses') !== undefined && name !== 'test') {
    const limit = Number(arg('misses')) || 200;
    const type = arg('type');
    let shown = 0;
    for (const m of misses) {
      const missed = m.missed.filter((x) => !type || x.type === type);
      const extra = m.extra.filter((x) => !type || x.type === type);
      if (!missed.length && !extra.length) continue;
      if (shown++ >= limit) break;
      console.log('\n' + m.text);
      for (const x of missed)
        console.log(`  ${x.partly ? 'PARTLY' : 'MISSED'} ${x.type} ${JSON.stringify(x.value)}`);
      for (const x of extra) console.log(`  EXTRA  ${x.type}/${x.rule} ${JSON.stringify(x.value)}`);
    }
  }
}
