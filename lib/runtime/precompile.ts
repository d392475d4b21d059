import type { ValidateFunction } from 'ajv';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { PrecompileReply, PrecompileRequest } from './schema-worker';

/**
 * Compiles JSON Schemas into ajv validators off Node-RED's event loop: ajv generates the code in a
 * worker thread (see schema-worker.ts); here that code is only evaluated, which costs a parse, not
 * a compile. One worker for the process, started on demand and unref'd, so it never keeps Node-RED
 * (or a test run) alive; a worker that dies fails what it had and the next call starts another.
 */
let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, { resolve: (r: PrecompileReply) => void; reject: (e: Error) => void }>();

function schemaWorker(): Worker {
  if (worker) return worker;
  const started = new Worker(path.join(__dirname, 'schema-worker.js'));
  started.unref();
  started.on('message', (reply: PrecompileReply) => {
    const waiting = pending.get(reply.id);
    pending.delete(reply.id);
    waiting?.resolve(reply);
  });
  const fail = (err: Error): void => {
    if (worker === started) worker = undefined;
    for (const waiting of pending.values()) waiting.reject(err);
    pending.clear();
  };
  started.on('error', fail);
  started.on('exit', (code) => fail(new Error(`The schema compiler stopped (exit ${code}).`)));
  worker = started;
  return started;
}

/** Each schema as ajv standalone source, or the reason ajv refused it, in order; and the extras asked. */
export function precompileSchemas(request: Omit<PrecompileRequest, 'id'>): Promise<PrecompileReply> {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    const target = schemaWorker();
    // While a request waits the worker must keep the process alive enough to answer it.
    target.ref();
    const settle = (): void => {
      if (pending.size === 0) target.unref();
    };
    pending.set(id, {
      resolve: (r) => {
        resolve(r);
        settle();
      },
      reject: (e) => {
        reject(e);
        settle();
      },
    });
    target.postMessage({ ...request, id });
  });
}

const ajvRequire = createRequire(require.resolve('ajv'));

/**
 * A validator from ajv standalone source: the code ajv generated, evaluated on its first use. A
 * large schema's code is megabytes; a node whose runtime is a child (where the answer is validated)
 * never uses it, and one that does pays a parse, not a compile.
 */
export function loadValidator(code: string): ValidateFunction {
  let loaded: ValidateFunction | undefined;
  const validate = function (this: unknown, data: unknown, ...rest: unknown[]) {
    loaded ??= evaluate(code);
    const valid = (loaded as (...args: unknown[]) => boolean).call(this, data, ...rest);
    validate.errors = loaded.errors;
    return valid;
  } as ValidateFunction;
  validate.errors = null;
  return validate;
}

function evaluate(code: string): ValidateFunction {
  const module = { exports: {} as unknown };
  // The generated code is ajv's own output for a schema (data, never code from the flow: ajv
  // escapes every value it embeds), and needs only ajv's runtime helpers.
  new Function('module', 'exports', 'require', code)(module, module.exports, ajvRequire);
  return module.exports as ValidateFunction;
}
