/**
 * `GQA`: the entry point. Initialises a backend, answers pure questions about options, and
 * builds or loads models.
 */

import { type BackendChoice, type BackendName, type BackendVariant, type Binding, detectEnvironment, loadBackend, type LoadedBackend } from "./backend.js";
import { callBinding, coreOptions, type CoreValue, GqaError, ownOptions } from "./errors.js";
import { checkInputBytes, registerBudget } from "./inputs.js";
import { GqaAttention, Model } from "./model.js";
import { asModelFileError, ENSEMBLE_METADATA_KEY, readMetadata, unpackEnsemble } from "./model-file.js";
import type { HeadOptions } from "./train.js";
import { DEPRECATED_OPTION_NAMES, type GqaOptions, type OutputMode, type RecommendedDefaults, type RopeScaling, type SharedAttentionOptions } from "./generated/options.js";

// The option types are generated from the core's option structs (schema/options.schema.json by
// `cargo run --release -p gqa-core --example gen-schema`, then ts/generated/options.ts by
// scripts/gen-ts.mjs): names, types, optionality, defaults and doc comments have their one home in
// crates/gqa-core/src/config.rs.
export type { GqaOptions, OutputMode, RecommendedDefaults, RopeScaling, SharedAttentionOptions };

/** Options of {@link GQA.build}: model options plus an optional task head for `fit`/`evaluate`/`predict`. */
export interface BuildOptions extends GqaOptions {
  /** Classification (`{type: "classification", numClasses, classWeights?}`) or regression (`{type: "regression", outDim, loss?, huberDelta?}`) head. */
  head?: HeadOptions;
}

/** Every model option with its value (what `model.config` returns); `headDim` and `ropeScaling` only when set. */
export type ModelConfig = Required<Omit<GqaOptions, "headDim" | "ropeScaling" | keyof typeof DEPRECATED_OPTION_NAMES>> & Pick<GqaOptions, "headDim" | "ropeScaling">;

/** Options of the standalone attention layer (`GQA.buildGqaAttention`). */
export interface AttentionOptions extends SharedAttentionOptions {
  /** Model width `H` (required here); divisible by `numHeads` unless `headDim` is given. */
  hiddenSize: number;
}

/** Every attention option with its value; `headDim` and `ropeScaling` only when set. */
export type AttentionConfig = Required<Omit<AttentionOptions, "headDim" | "ropeScaling">> & Pick<AttentionOptions, "headDim" | "ropeScaling">;

/**
 * A parsed Hugging Face `config.json` of a Llama / Mistral / Qwen2-style model. Read:
 * `hidden_size`, `num_attention_heads`, `num_key_value_heads`, `head_dim`, `rope_theta`,
 * `rope_scaling` (with `rope_type` or the old `type` key) or transformers 5's `rope_parameters`,
 * `attention_bias`, `max_position_embeddings`, `original_max_position_embeddings`,
 * `num_hidden_layers`, `partial_rotary_factor` (must be 1); other keys are ignored.
 */
export type HfConfig = Record<string, unknown>;

/** Options of {@link GQA.loadGqaAttention} for one decoder layer of a Hugging Face checkpoint. */
export interface HfAttentionLoadOptions {
  /** The checkpoint's parsed `config.json`. */
  hfConfig: HfConfig;
  /** Decoder layer index: weights `{prefix}layers.{layer}.self_attn.{q,k,v,o}_proj.{weight,bias}`. */
  layer: number;
  /** Key prefix (e.g. `"model."`); detected when omitted. */
  prefix?: string;
  /** Reject other tensors under that layer's `self_attn.` (`UNEXPECTED_PARAMETER`). Default false. */
  strict?: boolean;
}

/** What {@link GQA.ropeFrequencies} returns. */
export interface RopeFrequencies {
  /** `inv_freq[i]`, `i < headDim/2` (radians per position), f32. */
  invFreq: Float32Array;
  /** Factor on cos and sin (yarn's attention factor; 1 otherwise). */
  attentionFactor: number;
}

/**
 * One parameter tensor of a model (the core's parameter table, `gqa_core::layout`; SPEC section 3).
 * {@link GQA.parameterLayout} lists them in canonical order, the order of a saved file's tensors
 * and of the initial values' random streams.
 */
