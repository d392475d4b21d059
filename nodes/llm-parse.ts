import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { MISSION_EXAMPLES, MISSION_INSTRUCTION, MISSION_SCHEMA, systemPrompt } from '../lib/parse';
import { renderTemplate, type Example } from '../lib/prompt';
import { compileSchema, type CompiledSchema } from '../lib/runtime';
import {
  LlmNodeSupport,
  parseGenerationSettings,
  type GenerationDef,
  type GenerationSettings,
} from './llm-common';

interface LlmParseDef extends NodeDef, GenerationDef {
  instruction: string;
  schema: string;
  examples: string;
  allowOverride: boolean;
}

type ParseMsg = NodeMessageInFlow & { schema?: unknown; llm?: unknown; rejected?: unknown };

const NS = 'node-red-contrib-edge-llm/llm-parse:llm-parse';

export = function (RED: NodeAPI) {
  function LlmParse(this: Node, def: LlmParseDef): void {
    RED.nodes.createNode(this, def);
    const support = new LlmNodeSupport(RED, this, def.runtime, NS, def.sessions);
    let settings: GenerationSettings | undefined;
    let schema: CompiledSchema | undefined;
    let examples: Example[] = [];
    let configError: string | undefined;
    try {
      settings = parseGenerationSettings(def);
      const rawSchema = def.schema?.trim() ? JSON.parse(def.schema) : MISSION_SCHEMA;
      schema = compileSchema(rawSchema);
      examples = def.examples?.trim()
        ? parseExamples(JSON.parse(def.examples))
        : def.schema?.trim()
          ? []
          : MISSION_EXAMPLES;
      for (const example of examples) {
        if (!schema.validate(example.output))
          throw new Error(support.t('errors.bad-example', { input: example.input }));
      }
    } catch (err) {
      configError = `${support.t('errors.bad-config')}: ${(err as Error).message}`;
      this.status({ fill: 'red', shape: 'ring', text: support.t('status.config-error') });
      this.error(configError);
    }
    const instruction = def.instruction?.trim() ? def.instruction : MISSION_INSTRUCTION;

    support.onInput<ParseMsg>(async (msg, send, done) => {
      if (configError || !settings || !schema) throw new Error(configError);
      const text = typeof msg.payload === 'string' ? msg.payload : JSON.stringify(msg.payload ?? '');
      if (!text.trim()) throw new Error(support.t('errors.empty-input'));
      let active = schema;
      if (msg.schema !== undefined) {
        if (!def.allowOverride) throw new Error(support.t('errors.override-refused'));
        active = compileSchema(msg.schema);
      }
      const runtime = await support.runtime(support.timeoutMs(settings));
      await support.ask(msg, send, done, {
        settings,
        runtime,
        system: systemPrompt(
          renderTemplate(instruction, (path) => RED.util.getMessageProperty(msg, path)),
          active.schema,
        ),
        examples: active === schema ? examples : [],
        text,
        schema: active,
        deliver: (result) => ({
          payload: result.value,
          path: ['ReceiveCmd', 'Parse'],
          update: { spec: result.value },
          status: support.t('status.ok', { ms: Math.round(result.totalMs) }),
        }),
      });
    });

    support.closeWith();
  }

  RED.nodes.registerType('llm-parse', LlmParse as unknown as (this: Node, def: NodeDef) => void);
};

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
