/**
 * Writes a llama-architecture GGUF (v3) with random weights in the exact shape of a real small model,
 * so that benchmarks see realistic bytes per token without a download: decode speed depends on the
 * tensor sizes and types, never on the weights' values (the text is gibberish). Default shape:
 * SmolLM2-135M (30 layers, d 576, 9 heads / 3 KV heads, FFN 1536, tied embeddings), Q8_0 weights,
 * F32 norms of 1, and the real Llama-2 SentencePiece tokenizer copied from a test model.
 *
 *   npm run build && node dist/bench/synth-gguf.js --out bench/models/smol135-q8_0.gguf [--vocab 32000|49152]
 *     [--shape smol135|qwen05] [--weights q8_0|q4_0] [--layers N] [--hidden N] [--heads N] [--kv-heads N] [--ffn N] [--context N] [--seed N] [--tokenizer FILE]
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNodeLlamaCpp } from '../lib/runtime';
import { testModelsDir } from '../test/support/models';

export interface ModelShape {
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  context: number;
  rmsEps: number;
  ropeFreqBase: number;
  /** Biases on the Q, K and V projections (Qwen2 has them). */
  qkvBias?: boolean;
}

export const SMOL135: ModelShape = {
  name: 'SmolLM2-135M-shaped (random weights)',
  layers: 30,
  hidden: 576,
  heads: 9,
  kvHeads: 3,
  ffn: 1536,
  context: 2048,
  rmsEps: 1e-5,
  ropeFreqBase: 100_000,
};

/** Qwen2.5-0.5B's geometry written as the llama architecture (with its Q/K/V biases). */
export const QWEN05: ModelShape = {
  name: 'Qwen2.5-0.5B-shaped (random weights)',
  layers: 24,
  hidden: 896,
  heads: 14,
  kvHeads: 2,
  ffn: 4864,
  context: 32768,
  rmsEps: 1e-6,
  ropeFreqBase: 1_000_000,
  qkvBias: true,
};

export type WeightType = 'q8_0' | 'q4_0';

export interface SynthOptions {
  out: string;
  shape?: Partial<ModelShape>;
  /** Vocabulary size: the tokenizer source's own (32000 for Llama-2), or larger, padded with unused tokens. */
  vocab?: number;
  /** The GGUF whose tokenizer is copied. */
  tokenizerFrom?: string;
  seed?: number;
  /**
   * The type of the layer matrices: q8_0, or q4_0 as llama-quantize's Q4_0 mix writes it (the tied
   * token embedding, which is also the LM head, stays Q8_0).
   */
  weights?: WeightType;
}

export interface SynthResult {
  path: string;
  bytes: number;
  params: number;
  vocab: number;
  shape: ModelShape;
}

// GGUF metadata value types and the ggml tensor types used here.
const GGUF = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;
const GGML_F32 = 0;
const GGML_Q8_0 = 8;
const ALIGNMENT = 32;
const Q8_0_BLOCK = 32;
const Q8_0_BYTES = 34;
const GGML_Q4_0 = 2;
const Q4_0_BYTES = 18;
/** Token type "unused" in llama.cpp's vocabulary (padding up to the real vocab size). */
const TOKEN_UNUSED = 5;
const WEIGHT_STD = 0.02;

export type MetaValue =
  | { type: 'u32' | 'i32' | 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; of: 'string'; value: readonly string[] }
  | { type: 'array'; of: 'f32' | 'i32'; value: ArrayLike<number> };

interface TensorSpec {
  name: string;
  /** ggml order: dims[0] is the row length. */
  dims: number[];
  type: typeof GGML_F32 | typeof GGML_Q8_0 | typeof GGML_Q4_0;
  /** F32 filled with 0 (a bias) rather than 1 (a norm). */
  zero?: boolean;
}

/** Grows as it is written; only the header (metadata + tensor infos, a few MB with the vocab) lives here. */
export class ByteWriter {
  private buf = Buffer.alloc(1 << 20);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u32(v: number): void {
    this.reserve(4);
    this.length = this.buf.writeUInt32LE(v, this.length);
  }
  i32(v: number): void {
    this.reserve(4);
    this.length = this.buf.writeInt32LE(v, this.length);
  }
  u64(v: number | bigint): void {
    this.reserve(8);
    this.length = this.buf.writeBigUInt64LE(BigInt(v), this.length);
  }
  f32(v: number): void {
    this.reserve(4);
    this.length = this.buf.writeFloatLE(v, this.length);
  }
  u8(v: number): void {
    this.reserve(1);
    this.length = this.buf.writeUInt8(v, this.length);
  }
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.reserve(bytes.length);
    this.length += bytes.copy(this.buf, this.length);
  }
  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    this.reserve(pad);
    this.buf.fill(0, this.length, this.length + pad);
    this.length += pad;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

