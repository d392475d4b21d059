/**
 * Recall and precision of privacy-guard's detectors per entity type on the hand-labelled set.
 * Run: npm run build && node dist/bench/privacy-eval.js [--person=compromise|rules|off] [--misses]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrivacyGuard, type GuardConfig } from '../lib/privacy';
import { evaluate, formatScores, type LabelledSet } from '../lib/privacy/evaluate';

const fixture = join(__dirname, '..', '..', 'test', 'fixtures', 'privacy-labelled.json');
const set = JSON.parse(readFileSync(fixture, 'utf8')) as LabelledSet & { options: GuardConfig };
const arg = (name: string): string | undefined =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];

const detectors = arg('person') ? [arg('person')] : ['compromise', 'rules'];
for (const person of detectors) {
  const guard = new PrivacyGuard({ ...set.options, person: person as GuardConfig['person'] });
  const started = process.hrtime.bigint();
  const scores = evaluate(guard, set);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  console.log(
    `\nperson detector: ${person}  (${set.samples.length} texts + ${set.json?.length ?? 0} JSON values, ${ms.toFixed(0)} ms)\n`,
  );
  console.log(formatScores(scores));
  if (process.argv.includes('--misses')) {
    for (const s of set.samples) {
      const found = guard.detect(s.text);
      const missed = s.entities.filter(
        (e) => !found.some((f) => f.type === e.type && f.value.includes(e.value.slice(0, 3))),
      );
      const extra = found.filter(
        (f) =>
          !s.entities.some(
            (e) => e.type === f.type && (e.value.includes(f.value) || f.value.includes(e.value)),
          ),
      );
      if (missed.length || extra.length) {
        console.log('\n' + s.text);
        for (const m of missed) console.log(`  MISSED ${m.type} ${JSON.stringify(m.value)}`);
        for (const x of extra) console.log(`  EXTRA  ${x.type}/${x.rule} ${JSON.stringify(x.value)}`);
      }
    }
  }
}
