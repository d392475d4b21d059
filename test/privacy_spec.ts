import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  auditRecord,
  auditRecordAsync,
  BlockedError,
  ENTITY_TYPES,
  JsonLinesAuditWriter,
  keyedHash,
  maskValue,
  PrivacyGuard,
  Pseudonymizer,
  restoreText,
  stableStringify,
  type GuardConfig,
  type Operator,
} from '../lib/privacy';
import { cardIssuerKnown, luhnValid, usSsnValid } from '../lib/privacy/checksums';
import { evaluate, formatScores, type LabelledSet } from '../lib/privacy/evaluate';
import { resolveOverlaps } from '../lib/privacy/detectors';
import {
  CUE_OTHER_FIRST,
  cueGapEnd,
  keyEnd,
  patternGapEnd,
  patternRunEnd,
  plainRunEnd,
} from '../lib/privacy/person';
import { SessionMaps } from '../lib/privacy/sessions';
import type { Finding } from '../lib/privacy/types';
import { generate, type Sample } from '../bench/privacy-data';

const fixture = JSON.parse(
  readFileSync(join(__dirname, '..', '..', 'test', 'fixtures', 'privacy-labelled.json'), 'utf8'),
) as LabelledSet & { options: GuardConfig };

/**
 * Floors a little under what the detectors score on the labelled set (bench/privacy-eval prints
 * the numbers), so that a regression in any one type fails.
 */
const FLOORS: Record<string, { recall: number; precision: number }> = {
  EMAIL: { recall: 0.95, precision: 0.9 },
  PHONE: { recall: 0.93, precision: 0.95 },
  IPV4: { recall: 0.95, precision: 0.95 },
  IPV6: { recall: 0.9, precision: 0.9 },
  MAC: { recall: 0.9, precision: 0.9 },
  CARD: { recall: 0.95, precision: 0.95 },
  IBAN: { recall: 0.95, precision: 0.95 },
  NATIONAL_ID: { recall: 0.9, precision: 0.85 },
  GPS: { recall: 0.9, precision: 0.9 },
  DOB: { recall: 0.9, precision: 0.9 },
  PERSON: { recall: 0.9, precision: 0.9 },
  SECRET: { recall: 0.9, precision: 0.9 },
  ASSET_TAG: { recall: 0.95, precision: 0.95 },
  PATIENT_ID: { recall: 0.95, precision: 0.95 },
};

const allPseudonym = (): GuardConfig['operators'] =>
  Object.fromEntries(ENTITY_TYPES.map((t): [string, Operator] => [t, 'pseudonym']));

describe('privacy: labelled set', function () {
  this.timeout(120_000);

  it('holds at least 300 labelled entities over every type', function () {
    const entities = [...fixture.samples, ...(fixture.json ?? [])].flatMap((s) => s.entities);
    assert.ok(entities.length >= 300, `${entities.length} entities`);
    for (const type of Object.keys(FLOORS))
      assert.ok(
        entities.some((e) => e.type === type),
        type,
      );
  });

  it('meets the recall and precision floor for each type', function () {
    const scores = evaluate(new PrivacyGuard(fixture.options), fixture);
    const failures: string[] = [];
    for (const [type, floor] of Object.entries(FLOORS)) {
      const s = scores.find((x) => x.type === type);
      assert.ok(s, `no score for ${type}`);
      if (s.recall < floor.recall) failures.push(`${type} recall ${s.recall.toFixed(3)} < ${floor.recall}`);
      if (s.precision < floor.precision)
        failures.push(`${type} precision ${s.precision.toFixed(3)} < ${floor.precision}`);
    }
    assert.deepEqual(failures, [], '\n' + formatScores(scores));
  });

  it('round-trips every sample: pseudonymize then restore gives back the exact input', function () {
    const guard = new PrivacyGuard({
      ...fixture.options,
      operators: allPseudonym(),
      customOperator: 'pseudonym',
    });
    let replaced = 0;
    for (const s of fixture.samples) {
      const pseudonyms = new Pseudonymizer();
      const protectedText = guard.protect(s.text, pseudonyms);
      replaced += protectedText.total;
      assert.equal(guard.restore(protectedText.value, pseudonyms.map).value, s.text);
    }
    for (const s of fixture.json ?? []) {
      const pseudonyms = new Pseudonymizer();
      const p = guard.protect(s.value, pseudonyms);
      // A number that held an entity comes back as its text ("52.3676"); everything else is exact.
      const numbersAsText = (_k: string, v: unknown) => (typeof v === 'number' ? String(v) : v);
      assert.equal(
        JSON.stringify(guard.restore(p.value, pseudonyms.map).value, numbersAsText),
        JSON.stringify(s.value, numbersAsText),
      );
    }
    assert.ok(replaced >= 280, `only ${replaced} replacements`);
  });
});

function labelled(samples: Sample[]): LabelledSet {
  return {
    samples: samples
      .filter((x) => x.text !== undefined)
      .map((x) => ({ text: x.text as string, entities: x.entities })),
    json: samples.filter((x) => x.text === undefined).map((x) => ({ value: x.value, entities: x.entities })),
  };
}

/**
 * Floors a little under what bench/privacy-eval measures on each half of the generated set, so a
 * regression fails; the README has the figures. The test half was frozen before any tuning.
 */
