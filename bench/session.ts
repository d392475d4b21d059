/**
 * Time to first token for the next question of a conversation that is continued, three ways:
 * re-reading the whole history (no session), restoring the session's KV snapshot from disk (a
 * resumed session after a restart or on another sequence), and on the sequence that still holds it
 * (warm). Real runtime, CPU. Not a test: prints a table.
 *
 *   npm run build && node dist/bench/session.js [model path or name] [repeats]
 *
 * The default model (stories260K) is tiny, so absolute times are small; a real model shows the gap
 * growing with the history.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RuntimeRegistry, type ChatMessage, type ModelRuntime } from '../lib/runtime';
import { SessionStore, messagesFor } from '../lib/session';
import { testModel, testModelsDir } from '../test/support/models';

const REPEATS = Number(process.argv[3] ?? 5);
const HISTORIES = [1, 2, 4, 8];
const SYSTEM = 'You tell short stories about a robot that inspects valves and pumps in a water plant.';
const QUESTIONS = [
  'Tell me about valve 7 in the east hall.',
  'What did the robot find at pump 4?',
  'Was the pressure in line B normal today?',
  'Which valve did it close first, and why?',
  'What did the operator say about the noise?',
  'How long did the inspection take?',
  'Did the robot need help from a person?',
  'What is left to do tomorrow morning?',
];
const NEXT = 'Now tell me what happened at the end of the day.';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  const source = process.argv[2] ?? (await testModel('stories'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-llm-bench-sessions-'));
  const registry = new RuntimeRegistry({ modelsDir: testModelsDir(), gpu: false });
  try {
    // One sequence, so every request lands on the same KV cache and "warm" means what it says.
    const runtime = await registry.acquire({ source, settings: { sequences: 1, contextSize: 2048 } }).ready;
    const store = SessionStore.open({ dir, maxTokens: 1500 });
    const flush = (): Promise<unknown> =>
      // An unrelated prompt replaces what the sequence holds, so the next request starts cold.
      runtime.chat([{ role: 'user', content: 'Say one word.' }], { maxTokens: 1, affinity: 'flush' });
    const ask = (runtime: ModelRuntime, messages: ChatMessage[], affinity: string, load?: string) =>
      runtime.chat(messages, { maxTokens: 1, affinity, snapshot: load ? { load } : undefined });

    const rows: string[][] = [];
    for (const turns of HISTORIES) {
      const key = `bench-${turns}`;
      for (let i = 0; i < turns; i++) {
        const record = store.get(key);
        const snapshot = store.snapshotFor(record, runtime.modelSha256);
        const question = QUESTIONS[i % QUESTIONS.length];
        const answer = await runtime.chat(messagesFor(record, SYSTEM, question, 1500), {
          maxTokens: 48,
          affinity: record.id,
          snapshot,
        });
        await store.appendTurn(key, question, answer.text, {
          snapshotFile: snapshot?.save,
          modelSha256: runtime.modelSha256,
        });
      }
      const record = store.get(key);
      const messages = messagesFor(record, SYSTEM, NEXT, 1500);
      const load = store.snapshotFor(record, runtime.modelSha256)?.load;
      if (!load) throw new Error('the session has no snapshot to resume from');

      const measure = async (mode: 'cold' | 'snapshot' | 'warm') => {
        const ttft: number[] = [];
        let tokensIn = 0;
        for (let r = 0; r < REPEATS; r++) {
          if (mode !== 'warm') await flush();
          const result =
            mode === 'warm'
              ? await ask(runtime, messages, record.id)
              : await ask(runtime, messages, mode, mode === 'snapshot' ? load : undefined);
          if (result.prefix !== mode && !(mode === 'warm' && r === 0)) {
            throw new Error(`expected a ${mode} prefix, the runtime reports ${result.prefix}`);
          }
          ttft.push(result.ttftMs);
          tokensIn = result.tokensIn;
        }
        return { ms: median(ttft), tokensIn };
      };
      // Warm first: the sequence still holds this conversation from its last turn.
      await flush();
      await ask(runtime, messages, record.id, load);
      const warm = await measure('warm');
      const cold = await measure('cold');
      const snap = await measure('snapshot');
      rows.push([
        String(turns),
        String(cold.tokensIn),
        cold.ms.toFixed(1),
        snap.ms.toFixed(1),
        warm.ms.toFixed(1),
        `${(cold.ms / Math.max(snap.ms, 0.1)).toFixed(1)}x`,
        `${((record.snapshot?.bytes ?? 0) / 1024).toFixed(0)}`,
      ]);
    }
    await store.close();

    const header = ['turns', 'prompt tok', 'no session ms', 'snapshot ms', 'warm ms', 'speed-up', 'KV KiB'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
    console.log(
      `\nTime to first token of the next question (median of ${REPEATS}), ${path.basename(source)}, CPU, ${runtime.settings.threads} threads:\n`,
    );
    console.log(line(header));
    for (const row of rows) console.log(line(row));
    console.log('\nspeed-up: no session / snapshot. KV KiB: size of the session snapshot on disk.');
  } finally {
    await registry.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
