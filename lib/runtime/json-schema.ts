import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { createHash } from 'node:crypto';
import { LlmError } from './errors';
import { loadValidator, precompileSchemas } from './precompile';

export type JsonSchema = { [key: string]: unknown };

export interface SchemaBounds {
  /** maxLength given to strings that have none, so a string always closes. */
  maxLength: number;
  /** maxItems given to arrays that have none, so an array always closes. */
  maxItems: number;
}

export const DEFAULT_BOUNDS: SchemaBounds = { maxLength: 200, maxItems: 12 };

/** Keywords the grammar can force while decoding; everything else is left to ajv afterwards. */
const GRAMMAR_KEYWORDS = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'prefixItems',
  'minItems',
  'maxItems',
  'minLength',
  'maxLength',
  'minProperties',
  'maxProperties',
  'enum',
  'const',
  'oneOf',
  'format',
  'description',
  '$defs',
  '$ref',
]);

/** Keywords ajv checks after decoding (listed in the nodes' help). */
export const VALIDATED_ONLY_KEYWORDS = [
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'pattern',
  'uniqueItems',
  'not',
  'allOf',
  'if',
  'then',
  'else',
  'dependentRequired',
];

const SUPPORTED_FORMATS = new Set(['date', 'time', 'date-time']);

/**
 * The schema the grammar is built from: only keywords the grammar understands, `anyOf` read as
 * `oneOf`, and a bound on every string and array so that a small model cannot wander off into a
 * string that never ends.
 */
export function grammarSchema(schema: JsonSchema, bounds: SchemaBounds = DEFAULT_BOUNDS): JsonSchema {
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk);
    if (!isObject(node)) return node;
    const out: JsonSchema = {};
    for (const [key, value] of Object.entries(node)) {
      if (key === 'anyOf') out.oneOf = walk(value);
      else if (key === 'properties' || key === '$defs') {
        out[key] = Object.fromEntries(Object.entries(asObject(value)).map(([k, v]) => [k, walk(v)]));
      } else if (key === 'format') {
        if (typeof value === 'string' && SUPPORTED_FORMATS.has(value)) out.format = value;
      } else if (GRAMMAR_KEYWORDS.has(key)) out[key] = walk(value);
    }
    const types = Array.isArray(out.type) ? out.type : [out.type];
    const range = smallIntegerRange(node);
    if (range && out.enum === undefined && out.const === undefined) {
      // A grammar has no arithmetic, but a short integer range is just a list of allowed values.
      delete out.type;
      out.enum = range;
    }
    if (
      types.includes('string') &&
      out.maxLength === undefined &&
      out.enum === undefined &&
      out.format === undefined
    ) {
      out.maxLength = Math.max(bounds.maxLength, Number(out.minLength ?? 0));
    }
    if (types.includes('array') && out.maxItems === undefined) {
      out.maxItems = Math.max(bounds.maxItems, Number(out.minItems ?? 0));
    }
    return out;
  };
  return walk(schema) as JsonSchema;
}

const MAX_ENUMERATED_RANGE = 256;

function smallIntegerRange(node: JsonSchema): number[] | undefined {
  if (node.type !== 'integer') return undefined;
  const low = typeof node.minimum === 'number' ? Math.ceil(node.minimum) : undefined;
  const high = typeof node.maximum === 'number' ? Math.floor(node.maximum) : undefined;
  if (low === undefined || high === undefined || high < low || high - low >= MAX_ENUMERATED_RANGE)
    return undefined;
  return Array.from({ length: high - low + 1 }, (_, i) => low + i);
}

export interface CompiledSchema {
  schema: JsonSchema;
  grammarSchema: JsonSchema;
  hash: string;
  validate: ValidateFunction;
}

/**
 * Checks a user's schema once (at deploy) and prepares both halves of the contract: the grammar
 * schema for decoding and the ajv validator for the whole schema.
 */
export function compileSchema(schema: unknown, bounds: SchemaBounds = DEFAULT_BOUNDS): CompiledSchema {
  if (!isObject(schema)) throw new LlmError('bad_request', 'The JSON Schema must be an object.');
  const ajv = new Ajv({ allErrors: true, strict: false });
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema);
  } catch (err) {
    throw new LlmError('bad_request', `Invalid JSON Schema: ${(err as Error).message}`, { cause: err });
  }
  checkTopLevel(schema);
  return {
    schema,
    grammarSchema: grammarSchema(schema, bounds),
    hash: schemaHash(schema),
    validate,
  };
}

/**
 * Schemas the nodes compile when they are deployed, by hash: ajv's code generation costs 15-80 ms
 * a schema on a 2-core gateway, so it runs in a worker thread (precompile.ts), never on Node-RED's
 * event loop, and a redeploy of unchanged nodes reuses what the last deploy compiled.
 * Process-wide by nature, like the shared Llama; a few entries.
 */
const deployed = new Map<string, Promise<CompiledSchema>>();
const DEPLOYED_CACHE = 32;

/** compileSchema's checks and result, with ajv's compile done off the event loop. */
export function compileSchemaOffLoop(schema: unknown, examples: unknown[] = []): Promise<CompiledSchema> {
  // The cache key is the plain JSON (native, fast); the stable hash is a tree walk, done in the
  // worker. The same node redeployed gives the same JSON.
  const key = JSON.stringify([schema, examples]);
  let compiled = deployed.get(key);
  if (compiled) deployed.delete(key);
  else {
    compiled = compileOffLoop(schema, examples);
    // A schema refused is not kept: its error is cheap to find again and must not pin memory.
    compiled.catch(() => deployed.delete(key));
    if (deployed.size >= DEPLOYED_CACHE) deployed.delete(deployed.keys().next().value!);
  }
  deployed.set(key, compiled);
  return compiled;
}

/** A value of examples that schema refuses (with its index), as compileSchemaOffLoop reports it. */
export class BadExample extends Error {
  constructor(readonly index: number) {
    super(`Example ${index + 1} does not match the schema.`);
  }
}

async function compileOffLoop(schema: unknown, examples: unknown[]): Promise<CompiledSchema> {
  if (!isObject(schema)) throw new LlmError('bad_request', 'The JSON Schema must be an object.');
  checkTopLevel(schema);
  const reply = await precompileSchemas({ schemas: [schema], describe: true, examples });
  const [result] = reply.results;
  if ('error' in result) throw new LlmError('bad_request', `Invalid JSON Schema: ${result.error}`);
  if (reply.badExample !== undefined) throw new BadExample(reply.badExample);
  return {
    schema,
    grammarSchema: reply.grammarSchema!,
    hash: reply.hash!,
    validate: loadValidator(result.code),
  };
}

function checkTopLevel(schema: JsonSchema): void {
  if (
    schema.type === undefined &&
    schema.oneOf === undefined &&
    schema.anyOf === undefined &&
    schema.$ref === undefined
  ) {
    throw new LlmError(
      'bad_request',
      'Invalid JSON Schema: the top level needs a "type" (usually "object").',
    );
  }
}

export function schemaHash(schema: unknown): string {
  return createHash('sha256').update(stableStringify(schema)).digest('hex').slice(0, 16);
}

export function describeErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .slice(0, 5)
    .map((e) => `${e.instancePath || '(root)'} ${e.message ?? 'is invalid'}`)
    .join('; ');
}

export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (isObject(value)) {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableStringify(value[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function isObject(value: unknown): value is JsonSchema {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asObject(value: unknown): JsonSchema {
  return isObject(value) ? value : {};
}