export function writeMeta(w: ByteWriter, key: string, v: MetaValue): void {
  w.string(key);
  w.u32(GGUF[v.type]);
  switch (v.type) {
    case 'u32':
      return w.u32(v.value);
    case 'i32':
      return w.i32(v.value);
    case 'f32':
      return w.f32(v.value);
    case 'bool':
      return w.u8(v.value ? 1 : 0);
    case 'string':
      return w.string(v.value);
    case 'array': {
      w.u32(GGUF[v.of]);
      w.u64(v.value.length);
      if (v.of === 'string') for (const s of v.value as readonly string[]) w.string(s);
      else if (v.of === 'f32')
        for (let i = 0; i < v.value.length; i++) w.f32((v.value as ArrayLike<number>)[i]);
      else for (let i = 0; i < v.value.length; i++) w.i32((v.value as ArrayLike<number>)[i]);
      return;
    }
  }
}

function tensorBytes(t: TensorSpec): number {
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (t.type === GGML_F32) return n * 4;
  return (n / Q8_0_BLOCK) * (t.type === GGML_Q8_0 ? Q8_0_BYTES : Q4_0_BYTES);
}

function tensorsOf(shape: ModelShape, vocab: number, weights: WeightType): TensorSpec[] {
  const { hidden, heads, kvHeads, ffn } = shape;
  const kvDim = (hidden / heads) * kvHeads;
  const layerType = weights === 'q4_0' ? GGML_Q4_0 : GGML_Q8_0;
  const q8 = (name: string, ...dims: number[]): TensorSpec => ({ name, dims, type: GGML_Q8_0 });
  const w = (name: string, ...dims: number[]): TensorSpec => ({ name, dims, type: layerType });
  const f32 = (name: string, ...dims: number[]): TensorSpec => ({ name, dims, type: GGML_F32 });
  const bias = (name: string, dim: number): TensorSpec => ({ name, dims: [dim], type: GGML_F32, zero: true });
  // No output.weight: llama.cpp then uses token_embd as the LM head (tied, like SmolLM2).
  const tensors = [q8('token_embd.weight', hidden, vocab), f32('output_norm.weight', hidden)];
  for (let i = 0; i < shape.layers; i++) {
    const b = `blk.${i}.`;
    tensors.push(
      f32(`${b}attn_norm.weight`, hidden),
      w(`${b}attn_q.weight`, hidden, hidden),
      w(`${b}attn_k.weight`, hidden, kvDim),
      w(`${b}attn_v.weight`, hidden, kvDim),
      w(`${b}attn_output.weight`, hidden, hidden),
      f32(`${b}ffn_norm.weight`, hidden),
      w(`${b}ffn_gate.weight`, hidden, ffn),
      w(`${b}ffn_up.weight`, hidden, ffn),
      w(`${b}ffn_down.weight`, ffn, hidden),
    );
    if (shape.qkvBias) {
      tensors.push(
        bias(`${b}attn_q.bias`, hidden),
        bias(`${b}attn_k.bias`, kvDim),
        bias(`${b}attn_v.bias`, kvDim),
      );
    }
  }
  return tensors;
}

/** IEEE half from a float (normal range only, which is all a weight scale needs). */
export function toHalf(value: number): number {
  const f = new Float32Array([value]);
  const bits = new Uint32Array(f.buffer)[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = ((bits >>> 23) & 0xff) - 127 + 15;
  const mantissa = (bits >>> 13) & 0x3ff;
  if (exp <= 0 || exp >= 31) throw new Error(`scale ${value} is outside the f16 normal range`);
  return sign | (exp << 10) | mantissa;
}

/** Q4_0 blocks: one f16 scale, then 32 nibbles (value = nibble - 8); uniform nibbles have std ≈ 4.61. */
function fillQ4_0(buf: Buffer, next: () => number): void {
  const scale = toHalf(WEIGHT_STD / Math.sqrt((16 * 16 - 1) / 12));
  const words = new Uint32Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 4));
  for (let i = 0; i < words.length; i++) words[i] = next();
  for (let i = words.length * 4; i < buf.length; i++) buf[i] = next() & 0xff;
  for (let off = 0; off < buf.length; off += Q4_0_BYTES) buf.writeUInt16LE(scale, off);
}

/** Seeded, so that the same options give the same file (and the same sha256 for the registry's cache). */
function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/**
 * Q8_0 blocks: one f16 scale, then 32 int8. The int8 are uniform over [-128, 127] (std ≈ 73.9), so
 * the scale 0.02 / 73.9 gives weights of std ≈ 0.02, as an initialised transformer has.
 */
