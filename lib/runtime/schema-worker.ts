import Ajv from 'ajv';
import standaloneCode from 'ajv/dist/standalone';
import { parentPort } from 'node:worker_threads';
import { DEFAULT_BOUNDS, grammarSchema, schemaHash, type JsonSchema } from './json-schema';

/**
 * The worker thread behind precompileSchemas: ajv's code generation (15-800 ms a schema on a
 * 2-core gateway), and the tree walks over a large schema (its stable hash, its grammar schema),
 * happen here, never on Node-RED's event loop. Each schema comes back as ajv standalone source,
 * which the caller turns into a validator without compiling a schema again.
 */
export interface PrecompileRequest {
  id: number;
  schemas: unknown[];
  /** Also return schemaHash and the grammar schema of schemas[0]. */
  describe?: boolean;
  /** Also return the stable hash of this value. */
  hashOf?: unknown;
  /** Values that must validate against schemas[0]: the index of the first that does not. */
  examples?: unknown[];
}
export type Precompiled = { code: string } | { error: string };
export interface PrecompileReply {
  id: number;
  results: Precompiled[];
  hash?: string;
  grammarSchema?: JsonSchema;
  contentHash?: string;
  badExample?: number;
}

parentPort?.on('message', (request: PrecompileRequest) => {
  const reply: PrecompileReply = { id: request.id, results: [] };
  let first: ((data: unknown) => boolean) | undefined;
  for (const schema of request.schemas) {
    try {
      // A fresh Ajv per schema: the same $id in two nodes' schemas must not collide.
      const ajv = new Ajv({ allErrors: true, strict: false, code: { source: true } });
      const validate = ajv.compile(schema as object);
      first ??= validate;
      reply.results.push({ code: standaloneCode(ajv, validate) });
    } catch (err) {
      reply.results.push({ error: (err as Error).message });
    }
  }
  try {
    if (request.describe) {
      reply.hash = schemaHash(request.schemas[0]);
      reply.grammarSchema = grammarSchema(request.schemas[0] as JsonSchema, DEFAULT_BOUNDS);
    }
    if (request.hashOf !== undefined) reply.contentHash = schemaHash(request.hashOf);
    if (first && request.examples) {
      const bad = request.examples.findIndex((example) => !first!(example));
      if (bad >= 0) reply.badExample = bad;
    }
  } catch (err) {
    reply.results = [{ error: (err as Error).message }];
  }
  parentPort!.postMessage(reply);
});