export interface ParamSpec {
  /** Canonical name, e.g. `blocks.0.attn.q_proj.weight`. */
  name: string;
  /** Shape, PyTorch layout (`[out, in]` for dense weights). */
  shape: number[];
  /** Initialiser: Glorot-uniform from (`seed`, `stream`), or constant zeros / ones. */
  init: "glorot_uniform" | "zeros" | "ones";
  /** ChaCha8 stream of the initial values: the index in canonical order. */
  stream: number;
  /** Whether it is the weight of a matrix product (counted in FLOPs); false for biases and LayerNorm. */
  matmul: boolean;
  /** Its name in an Edifice/Axon checkpoint (`gqa_block_1_attn_q_proj.kernel`, `final_norm.gamma`); kernels there are `[in, out]`. */
  axonName: string;
}

/** Options of {@link GQA.init}. */
export interface InitOptions {
  /**
   * `"native"`, `"wasm"`, `"cuda"` or `"auto"` (default: env `GQA_BACKEND`, else `"auto"`, which
   * never picks `"cuda"`). `"cuda"` loads the CUDA addon (`npm run build:cuda`, docs/cuda.md)
   * and puts every model built or loaded afterwards on the GPU.
   */
  backend?: BackendChoice;
  /**
   * `"cuda"` only: the CUDA device index (default 0). A later `GQA.init({ backend: "cuda" })`
   * naming another `device` or `dtype` opens it for the models built or loaded afterwards.
   */
  device?: number;
  /**
   * `"cuda"` only (see `device`): the parameters' dtype, `"f32"` (default) or
   * `"bf16"` (inference only: matrix products in bf16, the rest in f32; outputs within about
   * 2e-2 of f32; `fit` refuses with `INVALID_OPTION` naming `dtype`).
   */
  dtype?: "f32" | "bf16";
  /**
   * Compute threads (integer >= 1). Native: gqa's own thread pool (a host's global rayon pool
   * is left alone), default env `GQA_THREADS`, else the available cores. Wasm: when the backend
   * loads, a count above 1 (default as native) picks the threaded module where the host can run
   * it (Node, Deno, `crossOriginIsolated` pages; see {@link GQA.variant}) and starts that many
   * workers (at most 255, rayon's limit on 32-bit targets: a larger count is refused with
   * `INVALID_OPTION` before any worker starts); later calls may set any count up to that pool's
   * size (`INVALID_OPTION` above it).
   * The single-threaded wasm module accepts any count and runs on one thread. Applies to calls
   * started afterwards; results are bitwise the same for any count.
   */
  threads?: number;
  /**
   * Wasm only, when the backend loads (or, given later, switches to the other module): `true` loads the module built with relaxed SIMD (its GEMM
   * uses `f32x4.relaxed_madd`, a fused multiply-add), `false` the plain simd128 one. Default:
   * env `GQA_WASM_RELAXED_SIMD` (`0` / `1`), else relaxed wherever the engine validates it
   * (Chromium 114+, Deno; not Node 20, whose V8 has it behind `--experimental-wasm-relaxed-simd`). `GQA.simd.gemm` says which runs (`"relaxed-simd"` or `"simd128"`). Outputs of the
   * two differ in the last bits (fused rounding), within 1e-5 of native.
   */
  relaxedSimd?: boolean;
}

/** The SIMD paths the backend runs on this CPU ({@link GQA.simd}). */
export interface SimdInfo {
  /** gqa's own kernels (attention, LayerNorm, GELU, rotary): `"avx512f"`, `"avx2+fma"`, `"portable"`, `"simd128"`, `"neon"`. */
  kernels: string;
  /** The GEMM micro-kernel family (the `gemm` crate): `"avx512f"`, `"avx2+fma"`, `"scalar"`, `"simd128"`, `"neon"`. */
  gemm: string;
}

/** Options of {@link GQA.load} (the core's `LoadOptions`). */
export interface LoadOptions<C = GqaOptions> {
  /** Options for a file without `gqa_config` metadata (PyTorch/Edifice exports); overrides the metadata. */
  config?: C;
  /** Reject tensors that are not model parameters (`UNEXPECTED_PARAMETER`). Default false. */
  strict?: boolean;
  /** Key prefix of the model tensors (e.g. `"model."`); detected when omitted. */
  prefix?: string;
}

let loaded: LoadedBackend | null = null;
let loading: Promise<LoadedBackend> | null = null;

function binding(): Binding {
  if (!loaded) throw new GqaError("NOT_INITIALIZED", "call `await GQA.init()` (or GQA.build/GQA.load) before this function");
  return loaded.binding;
}

async function ensure(): Promise<LoadedBackend> {
  if (loaded) return loaded;
  await GQA.init();
  return loaded!;
}