function fillQ8_0(buf: Buffer, next: () => number): void {
  const scale = toHalf(WEIGHT_STD / Math.sqrt((256 * 256 - 1) / 12));
  const words = new Uint32Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 4));
  for (let i = 0; i < words.length; i++) words[i] = next();
  for (let i = words.length * 4; i < buf.length; i++) buf[i] = next() & 0xff;
  for (let off = 0; off < buf.length; off += Q8_0_BYTES) buf.writeUInt16LE(scale, off);
}

function defaultTokenizerSource(): string {
  return path.join(testModelsDir(), 'llama-2-tiny-random.gguf');
}

export async function synthesizeGguf(options: SynthOptions): Promise<SynthResult> {
  const shape: ModelShape = { ...SMOL135, ...options.shape };
  if (shape.hidden % shape.heads !== 0 || shape.heads % shape.kvHeads !== 0)
    throw new Error('hidden must divide by heads, and heads by KV heads');
  if (shape.hidden % Q8_0_BLOCK !== 0 || shape.ffn % Q8_0_BLOCK !== 0)
    throw new Error(`hidden and ffn must be multiples of ${Q8_0_BLOCK} for Q8_0`);

  const { readGgufFileInfo } = await loadNodeLlamaCpp();
  const source = options.tokenizerFrom ?? defaultTokenizerSource();
  const info = await readGgufFileInfo(source, { readTensorInfo: false, logWarnings: false });
  const tok = info.metadata.tokenizer?.ggml as
    | {
        model: string;
        tokens: string[];
        scores?: number[];
        token_type?: number[];
        bos_token_id?: number;
        eos_token_id?: number;
        unknown_token_id?: number;
      }
    | undefined;
  if (!tok?.tokens?.length) throw new Error(`${source} has no tokenizer.ggml.tokens to copy`);
  const srcVocab = tok.tokens.length;
  const vocab = options.vocab ?? srcVocab;
  if (vocab < srcVocab)
    throw new Error(`--vocab ${vocab} is smaller than the tokenizer's ${srcVocab} tokens`);
  const pad = vocab - srcVocab;
  const tokens = pad ? [...tok.tokens, ...Array.from({ length: pad }, (_, i) => `<unused${i}>`)] : tok.tokens;
  const scores = Float32Array.from({ length: vocab }, (_, i) => (i < srcVocab ? (tok.scores?.[i] ?? 0) : 0));
  const types = Int32Array.from({ length: vocab }, (_, i) =>
    i < srcVocab ? (tok.token_type?.[i] ?? 1) : TOKEN_UNUSED,
  );

  const meta: Array<[string, MetaValue]> = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: shape.name }],
    // LLAMA_FTYPE_MOSTLY_Q4_0 = 2, LLAMA_FTYPE_MOSTLY_Q8_0 = 7
    ['general.file_type', { type: 'u32', value: options.weights === 'q4_0' ? 2 : 7 }],
    ['general.alignment', { type: 'u32', value: ALIGNMENT }],
    ['llama.vocab_size', { type: 'u32', value: vocab }],
    ['llama.context_length', { type: 'u32', value: shape.context }],
    ['llama.embedding_length', { type: 'u32', value: shape.hidden }],
    ['llama.block_count', { type: 'u32', value: shape.layers }],
    ['llama.feed_forward_length', { type: 'u32', value: shape.ffn }],
    ['llama.rope.dimension_count', { type: 'u32', value: shape.hidden / shape.heads }],
    ['llama.rope.freq_base', { type: 'f32', value: shape.ropeFreqBase }],
    ['llama.attention.head_count', { type: 'u32', value: shape.heads }],
    ['llama.attention.head_count_kv', { type: 'u32', value: shape.kvHeads }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: shape.rmsEps }],
    ['tokenizer.ggml.model', { type: 'string', value: tok.model }],
    ['tokenizer.ggml.tokens', { type: 'array', of: 'string', value: tokens }],
    ['tokenizer.ggml.scores', { type: 'array', of: 'f32', value: scores }],
    ['tokenizer.ggml.token_type', { type: 'array', of: 'i32', value: types }],
  ];
  for (const [key, id] of [
    ['tokenizer.ggml.bos_token_id', tok.bos_token_id],
    ['tokenizer.ggml.eos_token_id', tok.eos_token_id],
    ['tokenizer.ggml.unknown_token_id', tok.unknown_token_id],
  ] as const) {
    if (id !== undefined) meta.push([key, { type: 'u32', value: id }]);
  }

  const tensors = tensorsOf(shape, vocab, options.weights ?? 'q8_0');
  const header = new ByteWriter();
  header.u32(0x46554747); // "GGUF"
  header.u32(3);
  header.u64(tensors.length);
  header.u64(meta.length);
  for (const [key, value] of meta) writeMeta(header, key, value);
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    header.string(t.name);
    header.u32(t.dims.length);
    for (const d of t.dims) header.u64(d);
    header.u32(t.type);
    header.u64(offset);
    offsets.push(offset);
    offset += tensorBytes(t);
    offset += (ALIGNMENT - (offset % ALIGNMENT)) % ALIGNMENT;
  }
  header.padTo(ALIGNMENT);

  // Written beside the target and renamed, so an interrupted run never leaves a plausible file.
  mkdirSync(path.dirname(path.resolve(options.out)), { recursive: true });
  const partial = `${options.out}.partial`;
  const fd = openSync(partial, 'w');
  const next = xorshift32(options.seed ?? 1);
  try {
    writeSync(fd, header.bytes());
    let written = 0;
    for (const [i, t] of tensors.entries()) {
      if (offsets[i] > written) writeSync(fd, Buffer.alloc(offsets[i] - written));
      const size = tensorBytes(t);
      const data = Buffer.alloc(size);
      if (t.type === GGML_F32) new Float32Array(data.buffer, data.byteOffset, size / 4).fill(t.zero ? 0 : 1);
      else if (t.type === GGML_Q4_0) fillQ4_0(data, next);
      else fillQ8_0(data, next);
      writeSync(fd, data);
      written = offsets[i] + size;
    }
  } finally {
    closeSync(fd);
  }
  renameSync(partial, options.out);

  const params = tensors.reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
  return { path: path.resolve(options.out), bytes: statSync(options.out).size, params, vocab, shape };
}

