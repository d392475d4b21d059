/**
 * `npm start`: Node-RED on 127.0.0.1 with this package and every example flow deployed, an MQTT
 * broker, and the simulated machines the examples talk to. Ctrl-C stops everything.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { loadNodeLlamaCpp } from '../../lib/runtime';
import { DemoBroker } from './broker';
import { demoCredentials, demoKeys, forDemo, type FlowNode } from './flows';
import { Simulators } from './simulators';
import { PACKAGE_ROOT, exampleFlows, nodeRedLauncher, prepareUserDir } from './userdir';

/** The tiny story model the tests use: where it is the only model, the demo runs on it. */
const FALLBACK_MODEL = 'stories260K.gguf';

/**
 * The model every runtime of the demo uses: EDGE_LLM_MODEL; else the examples' own model when its
 * file is in the models directory (no network needed); else the story model where only that is
 * there; else the examples' model, downloaded now with a progress bar.
 */
async function chooseModel(flows: FlowNode[], modelsDir: string): Promise<string | undefined> {
  if (process.env.EDGE_LLM_MODEL) return process.env.EDGE_LLM_MODEL;
  const uri = flows.find((n) => n.type === 'llm-runtime')?.model as string | undefined;
  if (!uri) return undefined;
  const file = uri.split(/[?#]/)[0].split('/').pop() ?? '';
  if (existsSync(path.join(modelsDir, file))) return undefined;
  if (existsSync(path.join(modelsDir, FALLBACK_MODEL))) {
    console.log(`${file} is not in ${modelsDir}: the demo runs on ${FALLBACK_MODEL}, a 260K-parameter story`);
    console.log(
      'model whose answers are well-formed but meaningless. Put an instruct model there for real ones.',
    );
    return FALLBACK_MODEL;
  }
  console.log(`Downloading ${uri} into ${modelsDir} (once)`);
  const { resolveModelFile } = await loadNodeLlamaCpp();
  await resolveModelFile(uri, { directory: modelsDir, fileName: file, cli: true });
  return undefined;
}

/** Where the demo notes the sha256 of the flows.json it deployed last. */
const DEPLOYED_MARK = 'demo-deployed.sha256';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/**
 * Whether flows.json holds edits of the user's: it differs from what the demo deployed last. Those
 * are kept (and their credentials with them); an untouched or missing flows.json is deployed anew, so
 * that a changed model or broker port reaches it. EDGE_LLM_DEMO_RESET=1 deploys the examples anyway.
 */
async function userEditedFlows(userDir: string): Promise<boolean> {
  if (process.env.EDGE_LLM_DEMO_RESET === '1') return false;
  const flowsFile = path.join(userDir, 'flows.json');
  if (!existsSync(flowsFile)) return false;
  const mark = path.join(userDir, DEPLOYED_MARK);
  const deployed = existsSync(mark) ? (await readFile(mark, 'utf8')).trim() : '';
  return sha256(await readFile(flowsFile, 'utf8')) !== deployed;
}

async function main(): Promise<void> {
  const port = Number(process.env.PORT ?? 1880);
  const userDir = process.env.EDGE_LLM_DEMO_DIR ?? path.join(PACKAGE_ROOT, '.node-red-demo');
  const shared = path.resolve(PACKAGE_ROOT, '..', 'shared', 'models');
  const modelsDir =
    process.env.EDGE_LLM_MODELS_DIR ?? (existsSync(shared) ? shared : path.join(userDir, 'models'));
  await mkdir(modelsDir, { recursive: true });

  const examples = (await exampleFlows()) as FlowNode[];
  const model = await chooseModel(examples, modelsDir);
  const broker = await DemoBroker.start(Number(process.env.EDGE_LLM_MQTT_PORT ?? 1883), true);
  const log = (line: string) => console.log(`${new Date().toISOString().slice(11, 23)} [simulator] ${line}`);
  const simulators = await Simulators.start({ url: broker.url, autoFaultEveryMs: 120_000, log });

  await mkdir(userDir, { recursive: true });
  const keep = await userEditedFlows(userDir);
  const flows = keep ? undefined : forDemo(examples, { model, mqttUrl: broker.url });
  const credentials = flows && demoCredentials(flows, await demoKeys(userDir));
  const settings = await prepareUserDir(userDir, { port, flows, credentials });
  if (flows) {
    const written = await readFile(path.join(userDir, 'flows.json'), 'utf8');
    await writeFile(path.join(userDir, DEPLOYED_MARK), sha256(written) + '\n');
  }

  console.log(`edge-llm demo: Node-RED user directory ${userDir}`);
  console.log(`models from ${modelsDir}${model ? `, every runtime on ${model}` : ''}`);
  console.log(`MQTT broker (aedes, MQTT 3.1.1) on ${broker.url}; simulated line and robot connected`);
  if (flows) {
    console.log(
      `${flows.length} nodes from examples/ deployed, keys in ${path.join(userDir, 'demo-keys.json')}`,
    );
  } else {
    console.log('flows.json holds your edits: kept as they are (EDGE_LLM_DEMO_RESET=1 deploys the examples');
    console.log(`again; they point at the broker and model of the run that deployed them)`);
  }

  const child = spawn(process.execPath, [nodeRedLauncher(), '--userDir', userDir, '--settings', settings], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, EDGE_LLM_MODELS_DIR: modelsDir },
  });
  const url = `http://127.0.0.1:${port}`;
  child.stdout.on('data', (chunk: Buffer) => {
    process.stdout.write(chunk);
    if (chunk.toString().includes('Server now running')) {
      console.log(`
  Editor:    ${url}/   (the debug sidebar shows what each example does)
  Runtimes:  ${url}/edge-llm/runtimes?probe=1
  Sessions:  ${url}/edge-llm/sessions
  Approvals: ${url}/dashboard/approvals   (examples 01 and 02: what waits for a person, and the missions)

  01 Predictive maintenance: a bearing fault starts every 2 minutes (or click "Simulate a bearing
     fault on pump-2"); tickets go to ${path.join(userDir, 'maintenance-tickets.jsonl')}
  02 Inspection robot mission: click "Start the inspection mission", then watch ${url}/edge-llm/mission/7e15510a2b3c4d5e;
     reports go to ${path.join(userDir, 'robot-mission-reports.jsonl')}
  03 Privacy-first assistant:
     curl -s -X POST ${url}/ask -H 'content-type: application/json' \\
       -d '{"question": "Write a short note to Maria Keller (maria.keller@example.com) about the pump."}'
     curl -s ${url}/healthz

  Ctrl-C stops Node-RED, the simulators and the broker.
`);
    }
  });

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping Node-RED, then the simulators and the broker');
    child.kill('SIGINT');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  child.on('exit', (code) => {
    // Node-RED first, so its last MQTT packets and acks still find the broker.
    void simulators
      .stop()
      .then(() => broker.stop())
      .finally(() => process.exit(code ?? 0));
  });
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