/** The deprecated option names already warned about (one warning per name and process). */
const warnedNames = new Set<string>();

/**
 * `opts` with each deprecated option name (`DEPRECATED_OPTION_NAMES`, generated from the core's
 * serde aliases: `windowSize` -> `seqLenHint`) renamed to the current one, unless the current one
 * is given too (the core then rejects the pair with `INVALID_OPTION` naming the old one). `warn`: print a one-time
 * `console.warn` per name (model files that carry an old name are read without one). Returns
 * `opts` itself when no old name is present; a non-object is returned unchanged.
 */
export function currentOptionNames<T>(opts: T, warn = true): T {
  if (typeof opts !== "object" || opts === null || Array.isArray(opts)) return opts;
  let out: Record<string, unknown> | null = null;
  const given = (k: string) => Object.hasOwn(opts, k) && (opts as Record<string, unknown>)[k] !== undefined;
  for (const [old, now] of Object.entries(DEPRECATED_OPTION_NAMES)) {
    if (!given(old) || given(now)) continue;
    if (warn && !warnedNames.has(old)) {
      warnedNames.add(old);
      console.warn(`gqa: \`${old}\` is deprecated: use \`${now}\` (same meaning; the old name will be removed)`);
    }
    out ??= { ...(opts as Record<string, unknown>) };
    out[now] = out[old];
    delete out[old];
  }
  return (out ?? opts) as T;
}

/** Model or attention options for the core ({@link coreOptions}), refusing a non-object; deprecated names renamed ({@link currentOptionNames}). */
function optionsObject(opts: unknown): CoreValue {
  if (typeof opts !== "object" || opts === null || Array.isArray(opts)) {
    throw GqaError.invalidOption("options", "an object of options", opts === null ? "null" : Array.isArray(opts) ? "an array" : typeof opts);
  }
  return coreOptions(currentOptionNames(opts));
}

/**
 * The member count of an ensemble file (its `gqa_ensemble` metadata), or undefined for any other
 * bytes (a malformed file is left to the core's loader, which names the problem).
 */
function ensembleSize(bytes: Uint8Array): string | undefined {
  try {
    return readMetadata(bytes)[ENSEMBLE_METADATA_KEY];
  } catch {
    return undefined;
  }
}