const GENERATED_FLOORS: Record<'dev' | 'test', Record<string, number>> = {
  dev: {
    PERSON: 0.95,
    PHONE: 0.98,
    DOB: 0.98,
    GPS: 0.98,
    SECRET: 0.98,
    IBAN: 0.98,
    EMAIL: 0.99,
    IPV4: 0.99,
    MAC: 0.98,
  },
  test: {
    PERSON: 0.92,
    PHONE: 0.97,
    DOB: 0.97,
    GPS: 0.97,
    SECRET: 0.97,
    CARD: 0.99,
    NATIONAL_ID: 0.99,
    EMAIL: 0.99,
    MAC: 0.97,
  },
};

describe('privacy: generated set, dev and frozen test half', function () {
  this.timeout(120_000);
  const samples = generate();
  for (const half of ['dev', 'test'] as const) {
    it(`${half} half: values hidden per type and precision at least their floors`, function () {
      const scores = evaluate(new PrivacyGuard(), labelled(samples.filter((x) => x.half === half)));
      const failures: string[] = [];
      for (const [type, floor] of Object.entries(GENERATED_FLOORS[half])) {
        const s = scores.find((x) => x.type === type);
        if (!s || s.hiddenRate < floor)
          failures.push(`${type} hidden ${s?.hiddenRate.toFixed(3)} < ${floor}`);
      }
      const found = scores.reduce((n, x) => n + x.predicted, 0);
      const right = scores.reduce((n, x) => n + x.truePositives, 0);
      if (right / found < 0.95) failures.push(`precision ${(right / found).toFixed(3)} < 0.95`);
      assert.deepEqual(failures, [], '\n' + formatScores(scores));
    });
  }
});

describe('privacy: large input', function () {
  it('settles overlaps as the quadratic rule did, on many random findings', function () {
    let seed = 11;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const types = ['EMAIL', 'PHONE', 'PERSON', 'GPS', 'SECRET'];
    for (let round = 0; round < 20; round++) {
      const findings: Finding[] = Array.from({ length: 300 }, () => {
        const start = rnd(2000);
        return { type: types[rnd(types.length)], rule: 'x', start, end: start + 1 + rnd(40), value: '' };
      });
      const naive: Finding[] = [];
      const rank = (f: Finding) => ({ EMAIL: 80, GPS: 65, PHONE: 60, PERSON: 50, SECRET: 100 })[f.type] ?? 0;
      for (const f of [...findings].sort(
        (a, b) => rank(b) - rank(a) || b.end - b.start - (a.end - a.start) || a.start - b.start,
      ))
        if (naive.every((k) => f.end <= k.start || f.start >= k.end)) naive.push(f);
      naive.sort((a, b) => a.start - b.start);
      assert.deepEqual(resolveOverlaps(findings), naive);
    }
  });

  it('protectAsync gives the event loop back on a large text and returns what protect does', async function () {
    const guard = new PrivacyGuard();
    const line = 'Operator Lisa Meyer (lisa.meyer@example.com, tel 030 12345678) reset pump 3 at 10.0.0.7.\n';
    const text = line.repeat(4000);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const pseudonyms = new Pseudonymizer();
    const r = await guard.protectAsync(text, pseudonyms, 2);
    clearInterval(timer);
    assert.ok(ticks > 0, 'other callbacks ran while it worked');
    assert.deepEqual(r, guard.protect(text, new Pseudonymizer()));
    assert.ok(!r.value.includes('Lisa') && !r.value.includes('12345678'));
    assert.equal((await guard.restoreAsync(r.value, pseudonyms.map, undefined, 2)).value, text);
  });

  it('finds an entity that straddles two chunks', function () {
    const guard = new PrivacyGuard();
    const filler = 'x'.repeat(32_760) + ' ';
    const found = guard.detect(filler + 'mail ann@example.com now');
    assert.deepEqual(
      found.map((f) => f.value),
      ['ann@example.com'],
    );
  });
});

describe('privacy: name lists', function () {
  this.timeout(60_000);

  it('are built in a worker thread, never on the event loop, and hold what a build in place holds', function () {
    // A fresh process, so that nothing of faker is loaded yet: after loadGazetteer() the calling
    // thread still has none of it, and the sets equal those gazetteer() builds in place after.
    const script = `
      const g = require(${JSON.stringify(join(__dirname, '..', 'lib', 'privacy', 'gazetteer.js'))});
      const fakerHere = () => Object.keys(require.cache).some((k) => k.includes('@faker-js'));
      g.loadGazetteer().then((loaded) => {
        const before = fakerHere();
        const lists = g.nameLists();
        const same = (set, list) => set.size === list.length && list.every((x) => set.has(x));
        console.log(JSON.stringify({
          fakerBefore: before,
          fakerAfter: fakerHere(),
          given: loaded.given.size,
          same: same(loaded.given, lists.given) && same(loaded.family, lists.family) && same(loaded.places, lists.places),
          shared: g.gazetteer() === loaded,
        }));
      });`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as Record<
      string,
      unknown
    >;
    assert.equal(out.fakerBefore, false);
    assert.equal(out.fakerAfter, true); // the check can see faker where it is loaded
    assert.ok((out.given as number) > 10_000);
    assert.equal(out.same, true);
    assert.equal(out.shared, true);
  });
});

