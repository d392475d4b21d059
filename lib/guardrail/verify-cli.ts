import * as mqtt from 'mqtt';
import { verifyAuditFile } from './audit';

const USAGE = `usage: verify-cli <audit.jsonl> [--head <file> | --no-head] [--key-env <VAR>] [--anchor <file>]
                  [--anchor-mqtt <broker url> --anchor-topic <topic>]

Checks a guardrail audit log: every line parses, entries are numbered 0, 1, 2..., each line holds the
hash of the one before, and the last line matches <audit.jsonl>.head. With --key-env, the signing key
is read from that environment variable (never from the command line) and each line's MAC is checked.
With --anchor, each anchor in that file (the guardrail's anchor file, or a saved copy of its
retained anchor message) must match its line: without the key, this is what shows a chain rewritten
with its hashes recomputed, or lines cut from the end. With --anchor-mqtt, the anchor retained on that
broker's topic (the guardrail's Anchor broker) is fetched and checked the same way.
Exit status: 0 intact, 1 tampering or damage found, 2 usage or read error.`;

export function main(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
  extra: { anchorText?: string } = {},
): number {
  let file: string | undefined;
  let head: string | false | undefined;
  let keyEnv: string | undefined;
  let anchor: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--head' && i + 1 < argv.length) head = argv[++i];
    else if (arg === '--no-head') head = false;
    else if (arg === '--key-env' && i + 1 < argv.length) keyEnv = argv[++i];
    else if (arg === '--anchor' && i + 1 < argv.length) anchor = argv[++i];
    else if (arg === '-h' || arg === '--help') {
      out(USAGE);
      return 0;
    } else if (!arg.startsWith('-') && file === undefined) file = arg;
    else {
      out(USAGE);
      return 2;
    }
  }
  if (!file) {
    out(USAGE);
    return 2;
  }
  let signingKey: string | undefined;
  if (keyEnv !== undefined) {
    signingKey = env[keyEnv];
    if (!signingKey) {
      out(`environment variable ${keyEnv} is not set`);
      return 2;
    }
  }
  let result;
  try {
    result = verifyAuditFile(file, { head, signingKey, anchor, anchorText: extra.anchorText });
  } catch (err) {
    out(`cannot read ${file}: ${(err as Error).message}`);
    return 2;
  }
  if (result.ok) {
    const checks = [
      head === false ? 'head not checked' : 'head matches',
      signingKey ? 'MACs valid' : 'MACs not checked',
      ...(anchor || extra.anchorText !== undefined ? ['anchors match'] : []),
    ];
    out(`OK: ${file}: ${result.entries} entries, chain intact, ${checks.join(', ')}`);
    return 0;
  }
  out(`TAMPERED: ${file}: ${result.problems.length} problem(s) in ${result.entries} entries`);
  for (const p of result.problems)
    out(`  ${p.line !== undefined ? `line ${p.line}: ` : ''}[${p.code}] ${p.message}`);
  return 1;
}

/** The message retained on `topic`, or undefined when there is none within `timeoutMs`. */
export async function fetchRetained(
  url: string,
  topic: string,
  timeoutMs = 5000,
): Promise<string | undefined> {
  const client = await mqtt.connectAsync(url, { connectTimeout: timeoutMs, reconnectPeriod: 0 });
  try {
    const got = new Promise<string>((resolve) =>
      client.on('message', (t, payload, packet) => {
        if (t === topic && packet.retain) resolve(payload.toString('utf8'));
      }),
    );
    await client.subscribeAsync(topic, { qos: 1 });
    const timeout = new Promise<undefined>((resolve) =>
      setTimeout(() => resolve(undefined), timeoutMs).unref(),
    );
    return await Promise.race([got, timeout]);
  } finally {
    await client.endAsync(true);
  }
}

/** main(), after fetching the anchor retained on a broker when --anchor-mqtt asks for it. */
export async function run(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
): Promise<number> {
  const rest: string[] = [];
  let url: string | undefined;
  let topic: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--anchor-mqtt' && i + 1 < argv.length) url = argv[++i];
    else if (argv[i] === '--anchor-topic' && i + 1 < argv.length) topic = argv[++i];
    else rest.push(argv[i]);
  }
  if (url === undefined && topic === undefined) return main(rest, env, out);
  if (!url || !topic) {
    out(USAGE);
    return 2;
  }
  let anchorText: string | undefined;
  try {
    anchorText = await fetchRetained(url, topic);
  } catch (err) {
    out(`cannot read the anchor from ${topic}: ${(err as Error).message}`);
    return 2;
  }
  if (anchorText === undefined) {
    out(`no anchor is retained on ${topic}`);
    return 2;
  }
  return main(rest, env, out, { anchorText });
}

if (require.main === module) {
  void run(process.argv.slice(2), process.env, (line) => console.log(line)).then((code) => {
    process.exitCode = code;
  });
}
