import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { MISSION_EXAMPLES, MISSION_INSTRUCTION, MISSION_SCHEMA, systemPrompt } from '../lib/llm/parse';
import { renderTemplate, type Example } from '../lib/llm/prompt';
import { BadExample, compileSchemaOffLoop, type CompiledSchema } from '../lib/runtime';
import {
  LlmNodeSupport,
  parseGenerationSettings,
  withOverrides,
  type GenerationDef,
  type GenerationSettings,
  type SettingsMsg,
} from './llm-common';

interface LlmParseDef extends NodeDef, GenerationDef {
  instruction: string;
  schema: string;
  examples: string;
  allowOverride: boolean;
  /** Take msg.temperature, msg.maxTokens, msg.priority and msg.timeout. */
  overrides?: boolean;
}

type ParseMsg = NodeMessageInFlow & SettingsMsg & { schema?: unknown; llm?: unknown; rejected?: unknown };

const NS = 'node-red-contrib-edge-llm/llm-parse:llm-parse';

export = function (RED: NodeAPI) {
  function LlmParse(this: Node, def: LlmParseDef): void {
    RED.nodes.createNode(this, def);
    const support = new LlmNodeSupport(RED, this, def.runtime, NS, def.sessions);
    let settings: GenerationSettings | undefined;
    let schema: CompiledSchema | undefined;
    let examples: Example[] = [];
    let configError: string | undefined;
    // The schema is compiled off the event loop (a worker thread); a message that comes before
    // the check has finished waits for it, then ends as it would have.
    const checked = (async () => {
      settings = parseGenerationSettings(def);
      const rawSchema = def.schema?.trim() ? JSON.parse(def.schema) : MISSION_SCHEMA;
      const parsedExamples = def.examples?.trim()
        ? parseExamples(JSON.parse(def.examples))
        : def.schema?.trim()
          ? []
          : MISSION_EXAMPLES;
      try {
        schema = await compileSchemaOffLoop(
          rawSchema,
          parsedExamples.map((example) => example.output),
        );
      } catch (err) {
        if (!(err instanceof BadExample)) throw err;
        throw new Error(support.t('errors.bad-example', { input: parsedExamples[err.index].input }), {
          cause: err,
        });
      }
      examples = parsedExamples;
    })().catch((err: Error) => {
      schema = undefined;
      configError = `${support.t('errors.bad-config')}: ${err.message}`;
      this.status({ fill: 'red', shape: 'ring', text: support.t('status.config-error') });
      this.error(configError);
    });
    const instruction = def.instruction?.trim() ? def.instruction : MISSION_INSTRUCTION;

    support.onInput<ParseMsg>(async (msg, send, done) => {
      await checked;
      if (configError || !settings || !schema) throw new Error(configError);
      // The bound first: a 10 MB payload is refused before it is serialised or tokenized.
      support.checkInput(msg.payload, settings);
      if (isEmpty(msg.payload)) throw new Error(support.t('errors.empty-input'));
      const msgSettings = withOverrides(settings, msg, !!def.overrides);
      const text = typeof msg.payload === 'string' ? msg.payload : JSON.stringify(msg.payload);
      // A msg.schema crosses to the runtime as it is: compiled there (cached by hash), after the
      // queue has room for it.
      let active: { source: object; compiled?: CompiledSchema } = { source: schema.schema, compiled: schema };
      if (msg.schema !== undefined) {
        if (!def.allowOverride) throw new Error(support.t('errors.override-refused'));
        if (typeof msg.schema !== 'object' || msg.schema === null || Array.isArray(msg.schema))
          throw new Error(support.t('errors.bad-schema'));
        active = { source: msg.schema };
      }
      const runtime = await support.runtime(support.timeoutMs(msgSettings));
      await support.ask(msg, send, done, {
        settings: msgSettings,
        runtime,
        system: systemPrompt(
          renderTemplate(instruction, (path) => RED.util.getMessageProperty(msg, path)),
          active.source,
        ),
        examples: active.compiled ? examples : [],
        text,
        schema: active.compiled ?? active.source,
        deliver: (result, elapsedMs) => ({
          payload: result.value,
          path: ['ReceiveCmd', 'Parse'],
          update: { spec: result.value },
          status: support.t('status.ok', { ms: elapsedMs }),
        }),
      });
    });

    support.closeWith();
  }

  RED.nodes.registerType('llm-parse', LlmParse as unknown as (this: Node, def: NodeDef) => void);
};

/** Nothing to read: no payload, null, or a text of only blanks. */
function isEmpty(payload: unknown): boolean {
  return payload === undefined || payload === null || (typeof payload === 'string' && !payload.trim());
}

function parseExamples(raw: unknown): Example[] {
  if (!Array.isArray(raw))
    throw new Error('Examples must be a JSON array of {"input": "...", "output": {...}}.');
  return raw.map((item, i) => {
    if (typeof item?.input !== 'string' || item.output === undefined) {
      throw new Error(`Example ${i + 1} needs "input" (text) and "output" (the JSON answer).`);
    }
    return { input: item.input, output: item.output };
  });
}
