import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow } from 'node-red';
import { CHAT_SYSTEM, chatMessages, chatText, generateChat, type StreamPart } from '../lib/llm/chat';
import { renderTemplate } from '../lib/llm/prompt';
import {
  LlmNodeSupport,
  parseGenerationSettings,
  withOverrides,
  type GenerationDef,
  type GenerationSettings,
  type SettingsMsg,
} from './llm-common';

interface LlmChatDef extends NodeDef, GenerationDef {
  system: string;
  /** Send the answer's pieces on a second output while they are decoded. */
  stream: boolean;
  /** Take msg.temperature, msg.maxTokens, msg.priority and msg.timeout. */
  overrides: boolean;
}

type ChatMsg = NodeMessageInFlow & SettingsMsg & { llm?: unknown; session?: unknown };

const NS = 'node-red-contrib-edge-llm/llm-chat:llm-chat';

export = function (RED: NodeAPI) {
  function LlmChat(this: Node, def: LlmChatDef): void {
    RED.nodes.createNode(this, def);
    const support = new LlmNodeSupport(RED, this, def.runtime, NS, def.sessions);
    // No "rejected" output here: a timeout or a full queue goes to a Catch node with its code.
    support.rejectedOutput = false;
    let settings: GenerationSettings | undefined;
    let configError: string | undefined;
    try {
      settings = parseGenerationSettings(def);
    } catch (err) {
      configError = `${support.t('errors.bad-config')}: ${(err as Error).message}`;
      this.status({ fill: 'red', shape: 'ring', text: support.t('status.config-error') });
      this.error(configError);
    }
    const system = def.system?.trim() ? def.system : CHAT_SYSTEM;

    support.onInput<ChatMsg>(async (msg, send, done) => {
      if (configError || !settings) throw new Error(configError);
      // The bound first: a 10 MB payload is refused before it is looked at further.
      support.checkInput(msg.payload, settings);
      const text = chatText(msg.payload);
      const active = withOverrides(settings, msg, def.overrides !== false);
      const runtime = await support.runtime(support.timeoutMs(active));
      const session = support.sessionTurn(msg, runtime);
      const onPart = def.stream ? (part: StreamPart) => send([null, streamMessage(msg, part)]) : undefined;
      try {
        const instruction = renderTemplate(system, (path) => RED.util.getMessageProperty(msg, path));
        const messages = session
          ? await session.messages(instruction, [], text, runtime)
          : chatMessages(instruction, text);
        const result = await generateChat(runtime, messages, support.options(active, session), onPart);
        msg.payload = result.text;
        if (session) await session.finishText(runtime, text, result);
        const status = support.t('status.ok', { tokens: result.tokensOut, ms: Math.round(result.totalMs) });
        support.answered(msg, result, status, send, done);
      } catch (err) {
        await session?.abandon();
        throw err;
      }
    });

    support.closeWith();
  }

  RED.nodes.registerType('llm-chat', LlmChat as unknown as (this: Node, def: NodeDef) => void);
};

/**
 * A piece of the answer as its own small message: the text, where it falls in the answer, and what
 * a reader needs to route it (the input's _msgid, topic and session), not a copy of the whole input.
 */
function streamMessage(msg: ChatMsg, part: StreamPart): NodeMessage {
  return {
    _msgid: msg._msgid,
    ...(msg.topic !== undefined ? { topic: msg.topic } : {}),
    ...(msg.session !== undefined ? { session: msg.session } : {}),
    payload: part.text,
    stream: { index: part.index, done: part.done },
  } as NodeMessage;
}