function parseArgs(argv: string[]): SynthOptions {
  const shape: Partial<ModelShape> = {};
  const options: SynthOptions = { out: '', shape };
  const ints: Record<string, keyof ModelShape> = {
    '--layers': 'layers',
    '--hidden': 'hidden',
    '--heads': 'heads',
    '--kv-heads': 'kvHeads',
    '--ffn': 'ffn',
    '--context': 'context',
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    const int = (): number => {
      const n = Number(value);
      if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} must be a positive whole number`);
      return n;
    };
    if (flag === '--out') options.out = value;
    else if (flag === '--vocab') options.vocab = int();
    else if (flag === '--seed') options.seed = int();
    else if (flag === '--tokenizer') options.tokenizerFrom = value;
    else if (flag === '--weights' && (value === 'q8_0' || value === 'q4_0')) options.weights = value;
    else if (flag === '--shape' && (value === 'smol135' || value === 'qwen05'))
      Object.assign(shape, { ...(value === 'qwen05' ? QWEN05 : SMOL135), ...shape });
    else if (flag in ints) (shape as Record<string, number>)[ints[flag]] = int();
    else throw new Error(`unknown option ${flag}`);
  }
  if (!options.out) throw new Error('--out FILE is required');
  return options;
}

/** Where the benches keep what they build once: synthesized models, llama.cpp tools, state. */
export const BENCH_CACHE_DIR = process.env.EDGE_LLM_CACHE ?? path.join(os.homedir(), '.cache', 'edge-llm');

/** A synthesized model in the exact shape of a real small one, by key ("smol", "qwen"). */
export interface ShapedModel {
  key: string;
  label: string;
  path: string;
}

const SHAPED = [
  {
    key: 'smol',
    label: 'SmolLM2-135M shape, Q8_0, vocab 49152',
    file: 'smol135v49k-q8_0.gguf',
    make: (out: string) => synthesizeGguf({ out, shape: SMOL135, vocab: 49152 }),
  },
  {
    key: 'qwen',
    label: 'Qwen2.5-0.5B shape, Q4_0, vocab 151936',
    file: 'qwen05v152k-q4_0.gguf',
    make: (out: string) => synthesizeGguf({ out, shape: QWEN05, vocab: 151936, weights: 'q4_0' }),
  },
];

/** The wanted shaped models in BENCH_CACHE_DIR/models, synthesized once where missing. */
export async function shapedModels(wanted: string[]): Promise<ShapedModel[]> {
  const out: ShapedModel[] = [];
  for (const m of SHAPED.filter((x) => wanted.includes(x.key))) {
    const file = path.join(BENCH_CACHE_DIR, 'models', m.file);
    if (!existsSync(file)) {
      console.error(`synthesizing ${file} ...`);
      await m.make(file);
    }
    out.push({ key: m.key, label: m.label, path: file });
  }
  return out;
}

if (require.main === module) {
  (async () => {
    const started = Date.now();
    const r = await synthesizeGguf(parseArgs(process.argv.slice(2)));
    console.log(
      `${r.path}: ${(r.bytes / 1e6).toFixed(1)} MB, ${(r.params / 1e6).toFixed(1)} M params, vocab ${r.vocab}, ` +
        `${r.shape.layers} layers, d ${r.shape.hidden}, ${r.shape.heads}/${r.shape.kvHeads} heads, ffn ${r.shape.ffn} ` +
        `(${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
  })().catch((err: Error) => {
    console.error(err.message);
    process.exitCode = 1;
  });
}
