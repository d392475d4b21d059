import { writeFile } from 'node:fs/promises';
import { ByteWriter, toHalf, writeMeta, type MetaValue } from '../../bench/synth-gguf';
import { loadNodeLlamaCpp } from '../../lib/runtime';

const ALIGNMENT = 32;
const GGML_F32 = 0;
const GGML_F16 = 1;

export interface LoraOptions {
  /** The base model the adapter is made for (its tensor shapes are read from it). */
  model: string;
  out: string;
  /** Base tensors that get a lora_a / lora_b pair; default: the output head. */
  targets?: string[];
  rank?: number;
  alpha?: number;
  /** Weights are uniform in [-magnitude, magnitude]; 0 writes an adapter that changes nothing. */
  magnitude?: number;
  type?: 'f32' | 'f16';
  seed?: number;
  /** What the file claims: for adapters that must be refused. */
  generalType?: string;
  architecture?: string;
  /** Writes only lora_a for the first target (a broken pair). */
  dropB?: boolean;
  /** Gives the first target's lora_a one more column than the model's tensor has. */
  wrongShape?: boolean;
}

/**
 * Writes a LoRA adapter GGUF (v3) for a model, laid out as llama.cpp's llama-adapter.cpp reads
 * it: general.type "adapter", adapter.type "lora", adapter.lora.alpha, and for each base tensor W
 * of shape [n_in, n_out] a pair `W.lora_a` [n_in, r] and `W.lora_b` [r, n_out].
 */
export async function writeLoraGguf(options: LoraOptions): Promise<string> {
  const { readGgufFileInfo } = await loadNodeLlamaCpp();
  const info = await readGgufFileInfo(options.model, { readTensorInfo: true, logWarnings: false });
  const shapes = new Map((info.fullTensorInfo ?? []).map((t) => [t.name, t.dimensions.map(Number)]));
  const rank = options.rank ?? 4;
  const type = options.type === 'f16' ? GGML_F16 : GGML_F32;
  const tensors: Array<{ name: string; dims: number[] }> = [];
  for (const [i, name] of (options.targets ?? ['output.weight']).entries()) {
    const w = shapes.get(name);
    if (!w) throw new Error(`${options.model} has no tensor ${name}`);
    tensors.push({ name: `${name}.lora_a`, dims: [w[0] + (options.wrongShape && i === 0 ? 1 : 0), rank] });
    if (!(options.dropB && i === 0)) tensors.push({ name: `${name}.lora_b`, dims: [rank, w[1]] });
  }
  const meta: Array<[string, MetaValue]> = [
    [
      'general.architecture',
      { type: 'string', value: options.architecture ?? String(info.metadata.general.architecture) },
    ],
    ['general.type', { type: 'string', value: options.generalType ?? 'adapter' }],
    ['general.alignment', { type: 'u32', value: ALIGNMENT }],
    ['adapter.type', { type: 'string', value: 'lora' }],
    ['adapter.lora.alpha', { type: 'f32', value: options.alpha ?? rank }],
  ];
  const header = new ByteWriter();
  header.u32(0x46554747); // "GGUF"
  header.u32(3);
  header.u64(tensors.length);
  header.u64(meta.length);
  for (const [key, value] of meta) writeMeta(header, key, value);
  const bytesOf = (dims: number[]): number => dims.reduce((a, b) => a * b, 1) * (type === GGML_F32 ? 4 : 2);
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    header.string(t.name);
    header.u32(t.dims.length);
    for (const d of t.dims) header.u64(d);
    header.u32(type);
    header.u64(offset);
    offsets.push(offset);
    offset += bytesOf(t.dims);
    offset += (ALIGNMENT - (offset % ALIGNMENT)) % ALIGNMENT;
  }
  header.padTo(ALIGNMENT);
  const data = Buffer.alloc(offset);
  let state = options.seed ?? 7;
  const next = (): number => {
    // xorshift32: the same adapter on every run
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0xffffffff;
  };
  const magnitude = options.magnitude ?? 0.5;
  tensors.forEach((t, i) => {
    const n = t.dims.reduce((a, b) => a * b, 1);
    for (let k = 0; k < n; k++) {
      const v = magnitude === 0 ? 0 : (next() * 2 - 1) * magnitude;
      if (type === GGML_F32) data.writeFloatLE(v, offsets[i] + k * 4);
      else data.writeUInt16LE(Math.abs(v) < 1e-4 ? 0 : toHalf(v), offsets[i] + k * 2);
    }
  });
  await writeFile(options.out, Buffer.concat([header.bytes(), data]));
  return options.out;
}
