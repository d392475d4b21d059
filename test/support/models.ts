import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { loadNodeLlamaCpp } from '../../lib/runtime';

/** The two tiny real models the tests run on (see ../shared/models/README.md). */
export const TEST_MODELS = {
  stories: { file: 'stories260K.gguf', uri: 'hf:ggml-org/models/tinyllamas/stories260K.gguf' },
  tinyRandom: {
    file: 'llama-2-tiny-random.gguf',
    uri: 'hf:aladar/llama-2-tiny-random-GGUF/llama-2-tiny-random.gguf',
  },
} as const;

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

/** EDGE_LLM_MODELS_DIR, then ../shared/models beside the checkout, else a cache the URIs download into. */
export function testModelsDir(): string {
  const fromEnv = process.env.EDGE_LLM_MODELS_DIR;
  if (fromEnv) return fromEnv;
  const shared = path.resolve(REPO_ROOT, '..', 'shared', 'models');
  if (existsSync(shared)) return shared;
  return path.join(REPO_ROOT, '.cache', 'models');
}

/** The local path of a test model, downloaded by its URI first where it is not on this machine. */
export async function testModel(name: keyof typeof TEST_MODELS): Promise<string> {
  const { file, uri } = TEST_MODELS[name];
  const local = path.join(testModelsDir(), file);
  if (existsSync(local)) return local;
  const { resolveModelFile } = await loadNodeLlamaCpp();
  return resolveModelFile(uri, { directory: testModelsDir(), fileName: file, cli: false });
}