async function readBytes(src: Uint8Array | string): Promise<Uint8Array> {
  if (src instanceof Uint8Array) return src;
  if (typeof src !== "string") {
    throw GqaError.invalidInput("source", "a Uint8Array or a file path", typeof src);
  }
  const g = globalThis as { Deno?: { readFile?(path: string): Promise<Uint8Array> } };
  try {
    if (g.Deno?.readFile) return await g.Deno.readFile(src);
    if (detectEnvironment() !== "node") throw new Error("reading a path needs Node or Deno; pass the bytes instead");
    const fs = await import("node:fs/promises");
    return new Uint8Array(await fs.readFile(src));
  } catch (e) {
    throw GqaError.invalidInput("source", `a readable file`, `cannot read ${src}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}

/** The gqa API: backend, option questions, model construction. */
export const GQA = {
  /**
   * Loads a backend (idempotent: later calls return the first choice unless a different backend
   * is asked for explicitly, which switches; models already built keep their own backend).
   * @throws GqaError `BACKEND_LOAD_FAILED` naming the file tried and the reason
   */
  async init(options: InitOptions = {}): Promise<BackendName> {
    const threads = options.threads;
    if (threads !== undefined && (typeof threads !== "number" || !Number.isInteger(threads) || threads < 1 || threads > 1024)) {
      throw GqaError.invalidOption("threads", "an integer in 1..=1024", typeof threads === "number" ? String(threads) : `${JSON.stringify(threads)} (${typeof threads})`);
    }
    if (options.relaxedSimd !== undefined && typeof options.relaxedSimd !== "boolean") {
      throw GqaError.invalidOption("relaxedSimd", "true or false", JSON.stringify(options.relaxedSimd));
    }
    if (options.device !== undefined && (typeof options.device !== "number" || !Number.isInteger(options.device) || options.device < 0 || options.device > 1023)) {
      throw GqaError.invalidOption("device", "a CUDA device index, an integer in 0..=1023", typeof options.device === "number" ? String(options.device) : `${JSON.stringify(options.device)} (${typeof options.device})`);
    }
    if (options.dtype !== undefined && options.dtype !== "f32" && options.dtype !== "bf16") {
      throw GqaError.invalidOption("dtype", '"f32" or "bf16"', JSON.stringify(options.dtype) ?? String(options.dtype));
    }
    const apply = (b: LoadedBackend) => {
      // Inputs are checked against this module's budget before a binding copies them (wasm32: at
      // most 2^31-1 bytes in one buffer; a larger copy would trap in wasm-bindgen's malloc).
      registerBudget(b.name, () => b.binding.memoryUsage(), b.name === "wasm" ? 2 ** 31 - 1 : Number.MAX_SAFE_INTEGER);
      if (threads !== undefined) callBinding(() => b.binding.setThreads(threads));
      return b.name;
    };
    // A wasm module built the other way than `relaxedSimd` asks for: load that one (a switch, as
    // for an explicit backend; models already built keep their module).
    const relaxedMismatch = loaded?.name === "wasm" && options.relaxedSimd !== undefined && options.relaxedSimd !== loaded.relaxedSimd;
    // The cuda backend asked for another GPU or dtype: open it (later models go there; models
    // already built stay where they are).
    const wantDevice = `cuda:${options.device ?? 0}${options.dtype === "bf16" ? " bf16" : ""}`;
    const cudaMismatch = loaded?.name === "cuda" && options.backend === "cuda" && (options.device !== undefined || options.dtype !== undefined) && wantDevice !== loaded.device;
    if (loaded && !relaxedMismatch && !cudaMismatch && (options.backend === undefined || options.backend === "auto" || options.backend === loaded.name)) {
      return apply(loaded);
    }
    if (loading && options.backend === undefined) return apply(await loading);
    // A relaxedSimd switch keeps the loaded module's thread count unless `threads` says otherwise.
    const wasmThreads = threads ?? (relaxedMismatch ? loaded?.binding.threads() : undefined);
    const p = loadBackend(relaxedMismatch ? "wasm" : options.backend, { threads: wasmThreads, relaxedSimd: options.relaxedSimd }, { device: options.device, dtype: options.dtype });
    loading = p;
    try {
      loaded = await p;
    } finally {
      if (loading === p) loading = null;
    }
    return apply(loaded);
  },

  /** The compute threads of the loaded backend (see {@link InitOptions.threads}), or `null` before `init`. */
  get threads(): number | null {
    return callBinding(() => loaded?.binding.threads() ?? null);
  },

  /** The SIMD paths the loaded backend runs on this CPU, or `null` before `init`. */
  get simd(): SimdInfo | null {
    return callBinding(() => loaded?.binding.simdInfo() ?? null);
  },

  /**
   * The memory budget of the loaded backend, or `null` before `init`: `limit` and `inUse` in
   * bytes. Live models, attention layers, sessions and trainers hold their buffers' bytes
   * (parameters, KV cache, gradients and AdamW moments) until `dispose()`; each running call
   * holds its input and working buffers until it ends. A request that would take `inUse` past
   * `limit` fails with `OUT_OF_MEMORY` before anything is allocated. The native limit is shared
   * by every worker thread of the process; each wasm module instance has its own.
   */
  get memory(): { limit: number; inUse: number } | null {
    const u = callBinding(() => loaded?.binding.memoryUsage());
    return u ? { limit: u[0]!, inUse: u[1]! } : null;
  },

  /**
   * Sets the loaded backend's memory budget in bytes and returns the limit now in force;
   * `undefined` or `null` restores the default: native, the machine's memory (Linux: the smaller
   * of `MemTotal` and the cgroup's `memory.max`); wasm, the 4 GiB a 32-bit memory can address
   * (larger values are capped there). Lowering it frees nothing: later requests fail until
   * enough is disposed.
   * @throws GqaError `INVALID_OPTION` naming `memoryLimit` (not a whole number >= 1), `NOT_INITIALIZED`
   */
  setMemoryLimit(bytes?: number | null): number {
    const b = binding();
    if (bytes !== undefined && bytes !== null && (typeof bytes !== "number" || !Number.isInteger(bytes) || bytes < 1)) {
      throw GqaError.invalidOption("memoryLimit", "a whole number of bytes >= 1 (or null for the default)", typeof bytes === "number" ? String(bytes) : `${JSON.stringify(bytes)} (${typeof bytes})`);
    }
    return callBinding(() => b.setMemoryLimit(bytes ?? undefined));
  },

  /** The backend `init` chose, or `null` before `init`. */
  get backend(): BackendName | null {
    return loaded?.name ?? null;
  },

  /**
   * The module the backend runs, or `null` before `init`: `"native"`, `"cuda"`, `"wasm"` (single-threaded)
   * or `"wasm-threads"` (shared memory and a worker pool of {@link GQA.threads} threads).
   */
  get variant(): BackendVariant | null {
    return loaded?.variant ?? null;
  },

  /** Where models live, or `null` before `init`: `"cpu"`, or the GPU and dtype (`"cuda:0"`, `"cuda:0 bf16"`). */
  get device(): string | null {
    return loaded?.device ?? null;
  },

  /** The file the backend was loaded from (addon or `.wasm`), or `null` before `init`. */
  get backendFile(): string | null {
    return loaded?.file ?? null;
  },

  /** Validates options (SPEC section 1). @throws GqaError `INVALID_OPTION`, `OUT_OF_MEMORY`, `NOT_INITIALIZED` */
  validate(opts: GqaOptions): void {
    const b = binding();
    const o = optionsObject(opts);
    callBinding(() => b.validateConfig(o));
  },

  /** Edifice `output_size/1`: the last dimension of the output (`hiddenSize`). */
  outputSize(opts: GqaOptions): number {
    const b = binding();
    const o = optionsObject(opts);
    return callBinding(() => b.outputSize(o));
  },

  /**
   * Parameter count. Default: Edifice's approximate formula (projection matrices only:
   * `inputProj + numLayers * (2*H*qDim + 2*H*kvDim + 8*H*H)`); `{exact: true}`: every parameter.
   */
  paramCount(opts: GqaOptions, options: { exact?: boolean } = {}): number {
    const b = binding();
    const o = optionsObject(opts);
    return callBinding(() => b.paramCount(o, options.exact === true));
  },

  /**
   * Every parameter tensor a model with these options has, in canonical order (name, shape,
   * initialiser, random stream, Axon name), without building it: the core's parameter table, the
   * one the model, weight loading and `gqa info` use. Sum of element counts =
   * `paramCount(opts, {exact: true})`. @throws GqaError `INVALID_OPTION`, `OUT_OF_MEMORY`
   */
  parameterLayout(opts: GqaOptions): ParamSpec[] {
    const b = binding();
    const o = optionsObject(opts);
    return callBinding(() => b.parameterLayout(o));
  },

  /** KV-cache bytes per cached token (F32): `2 * numLayers * numKvHeads * headDim * 4`. */
  kvCacheBytesPerToken(opts: GqaOptions): number {
    const b = binding();
    const o = optionsObject(opts);
    return callBinding(() => b.kvCacheBytesPerToken(o));
  },

  /**
   * The rotary frequencies a model or attention layer with these options uses for a sequence of
   * `seqLen` positions (default 0; only `dynamic` ropeScaling depends on it).
   * @throws GqaError `INVALID_OPTION` (also for options without rotary, naming `rope`)
   */
  ropeFrequencies(opts: GqaOptions | AttentionOptions, options: { seqLen?: number } = {}): RopeFrequencies {
    const b = binding();
    const o = optionsObject(opts);
    const seqLen = options.seqLen ?? 0;
    if (typeof seqLen !== "number" || !Number.isInteger(seqLen) || seqLen < 0 || seqLen > 0xffffffff) {
      throw GqaError.invalidOption("seqLen", "an integer in 0..=4294967295", JSON.stringify(seqLen));
    }
    const r = callBinding(() => b.ropeFrequencies(o, seqLen));
    return { invFreq: Float32Array.from(r.invFreq), attentionFactor: r.attentionFactor };
  },

  /** Edifice's `recommended_defaults/0`. */
  recommendedDefaults(): RecommendedDefaults {
    const b = binding();
    return callBinding(() => b.recommendedDefaults());
  },

  /**
   * Builds a model with weights initialised from `opts.seed` (initialises the backend if needed);
   * `opts.head` attaches a classification or regression head (its weights continue the seed's
   * stream). @throws GqaError `INVALID_OPTION` (model or head option), `OUT_OF_MEMORY`
   */
  async build(opts: BuildOptions): Promise<Model> {
    const be = await ensure();
    const all = optionsObject(opts) as { [key: string]: CoreValue };
    // Without a prototype, as coreOptions makes every object (a rest spread would add one).
    const model = ownOptions(Object.entries(all).filter(([k]) => k !== "head"));
    const head = all.head;
    return new Model(be.name, callBinding(() => be.binding.buildModel(model, head)));
  },

  /** Builds a standalone GQA attention layer. */
  async buildGqaAttention(opts: AttentionOptions): Promise<GqaAttention> {
    const be = await ensure();
    const o = optionsObject(opts);
    return new GqaAttention(be.name, callBinding(() => be.binding.buildAttention(o)));
  },

  /**
   * Loads a model from safetensors bytes or a file path (Node/Deno). Canonical and Axon names,
   * a common key prefix, F32/F16/BF16 are accepted (SPEC section 3).
   * @throws GqaError `MALFORMED_FILE` (naming the path, or "the given bytes", and what a model
   *   file is), `MISSING_CONFIG`, `TENSOR_MISMATCH`, `MISSING_PARAMETER`,
   *   `UNEXPECTED_PARAMETER`, `NON_FINITE_WEIGHT`
   */
  async load(source: Uint8Array | string, options: LoadOptions = {}): Promise<Model> {
    const be = await ensure();
    const bytes = await readBytes(source);
    const members = ensembleSize(bytes);
    if (members !== undefined) {
      throw GqaError.invalidInput("model file", "one model (GQA.loadEnsemble reads an ensemble file)", `an ensemble of ${members} models ('${ENSEMBLE_METADATA_KEY}' metadata, written by gqa train --ensemble)`);
    }
    const hasConfig = typeof options === "object" && options !== null && options.config !== undefined;
    const o = coreOptions(hasConfig ? { ...options, config: currentOptionNames(options.config) } : options);
    checkInputBytes(bytes, "model file", be.name);
    try {
      return new Model(be.name, callBinding(() => be.binding.loadModel(bytes, o)));
    } catch (e) {
      throw asModelFileError(e, source);
    }
  },

  /**
   * Loads every member of an ensemble file written by `gqa train --ensemble n` (tensors
   * `ensemble.<j>.<name>`, metadata `gqa_ensemble = n`; the main job's `model.safetensors`) as `n`
   * models, in member order; a file of one model gives `[model]`. The CLI predicts with the mean
   * of the members' class probabilities (`predict`), which callers can average the same way.
   * Dispose each model. @throws GqaError `MALFORMED_FILE` (a broken ensemble layout), and each
   * member's load errors as {@link GQA.load}
   */
  async loadEnsemble(source: Uint8Array | string, options: LoadOptions = {}): Promise<Model[]> {
    const bytes = await readBytes(source);
    let parts: Uint8Array[];
    try {
      parts = ensembleSize(bytes) === undefined ? [bytes] : unpackEnsemble(bytes);
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      throw asModelFileError(new GqaError("MALFORMED_FILE", `malformed ensemble file: ${reason}`, { cause: e, fields: { reason } }), source);
    }
    const models: Model[] = [];
    try {
      for (const p of parts) models.push(await GQA.load(p, options));
    } catch (e) {
      for (const m of models) m.dispose();
      throw asModelFileError(e, source);
    }
    return models;
  },

  /**
   * Loads a standalone attention layer from safetensors bytes or a path: a file saved by gqa
   * (`LoadOptions`), or, with `{hfConfig, layer}`, decoder layer `layer`'s self-attention of a
   * Hugging Face Llama / Mistral / Qwen2-style checkpoint (`q_proj`, `k_proj`, `v_proj`,
   * `o_proj`; biases when present, zeros otherwise, required when `attention_bias` is true;
   * F32/F16/BF16). Its `forward` then equals transformers' attention module (causal,
   * positions `0..T-1`). @throws GqaError `INVALID_OPTION` (`hfConfig.*`, `layer`, rotary
   * settings), `MISSING_PARAMETER`, `TENSOR_MISMATCH`, `MALFORMED_FILE`, `NON_FINITE_WEIGHT`
   */
  async loadGqaAttention(source: Uint8Array | string, options: LoadOptions<AttentionOptions> | HfAttentionLoadOptions = {}): Promise<GqaAttention> {
    const be = await ensure();
    const bytes = await readBytes(source);
    const o = coreOptions(options);
    return new GqaAttention(be.name, callBinding(() => be.binding.loadAttention(bytes, o)));
  },

  /** Forgets the loaded backend (tests use it to switch backends). Existing models keep working. */
  reset(): void {
    loaded = null;
    loading = null;
  },
} as const;

/**
 * The loaded backend's binding, or throws `NOT_INITIALIZED`. Internal: for the test hooks of
 * `gqa/testing`; not part of the public API.
 * @internal
 */
export function loadedBinding(): Binding {
  return binding();
}