describe('privacy: session maps', function () {
  it('restore gets only the tokens its request was given, within the limits', function () {
    const store = new Map<string, unknown>();
    let now = 0;
    const maps = new SessionMaps(
      { get: (k) => store.get(k), set: (k, v) => (v === undefined ? store.delete(k) : store.set(k, v)) },
      { maxSessions: 2, ttlMs: 1000, maxTokens: 3, maxRequests: 2 },
      () => now,
    );
    const guard = new PrivacyGuard();
    const p1 = new Pseudonymizer(maps.load('a'));
    guard.protect('ann@example.com', p1);
    const b1 = maps.save('a', p1.map, p1.used);
    const p2 = new Pseudonymizer(maps.load('a'));
    guard.protect('typed <EMAIL_1>, wrote bob@example.com', p2);
    const b2 = maps.save('a', p2.map, p2.used);
    assert.deepEqual([...(maps.forRequest('a', b1)?.only ?? [])], ['<EMAIL_1>']);
    assert.deepEqual([...(maps.forRequest('a', b2)?.only ?? [])], ['<EMAIL_2>']);
    assert.equal(maps.forRequest('b', b1), undefined, 'a binding is for its own session only');
    assert.equal(maps.forRequest('a', { version: 1, session: 'a', request: 'guessed' }), undefined);
    for (const k of ['b', 'c']) maps.save(k, new Pseudonymizer().map, new Set());
    assert.equal(store.has('a'), false, 'the least recently used session goes first');
    now = 5000;
    assert.equal(
      maps.forRequest('c', maps.save('c', new Pseudonymizer().map, new Set())) !== undefined,
      true,
    );
    assert.equal(store.has('b'), false, 'a session unused past its age is removed');
  });
});

/** A seeded random integer in [0, n): the same texts on every run, for the hand-read readers' cases. */
function seeded(seed: number): (n: number) => number {
  return (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor((seed / 2147483648) * n);
  };
}

