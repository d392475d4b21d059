import { mkdtemp, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { encryptModelFile } from './encrypted';
import { installModelFile, parseModelRef } from './manifest';

const USAGE = `usage: npm run encrypt-model -- <model.gguf> [--out <file>] [--key-env <VAR>]
                        [--install <name@version> --models-dir <dir>]

Encrypts a GGUF model file for storage at rest (AES-256-GCM in 1 MiB chunks, key derived with
scrypt). The key is read from the environment variable EDGE_LLM_MODEL_KEY (or the one --key-env
names), never from the command line. --out writes <file> (default: <model.gguf>.enc beside it).
--install puts the encrypted file into the models directory as name@version with its manifest,
whose sha256 and size are the plaintext model's. The llm-runtime that loads it needs the same key
(its credentials, or its key environment variable). Exit status: 0 done, 2 usage or read error.`;

export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
): Promise<number> {
  let input: string | undefined;
  let output: string | undefined;
  let keyEnv = 'EDGE_LLM_MODEL_KEY';
  let install: string | undefined;
  let modelsDir: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--out' && i + 1 < argv.length) output = argv[++i];
    else if (arg === '--key-env' && i + 1 < argv.length) keyEnv = argv[++i];
    else if (arg === '--install' && i + 1 < argv.length) install = argv[++i];
    else if (arg === '--models-dir' && i + 1 < argv.length) modelsDir = argv[++i];
    else if (arg === '-h' || arg === '--help') {
      out(USAGE);
      return 0;
    } else if (!arg.startsWith('-') && input === undefined) input = arg;
    else {
      out(USAGE);
      return 2;
    }
  }
  if (!input) {
    out(USAGE);
    return 2;
  }
  const key = env[keyEnv];
  if (!key) {
    out(
      `The environment variable ${keyEnv} holds no key: set it (the key is never read from the command line).`,
    );
    return 2;
  }
  const ref = install ? parseModelRef(install) : undefined;
  if (install && (!ref || !modelsDir)) {
    out(`--install needs name@version (got "${install}") and --models-dir.`);
    return 2;
  }
  try {
    if (ref && modelsDir) {
      // Encrypted beside the models directory, then installed: the copy there is the only one.
      const work = await mkdtemp(path.join(modelsDir, '.encrypt-'));
      try {
        const file = path.join(work, `${path.basename(input)}.enc`);
        const header = await encryptModelFile(input, file, key);
        const manifest = await installModelFile(modelsDir, ref, file, { source: 'local' });
        out(
          `${install}: ${path.join(modelsDir, ref.name, ref.version, manifest.file)} (plaintext ${header.size} bytes, sha256 ${header.sha256})`,
        );
      } finally {
        await rm(work, { recursive: true, force: true });
      }
      return 0;
    }
    const target = output ?? `${input}.enc`;
    const header = await encryptModelFile(input, target, key);
    out(`${target}: plaintext ${header.size} bytes, sha256 ${header.sha256}`);
    return 0;
  } catch (err) {
    out(`Not encrypted: ${(err as Error).message}`);
    return 2;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2), process.env, (line) => console.log(line)).then((code) => {
    process.exitCode = code;
  });
}