describe('privacy: checks behind the detectors', function () {
  it('Luhn and issuer ranges', function () {
    assert.ok(luhnValid('4111111111111111'));
    assert.ok(!luhnValid('4111111111111112'));
    assert.ok(cardIssuerKnown('378282246310005'));
    assert.ok(!cardIssuerKnown('7992739871300008'));
  });

  it('US SSN rules', function () {
    assert.ok(usSsnValid('536', '22', '1234'));
    for (const [a, g, s] of [
      ['000', '12', '3456'],
      ['666', '12', '3456'],
      ['912', '34', '5678'],
      ['123', '00', '4567'],
      ['123', '45', '0000'],
      ['078', '05', '1120'],
    ]) {
      assert.ok(!usSsnValid(a, g, s), `${a}-${g}-${s}`);
    }
  });

  it('person rules: a field name before a sign is read by hand as its pattern reads it', function () {
    const pieces = ['a', 'Z', 'z', '_', '1', ' ', '\t', '"', "'", ']', ':', '=', 'é', '\n', '[', '`'];
    const next = seeded(5);
    let keys = 0;
    for (let i = 0; i < 20_000; i++) {
      let text = '';
      for (let k = 1 + next(12); k > 0; k--) text += pieces[next(pieces.length)];
      for (let q = 0; q < text.length; q++) {
        if (text[q] !== ':' && text[q] !== '=') continue;
        const m = /[A-Za-z_]["'\]]?[ \t]*$/.exec(text.slice(0, q));
        if (m) keys++;
        assert.equal(keyEnd(text, q), m ? m.index + 1 : -1, JSON.stringify(text.slice(0, q + 1)));
      }
    }
    assert.ok(keys > 1_000, `only ${keys} field names`);
  });

  it('person rules: the hand-read run ends where the run pattern ends', function () {
    // plainRunEnd reads plain runs without the pattern; wherever it answers, the pattern must agree.
    const pieces = [
      ...[
        'Anna',
        'Keller',
        'Ab',
        'A',
        'B.',
        'G.',
        'Ö.',
        'Ö',
        'Björk',
        'Dräger',
        'OEE',
        'McDonald',
        'Jean-Paul',
      ],
      ...['ǅ', 'É', 'A.-', 'A.B.', 'a.', 'van', 'de', 'dell', 'al', 'al-', 'bin', 'an', 'on', 'x', 'e', 'y'],
      ...["O'", 'O’', 'é', 'ü', 'ß', '\u0301', '𞤀', '𞤢', '\ud800', '1', '_', '@', '.', '.a', '.1', '. ', ','],
      ...['-', "'", '’', '\n', '\t', ' ', '  ', '\u00a0', ':', '(', 'Zz', 'zu', 'Иван', '김'],
      ...['la', 'der', 'dos', 'Collier-', '-jones', '-Dach', 'al-Rashid', 'bin-'],
    ];
    const next = seeded(7);
    let answered = 0;
    for (let i = 0; i < 20_000; i++) {
      let text = '';
      for (let k = 1 + next(14); k > 0; k--) text += pieces[next(pieces.length)] + (next(3) === 0 ? ' ' : '');
      for (let p = 0; p < text.length; p++) {
        const end = plainRunEnd(text, p);
        if (end === undefined) continue;
        answered++;
        assert.equal(end, patternRunEnd(text, p), JSON.stringify(text.slice(p)));
      }
    }
    assert.ok(answered > 10_000, `${answered}`);
  });

  it('person rules: the gap after a cue, read by hand, ends where its pattern ends', function () {
    // cueGapEnd reads the punctuation and white space after a cue without the pattern (which it asks
    // only where a particle may follow); both must agree at every place.
    const pieces = [
      '.',
      "'",
      '’',
      '-',
      ' ',
      '\t',
      '\n',
      '"',
      '[',
      ']',
      '(',
      ':',
      '=',
      '>',
      '\u00a0',
      '\u3000',
    ];
    pieces.push('de', 'la', 'van', 'von der', 'x', 'A', 'é', 'al', 'del', '  ', '\ud800', '1');
    const next = seeded(3);
    let far = 0;
    for (let i = 0; i < 20_000; i++) {
      let text = '';
      for (let k = next(16); k > 0; k--) text += pieces[next(pieces.length)];
      for (let e = 0; e <= text.length; e++) {
        const end = patternGapEnd(text, e);
        if (end > e) far++;
        assert.equal(cueGapEnd(text, e), end, JSON.stringify(text.slice(e)));
      }
    }
    assert.ok(far > 20_000, `${far}`);
  });

  it('person rules: every character that starts a cue word outside a-z is looked for', function () {
    // The cue words that start with "ü", "ä"... are tried only where indexOf finds one of these.
    const first = new RegExp(`[${CUE_OTHER_FIRST.join('')}]`, 'i');
    const matching: string[] = [];
    for (let c = 0; c < 0x10000; c++)
      if (first.test(String.fromCharCode(c))) matching.push(String.fromCharCode(c));
    assert.deepEqual(matching.sort(), [...CUE_OTHER_FIRST].sort());
    assert.ok(CUE_OTHER_FIRST.includes('Ü') && CUE_OTHER_FIRST.includes('ä'));
  });

  it('hides a name whole: no given name left beside a hidden family name', function () {
    const guard = new PrivacyGuard();
    const names = (text: string) =>
      guard
        .detect(text)
        .filter((f) => f.type === 'PERSON')
        .map((f) => f.value);
    for (const [text, expected] of [
      ['WO-8927 closed. Tech: Di Benedetto, Iacopo. Callback 393 836 573.', ['Di Benedetto, Iacopo']],
      ['Dr Audrey Da silva du fournisseur demande un rappel.', ['Audrey Da silva']],
      [
        'Si vuelve a disparar llamar a L. Caldera Kardache soto (+52-599-537-6556).',
        ['L. Caldera Kardache soto'],
      ],
      // Two names in a list stay two; a word after a name that is no name stays out of it.
      [
        'Shift: Anna Schmidt, Peter Braun and Maria Keller will call back.',
        ['Anna Schmidt', 'Peter Braun', 'Maria Keller'],
      ],
      ['Patient: Keller, Maria, geb. 12. März 1961', ['Keller, Maria']],
      ['Ahmed Al-Farsi and Jean van der Berg signed.', ['Ahmed Al-Farsi', 'Jean van der Berg']],
      // Initials with and without a dot, a generation, particles in capitals, "Last, First Middle",
      // family names found apart from the given names after the comma, a family name on the next line.
      ['Signed:\nMaxime-Henriette A Perrin\nShift lead', ['Maxime-Henriette A Perrin']],
      ['Call-back list: Carlota Pantoja Arriaga Sr., then the vendor.', ['Carlota Pantoja Arriaga Sr.']],
      ['Handover from VAN DER LINDEN Michael to the night shift.', ['VAN DER LINDEN Michael']],
      ['Signed: Limón Madrigal, Andrea Daniel', ['Limón Madrigal, Andrea Daniel']],
      ['Signed:\nJossa, Lucian Jordan\nShift lead', ['Jossa, Lucian Jordan']],
      ['Signed: Maria\nKeller\nShift lead', ['Maria\nKeller']],
      [
        "Call-back list: Colin Denesik, Janie Hermiston-O'Hara (valve V-18).",
        ['Colin Denesik', "Janie Hermiston-O'Hara"],
      ],
      // Two people in a list are not read as one "Last, First".
      ['Call-back list: Anna Keller, Maria Zorbu.', ['Anna Keller', 'Maria Zorbu']],
      // After a strong cue, "Last, First" with given names no list holds, and in capitals; a role
      // word that is a given name too; a lower-case family name before the next field of a log line.
      ['Signed: Kowalczyk, Zbigniew Shift lead', ['Kowalczyk, Zbigniew Shift']],
      ['pump P-962 checked by ROEL, VIRIYA, all clear.', ['ROEL, VIRIYA']],
      ['SOS déclenché (bracelet 421) par Pat Thompson. Dernière position', ['Pat Thompson']],
      ['nav: operator=E. Bustos Quintero cruz ip=172.21.95.166', ['E. Bustos Quintero cruz']],
      // Scripts without capitals: after a cue, whole, "Last, First" too, and beside a Latin name.
      ['Operator ნინო ბერიძე reset pump 3.', ['ნინო ბერიძე']],
      ['WO-8467 closed. Tech: აბაზაძე, ნუკა. Callback 591 48 94 26.', ['აბაზაძე, ნუკა']],
      ['ALERT fall detected for 서하 강 (date of birth 15-APR-1938)', ['서하 강']],
      ['Handover from נתנאל בית הלחמי Jr. to the night shift.', ['נתנאל בית הלחמי Jr.']],
      ['Visitor Kim Min-jun (김민준) badge 42', ['Kim Min-jun (김민준)']],
      // A span never ends inside a word, and grows again after "Last, First": hyphens, apostrophes
      // in capitals, particles; the family name before the comma, lower case after a particle.
      ['Signed: van Meunier, Bertrand-Sylvestre Shift lead', ['van Meunier, Bertrand-Sylvestre']],
      ['"technician": "Algiso D\'AMBROSIO", "asset": "chiller CH-5"', ["Algiso D'AMBROSIO"]],
      [
        'Signed: Quintanilla Tamayo, Carla María del Carmen Shift lead',
        ['Quintanilla Tamayo, Carla María del Carmen'],
      ],
      [
        'Call-back list: Da silva, Philothée Florie, Joël Guerin (compressor C3).',
        ['Da silva, Philothée Florie', 'Joël Guerin'],
      ],
      ['Handover from Soyinka, Omolola Daum to Idowu Balogun.', ['Soyinka, Omolola Daum', 'Idowu Balogun']],
      [
        'Call-back list: Viel di Umzuleum, Adalsinde David (chiller CH-3).',
        ['Viel di Umzuleum, Adalsinde David'],
      ],
      [
        'Handover: Charlotte Nyberg Björk -> Kamida Korene Vivi Nyberg Björk (8:00)',
        ['Charlotte Nyberg Björk', 'Kamida Korene Vivi Nyberg Björk'],
      ],
      // Initials in any script, a record's '^', a name split over two lines, an ordinal after it.
      ['Operator REVI თ. ELTOKOZU acknowledged alarm 534.', ['REVI თ. ELTOKOZU']],
      ['PID|1||66102||Rivas Merino^Nicolás||19770101|F|||', ['Rivas Merino^Nicolás']],
      ['Signed: Hoka\nShifi\nShift lead', ['Hoka\nShifi']],
      ['Signed: Pilar\nCarrera Olivares\nShift lead', ['Pilar\nCarrera Olivares']],
      ['Signed: 유라\n강\nShift lead', ['유라\n강']],
      ['Operator Jeffry McKenzie 2nd shift, station 5', ['Jeffry McKenzie']],
      ['<visit><technician>Miba, Yaya</technician><asset>boiler B4</asset></visit>', ['Miba, Yaya']],
      // A capitalised particle before "Last, First"; a family name in lower case before a particle,
      // or after a capitalised name or particle; an initial without its full stop.
      [
        'Shift note 12: De Angelis, Bruno Carlo checked pump P-4 and left at 10:00.',
        ['De Angelis, Bruno Carlo'],
      ],
      ['Call-back list: Di Benedetto, Sara, Paolo Rossi (valve V-7).', ['Di Benedetto, Sara, Paolo Rossi']],
      [
        'Sr. Blanca Quintero cruz de Carreón pide que le llamen por la bomba P-4.',
        ['Blanca Quintero cruz de Carreón'],
      ],
      [
        'Met Kadar rodriguez Ulloa, Mark and Ana Ruiz at the valve V-8.',
        ['Kadar rodriguez Ulloa, Mark', 'Ana Ruiz'],
      ],
      ['Handover: Anna Berg -> Le roux Adeline Martin (12:00)', ['Anna Berg', 'Le roux Adeline Martin']],
      ['pump P-12 reset. Signed: Tovalu O Mebiro Shift lead', ['Tovalu O Mebiro']],
      // Family names written together are a family name, product names in CamelCase are not.
      ['Signed: Marija\nKovačićBanić\nShift lead', ['Marija\nKovačićBanić']],
      ['Visitor Ana Horvat-JokićBalog signed in at gate 2.', ['Ana Horvat-JokićBalog']],
      [
        'Anna Berg checked the ControlLogix rack and the PowerFlex drive, then the SmartGuard relay.',
        ['Anna Berg'],
      ],
    ] as const) {
      assert.deepEqual(names(text), expected, text);
    }
  });

  it('takes a name in a script without capitals as a name field’s whole value', function () {
    const guard = new PrivacyGuard();
    const r = guard.protect({ patient: '김민준', technician: 'აბაზაძე, ნუკა', note: '펌프' });
    assert.match(String(r.value.patient), /^<PERSON_\d+>$/);
    assert.match(String(r.value.technician), /^<PERSON_\d+>$/);
    assert.equal(r.value.note, '펌프');
  });

  it('leaves words in scripts without capitals alone where no cue stands before them', function () {
    const guard = new PrivacyGuard();
    for (const text of ['alarm for 펌프 3', 'שלום עולם', '温度 61.5 C, 压力 4.2 bar']) {
      assert.deepEqual(
        guard.detect(text).filter((f) => f.type === 'PERSON'),
        [],
        text,
      );
    }
  });

  it('takes a whole field value for a name in role fields, particles and lower-case words included', function () {
    const guard = new PrivacyGuard();
    const one = (key: string, value: string) =>
      guard
        .detect(value, key)
        .filter((f) => f.type === 'PERSON')
        .map((f) => f.value);
    for (const key of [
      'created_by',
      'updatedBy',
      'nurse_on_duty',
      'emergency_contact',
      'next_of_kin',
      'caregiver',
    ])
      assert.deepEqual(one(key, 'Dr. Anna Keller'), ['Dr. Anna Keller'], key);
    assert.deepEqual(one('contact', 'van der Berg, Anna'), ['van der Berg, Anna']);
    assert.deepEqual(one('patient', 'Fatima al-Zahra'), ['Fatima al-Zahra']);
    assert.deepEqual(one('patient', 'Kadar rodriguez Ulloa, Yolanda'), ['Kadar rodriguez Ulloa, Yolanda']);
    // Fields that only end like a role are none: sort_by, group_by, remember.
    for (const key of ['sort_by', 'group_by', 'remember', 'member_id'])
      assert.deepEqual(one(key, 'Date'), [], key);
  });

  it('knows phone and birth-date cue words in more languages and scripts', function () {
    const guard = new PrivacyGuard();
    const found = (text: string) => guard.detect(text).map((f) => `${f.type}:${f.value}`);
    for (const [text, expected] of [
      ['τηλ. 210 123 4567', 'PHONE:210 123 4567'],
      ['Тел. 8 (495) 123-45-67', 'PHONE:8 (495) 123-45-67'],
      ['मोबाइल 98765 43210', 'PHONE:98765 43210'],
      ['Födelsedatum 1985-03-12', 'DOB:1985-03-12'],
      ['γέννηση 12/03/1985', 'DOB:12/03/1985'],
      ['تاريخ الميلاد 1985-03-12', 'DOB:1985-03-12'],
      ['出生 1985年3月12日', 'DOB:1985年3月12日'],
    ] as const)
      assert.deepEqual(found(text), [expected], text);
    assert.deepEqual(found('Pump 3 at 14:32:05, pressure 4.2 bar, admitted 1985-03-12'), []);
  });

  it('finds what the anchored detectors find where an anchor is shared or cut', function () {
    const guard = new PrivacyGuard({ person: 'off' });
    const found = (text: string) => guard.detect(text).map((f) => `${f.type}:${f.value}`);
    // One address per '@'; an '@' inside the last one found starts none.
    assert.deepEqual(found('a@b@c.com and x.y@ex-ample.co.uk'), [
      'EMAIL:b@c.com',
      'EMAIL:x.y@ex-ample.co.uk',
    ]);
    assert.deepEqual(found('reach a@b.com+c@d.com'), ['EMAIL:a@b.com']);
    // Cisco dotted MACs that share a group with the next run; a bare MAC after a MAC word only.
    assert.deepEqual(found('hwaddr 0011.22aa.bb33 and mac: 001122aabbcc, hash 001122aabbcd'), [
      'MAC:0011.22aa.bb33',
      'MAC:001122aabbcc',
    ]);
    assert.deepEqual(found('fe80::1ff:fe23:4567:890a at 12:34:56, ::ffff:192.168.1.1'), [
      'IPV6:fe80::1ff:fe23:4567:890a',
      'IPV6:::ffff:192.168.1.1',
    ]);
    assert.deepEqual(found('myapi_key=abcd1234efgh5678 x_token: 9f8e7d6c5b4a39281706'), [
      'SECRET:abcd1234efgh5678',
      'SECRET:9f8e7d6c5b4a39281706',
    ]);
  });

  it('finds MAC addresses in the formats in use, and not hashes, IPv6 addresses or serials', function () {
    const guard = new PrivacyGuard();
    const macsIn = (text: string, keyHint?: string) =>
      guard
        .detect(text, keyHint)
        .filter((f) => f.type === 'MAC')
        .map((f) => f.value);
    for (const [text, mac] of [
      ['link 00:1a:2b:3c:4d:5e up', '00:1a:2b:3c:4d:5e'],
      ['Controller 00-1A-2B-3C-4D-5E, uplink ok', '00-1A-2B-3C-4D-5E'],
      ['mac:00:1A:2b:3C:4d:5E', '00:1A:2b:3C:4d:5E'],
      ['HWaddr:a4:5e:60:e1:22:0f', 'a4:5e:60:e1:22:0f'],
      ['BLE 0011.2233.4455.', '0011.2233.4455'],
      ['switch port learned 001A.2B3C.4D5E', '001A.2B3C.4D5E'],
      ['mac=001a2b3c4d5e', '001a2b3c4d5e'],
      ['BSSID 001A2B3C4D5E seen', '001A2B3C4D5E'],
      ['DHCPREQUEST chaddr 0a1b2c3d4e5f', '0a1b2c3d4e5f'],
      ['{"device":"gw-12","mac":"A45E60E1220F"}', 'A45E60E1220F'],
      ['link/ether 001122334455 brd ff:ff:ff:ff:ff:ff', '001122334455'],
    ]) {
      assert.ok(macsIn(text).includes(mac), `${text}: ${JSON.stringify(macsIn(text))}`);
    }
    assert.deepEqual(macsIn('001a2b3c4d5e', 'macAddress'), ['001a2b3c4d5e']);
    assert.deepEqual(macsIn('001a2b3c4d5e', 'wifi_bssid'), ['001a2b3c4d5e']);
    for (const text of [
      'commit 3f9a8c7e6d5b pushed', // a short hash
      'sha256 3f9a8c7e6d5b4a3928170f1e2d3c4b5a6978 ok', // a long one
      'mac digest 3f9a8c7e6d5b4a3928170f1e2d3c4b5a6978', // a MAC word, but a hash
      'HMAC 3f9a8c7e6d5b', // not the word mac
      'serial 0011AABBCCDD', // a serial number
      'order 202401011234 shipped',
      'fe80::1:00:1a:2b:3c:4d:5e', // the tail of an IPv6 address
      'EUI-64 00:1a:2b:ff:fe:3c:4d:5e', // eight bytes
      'frame 01:03:00:00:00:0a:c5:cd dropped', // Modbus bytes
      'firmware 2024.0101.1234 installed', // a dotted version
      'value 1234.5678.9012.3456',
      'at 12:30:45 sharp',
      'blob g' + 'a'.repeat(40) + ':00:11:22:33:44:55', // the tail of a long hex run
    ]) {
      assert.deepEqual(macsIn(text), [], text);
    }
    assert.deepEqual(macsIn('3f9a8c7e6d5b', 'commit'), []);
  });

  it('needs a cue before bare nine digits and before a date of birth', function () {
    const guard = new PrivacyGuard();
    assert.deepEqual(
      guard.detect('ssn 536221234; the spare part number is 536221234').map((f) => f.start),
      [4],
    );
    assert.deepEqual(
      guard.detect('born 1985-03-12, admitted 2024-02-01').map((f) => [f.type, f.value]),
      [['DOB', '1985-03-12']],
    );
  });

  it('uses field names as cues in JSON', function () {
    const guard = new PrivacyGuard();
    const r = guard.protect({
      dob: '1961-09-14',
      lat: 52.3676,
      lon: 4.9041,
      name: 'Samuel Osei',
      speed: 54.2,
    });
    assert.deepEqual(r.counts, { DOB: 1, GPS: 2, PERSON: 1 });
    assert.equal(r.value.speed, 54.2);
  });
});

describe('privacy: operators', function () {
  const text = 'Mail jane.doe@example.com or JANE.DOE@EXAMPLE.COM, card 4111 1111 1111 1111.';

  it('redact, mask and keyed hash', function () {
    const ops = (op: Operator): GuardConfig => ({ operators: { EMAIL: op, CARD: op }, key: 'k1' });
    assert.equal(
      new PrivacyGuard(ops('redact')).protect(text).value,
      'Mail [EMAIL] or [EMAIL], card [CARD].',
    );
    assert.equal(
      new PrivacyGuard(ops('mask')).protect(text).value,
      'Mail j***@example.com or J***@EXAMPLE.COM, card **** **** **** 1111.',
    );
    const hashed = new PrivacyGuard(ops('hash')).protect(text).value;
    const tags = hashed.match(/\[EMAIL:[0-9a-f]{16}\]/g) ?? [];
    assert.equal(tags.length, 2);
    assert.equal(tags[0], tags[1], 'case variants of one address hash alike');
    assert.equal(tags[0], `[EMAIL:${keyedHash('k1', 'jane.doe@example.com').slice(0, 16)}]`);
    assert.notEqual(new PrivacyGuard({ ...ops('hash'), key: 'k2' }).protect(text).value, hashed);
  });

  it('masks names letter by letter', function () {
    assert.equal(maskValue('PERSON', 'Hans Müller'), 'H*** M*****');
    assert.equal(maskValue('IBAN', 'DE89 3704 0044 0532 0130 00'), '**** **** **** **** **30 00');
  });

  it('gives one original value one pseudonym, within a message and across a session', function () {
    const guard = new PrivacyGuard();
    const session = new Pseudonymizer();
    const a = guard.protect({ to: 'ann@example.com', cc: ['bob@example.com', 'ann@example.com'] }, session);
    assert.deepEqual(a.value, { to: '<EMAIL_1>', cc: ['<EMAIL_2>', '<EMAIL_1>'] });
    const again = new Pseudonymizer(JSON.parse(JSON.stringify(session.map)));
    assert.equal(
      guard.protect('reply to bob@example.com, cc carol@example.com', again).value,
      'reply to <EMAIL_2>, cc <EMAIL_3>',
    );
  });

  it('does not issue a pseudonym that already occurs in the input', function () {
    const guard = new PrivacyGuard();
    const p = new Pseudonymizer();
    const input = { note: 'template token <EMAIL_1> stays', to: 'ann@example.com' };
    const out = guard.protect(input, p);
    assert.equal(out.value.to, '<EMAIL_2>');
    assert.deepEqual(guard.restore(out.value, p.map).value, input);
  });

  it('restores tokens a model wrote with spaces, and leaves unknown ones', function () {
    const map = { version: 1 as const, tokens: { '<PERSON_1>': 'Lisa Meyer' } };
    assert.deepEqual(restoreText('Ask < PERSON_1 > and <PERSON_2>.', map), {
      text: 'Ask Lisa Meyer and <PERSON_2>.',
      restored: 1,
    });
  });

  it('protects object keys', function () {
    const guard = new PrivacyGuard();
    const out = guard.protect({ 'ann@example.com': { visits: 3 } });
    assert.deepEqual(out.value, { '<EMAIL_1>': { visits: 3 } });
  });
});

describe('privacy: configuration', function () {
  it('rejects bad configurations with a message', function () {
    assert.throws(() => new PrivacyGuard({ operators: { EMAIL: 'hash' } }), /needs a key/);
    assert.throws(() => new PrivacyGuard({ operators: { EMAIL: 'shred' as Operator } }), /unknown operator/);
    assert.throws(
      () => new PrivacyGuard({ customPatterns: [{ name: 'asset', pattern: 'x' }] }),
      /upper case/,
    );
    assert.throws(() => new PrivacyGuard({ customPatterns: [{ name: 'TAG', pattern: '(' }] }), /TAG/);
    assert.throws(
      () => new PrivacyGuard({ customPatterns: [{ name: 'TAG', pattern: 'a*' }] }),
      /empty string/,
    );
    assert.throws(() => new PrivacyGuard({ defaultCountry: 'germany' }), /two upper-case/);
    assert.throws(() => new PrivacyGuard({ regions: ['DE', 'uk'] }), /two upper-case/);
  });

  it('does not look for types switched off', function () {
    const guard = new PrivacyGuard({ operators: { EMAIL: 'off' } });
    assert.equal(guard.protect('ann@example.com, 10.0.0.1').value, 'ann@example.com, <IPV4_1>');
  });

  it('applies custom patterns only near their context words', function () {
    const guard = new PrivacyGuard({
      customPatterns: [
        { name: 'PATIENT_ID', pattern: '\\b\\d{8}\\b', context: ['patient', 'MRN'], window: 10 },
      ],
    });
    assert.equal(guard.protect('MRN 12345678, order 87654321').value, 'MRN [PATIENT_ID], order 87654321');
  });
});

describe('privacy: odd input', function () {
  const guard = new PrivacyGuard();

  it('keeps cycles and shared references, and leaves the input untouched', function () {
    const shared = { mail: 'ann@example.com' };
    const input: Record<string, unknown> = { a: shared, b: shared, list: [shared] };
    input.self = input;
    const out = guard.protect(input);
    const v = out.value as Record<string, Record<string, unknown>>;
    assert.equal(v.self, v);
    assert.equal(v.a, v.b);
    assert.equal(v.a.mail, '<EMAIL_1>');
    assert.equal(out.total, 1, 'a shared object is scanned once');
    assert.equal(shared.mail, 'ann@example.com');
  });

  it('scans UTF-8 buffers and returns buffers', function () {
    const out = guard.protect(Buffer.from('call +44 20 7946 0958'));
    assert.ok(Buffer.isBuffer(out.value));
    assert.equal(out.value.toString(), 'call <PHONE_1>');
  });

  it('blocks what it cannot make safe', function () {
    const deep: Record<string, unknown> = {};
    let at = deep;
    for (let i = 0; i < 100; i++) at = (at.next = {}) as Record<string, unknown>;
    const cases: [unknown, RegExp][] = [
      [Buffer.from([0xff, 0xfe, 0x00, 0x41]), /binary/],
      [Buffer.from('a\u0000b'), /binary/],
      [new Map([['k', 'v']]), /Map/],
      [{ f: () => 1 }, /function/],
      [deep, /deeper/],
      ['x'.repeat(5_000_001), /characters/],
    ];
    for (const [input, reason] of cases) {
      assert.throws(
        () => guard.protect(input),
        (err: unknown) => err instanceof BlockedError && reason.test(err.reason),
      );
    }
  });

  it('never throws anything but BlockedError on random text', function () {
    const alphabet = 'aZ09 .,:;@+-_/()[]{}<>°\'"\n\t€ü😀AKIAghp_eyJ';
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    let scanned = 0;
    for (let i = 0; i < 300; i++) {
      const s = Array.from({ length: rnd(400) }, () => alphabet[rnd(alphabet.length)]).join('');
      const input = { s, n: rnd(1e9) };
      let out: ReturnType<typeof guard.protect<typeof input>>;
      try {
        out = guard.protect(input);
      } catch (err) {
        assert.ok(err instanceof BlockedError, `${String(err)} on ${JSON.stringify(s)}`);
        continue;
      }
      scanned++;
      assert.equal(input.s, s, 'the input is never modified');
      assert.equal(out.value.n, input.n, 'a number passes through');
      assert.equal(typeof out.value.s, 'string');
      const counted = Object.values(out.counts).reduce((a, b) => a + b, 0);
      assert.equal(out.total, counted, JSON.stringify(out.counts));
      if (out.total === 0) assert.equal(out.value.s, s, 'nothing found, nothing changed');
    }
    assert.ok(scanned > 0, 'random text is scanned, not all blocked');
  });

  it('passes empty and non-text values through', function () {
    const input = { a: null, b: undefined, c: true, d: new Date(0), e: '', f: NaN, g: [] };
    assert.deepEqual(guard.protect(input).value, input);
    assert.equal(guard.protect(undefined).value, undefined);
  });
});

describe('privacy: audit', function () {
  const key = Buffer.from('audit-key');

  it('records counts and a keyed hash, never the values', function () {
    const input = { text: 'ann@example.com' };
    const rec = auditRecord({
      key,
      node: 'n1',
      mode: 'protect',
      input,
      counts: { EMAIL: 1 },
      now: new Date(0),
    });
    assert.deepEqual(rec, {
      time: '1970-01-01T00:00:00.000Z',
      node: 'n1',
      mode: 'protect',
      inputHash: keyedHash(key, stableStringify(input)),
      counts: { EMAIL: 1 },
      total: 1,
    });
    assert.ok(!JSON.stringify(rec).includes('ann@'));
  });

  it('serialises large strings and buffers in pieces to the same JSON', function () {
    // A surrogate pair astride a 64 Ki piece boundary stays one character; escapes stay whole.
    const text = 'a"\n'.repeat(21_845) + '😀' + '\u0001b'.repeat(100_000);
    const bytes = Buffer.from(text.repeat(2), 'utf8');
    assert.equal(stableStringify({ text }), JSON.stringify({ text }));
    assert.equal(stableStringify([bytes]), JSON.stringify(['base64:' + bytes.toString('base64')]));
    assert.equal(
      stableStringify(new Uint8Array(bytes).subarray(5)),
      JSON.stringify('base64:' + bytes.subarray(5).toString('base64')),
    );
  });

  it('hashes large input in pieces to the same record', async function () {
    // A surrogate pair astride the 64 Ki piece boundary must hash as one character.
    const input = { text: 'a'.repeat(65_535) + '😀' + 'b'.repeat(300_000) };
    const now = new Date(0);
    const sync = auditRecord({ key, node: 'n', mode: 'protect', input, counts: { PERSON: 1 }, now });
    assert.deepEqual(
      await auditRecordAsync({ key, node: 'n', mode: 'protect', input, counts: { PERSON: 1 }, now }),
      sync,
    );
  });

  it('hashes cyclic input and orders keys', function () {
    const a: Record<string, unknown> = { b: 1, a: 2 };
    a.self = a;
    assert.equal(stableStringify(a), '{"a":2,"b":1,"self":"[cycle]"}');
  });

  it('appends JSON lines in order', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'privacy-audit-'));
    try {
      const file = join(dir, 'audit.jsonl');
      const errors: Error[] = [];
      const writer = new JsonLinesAuditWriter(file, (e) => errors.push(e));
      for (let i = 0; i < 5; i++)
        writer.write(auditRecord({ key, node: `n${i}`, mode: 'protect', input: i, counts: {} }));
      await writer.close();
      const lines = readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { node: string });
      assert.deepEqual(
        lines.map((l) => l.node),
        ['n0', 'n1', 'n2', 'n3', 'n4'],
      );
      assert.deepEqual(errors, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
