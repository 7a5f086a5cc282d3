/**
 * `Model` and `GqaAttention`: thin wrappers over a backend handle (native or wasm memory).
 */

import type { BackendName, LayerHandle, ModelHandle, RawTensor } from "./backend.js";
import { callBinding, callBindingAsync, coreOptions, GqaError } from "./errors.js";
import type { AttentionConfig, ModelConfig } from "./gqa.js";
import { arrayOfCount, checkDimsCount, checkInputBytes, checkTypedArray } from "./inputs.js";
import { Tensor } from "./tensor.js";
import { createSession, type Session, type SessionOptions } from "./session.js";
import { evaluateModel, headOf, prepareFit, predictModel, type EvalResult, type EvaluateOptions, type FitHistory, type FitOptions, type HeadOptions, type TrainingData } from "./train.js";

/** Options of {@link Model.exportOnnx}. */
export interface OnnxExportOptions {
  /**
   * The input transform of a `gqa train` model computed in the graph before the model
   * (`gqa_core::onnx::InputTransform`): per-channel `(x - mean) / std`, per-row instance
   * normalisation when `instanceNorm`, non-overlapping patches of `patch` steps (default 1).
   */
  inputTransform?: { mean: number[]; std: number[]; instanceNorm?: boolean; patch?: number };
}

/** Options of a forward pass. */
export interface ForwardOptions {
  /**
   * Per-sequence lengths `L_b` (`1 <= L_b <= T`, one per batch row): sequences are left-aligned,
   * keys at `j >= L_b` are masked and padded input values do not matter (SPEC section 2).
   */
  lengths?: ArrayLike<number>;
  /**
   * Absolute position of the first position (an integer >= 0, default 0): position `t` is
   * rotated as `positionOffset + t` (rotary only; the causal and sliding-window mask is
   * relative and does not change). Compare a stream's outputs with a forward over the same
   * absolute positions.
   */
  positionOffset?: number;
}

/** Options of calls that read lengths only (`predict`, `attentionMaps`): no `positionOffset`. */
export type LengthsOptions = Omit<ForwardOptions, "positionOffset">;

/** Rejects `positionOffset` where a call does not take it (a JS caller may pass it anyway). */
function noPositionOffset(options: LengthsOptions, call: string): void {
  if (typeof options === "object" && options !== null && (options as ForwardOptions).positionOffset !== undefined) {
    throw GqaError.invalidInput("positionOffset", `no positionOffset: ${call} runs from position 0 (forward takes it)`, JSON.stringify((options as ForwardOptions).positionOffset));
  }
}

/** `options.positionOffset`, checked: an integer in `0..2^53-1` (default 0). */
function positionOffsetOf(options: ForwardOptions): number | undefined {
  if (typeof options !== "object" || options === null || !Object.hasOwn(options, "positionOffset")) return undefined;
  const p = options.positionOffset;
  if (p === undefined) return undefined;
  if (typeof p !== "number" || !Number.isSafeInteger(p) || p < 0) {
    throw GqaError.invalidInput("positionOffset", "an integer in 0..2^53-1", JSON.stringify(p));
  }
  return p;
}

function checkData(data: Float32Array, backend: BackendName): void {
  checkTypedArray(data, "input");
  checkInputBytes(data, "input", backend);
}

function checkDims(dims: readonly number[], what: string): void {
  if (what === "dims" && Array.isArray(dims)) checkDimsCount(dims, what);
  if (!Array.isArray(dims) || dims.some((d) => !Number.isInteger(d) || d < 0 || d > 0xffffffff)) {
    throw GqaError.invalidInput(what, "an array of integers in 0..2^32-1", JSON.stringify(dims));
  }
}

/**
 * `options.lengths` as a checked plain array (callers may pass `number[]` or a typed array): its
 * length must be `dims[0]` (one per sequence), checked before any element is read. With dims
 * that are not `[B, T, E]` the core reports the dims and lengths are not read.
 */
function lengthsOf(options: ForwardOptions, dims: readonly number[]): number[] | undefined {
  if (typeof options !== "object" || options === null || !Object.hasOwn(options, "lengths") || options.lengths === undefined) return undefined;
  if (dims.length !== 3) return undefined;
  const lengths = arrayOfCount(options.lengths, "lengths", dims[0]!, "lengths", "one per sequence");
  checkDims(lengths, "lengths");
  return lengths;
}

function toTensor(raw: RawTensor): Tensor {
  return new Tensor(raw.data, raw.dims);
}

/** Shared behaviour of {@link Model} and {@link GqaAttention}. */
abstract class Layer<Options, Handle extends LayerHandle = LayerHandle> {
  /** The backend that holds this layer's weights. */
  readonly backend: BackendName;
  #handle: Handle | null;
  #config: Options | undefined;
  /** The last queued mutating call (see {@link Layer.exclusive}); never rejects. */
  #tail: Promise<void> = Promise.resolve();
  /** Mutating calls queued or running. */
  #queued = 0;

  /** @internal use `GQA.build`, `GQA.load` or `GQA.buildGqaAttention`. */
  constructor(backend: BackendName, handle: Handle) {
    this.backend = backend;
    this.#handle = handle;
  }

  /** The live handle, or `DISPOSED`. */
  protected get handle(): Handle {
    if (this.#handle === null) {
      throw GqaError.disposed(this instanceof GqaAttention ? "attention layer" : "model");
    }
    return this.#handle;
  }

  /** Every option (defaults filled in), as the core validated them. */
  get config(): Options {
    if (this.#config === undefined) this.#config = callBinding(() => this.handle.config()) as Options;
    return this.#config;
  }

  /** Exact number of parameters (weights, biases, LayerNorm gamma/beta). */
  get paramCount(): number {
    return callBinding(() => this.handle.paramCount());
  }

  /**
   * Forward pass, off the main thread on the native backend (napi `AsyncTask`); the wasm backend
   * computes synchronously and resolves.
   *
   * Inputs are owned by the call: `data`, `dims` and `lengths` are read (native: copied) before
   * this returns its promise, so the caller may change, reuse, shrink (a resizable
   * `ArrayBuffer`) or transfer them at once; the work never reads the caller's memory later.
   * `data` must be a real `Float32Array` (not a Proxy around one) over a buffer that is not
   * detached, and `lengths` must have `B` entries (checked before it is read).
   *
   * Shapes: model input `dims = [B, T, E]` -> `[B, H]` (`last_timestep`, `mean_pool`) or `[B, T, H]`
   * (`all`); attention input `[B, T, H]` -> `[B, T, H]`. `B = 0` gives an empty tensor.
   *
   * @throws GqaError `INVALID_INPUT` (dims/length/lengths), `OUT_OF_MEMORY`, `DISPOSED`
   */
  async forward(data: Float32Array, dims: number[], options: ForwardOptions = {}): Promise<Tensor> {
    checkData(data, this.backend);
    checkDims(dims, "dims");
    const lengths = lengthsOf(options, dims);
    const at = positionOffsetOf(options);
    const h = this.handle;
    return toTensor(await callBindingAsync(() => h.forwardAsync(data, dims, lengths, at)));
  }

  /** Same as {@link forward}, blocking the calling thread. */
  forwardSync(data: Float32Array, dims: number[], options: ForwardOptions = {}): Tensor {
    checkData(data, this.backend);
    checkDims(dims, "dims");
    const lengths = lengthsOf(options, dims);
    const at = positionOffsetOf(options);
    return toTensor(callBinding(() => this.handle.forward(data, dims, lengths, at)));
  }

  /** The weights as safetensors bytes: canonical names, F32, config in metadata. */
  async save(): Promise<Uint8Array> {
    return callBinding(() => this.handle.save());
  }

  /** Writes {@link save}'s bytes to a file (Node and Deno only). */
  async saveFile(path: string): Promise<void> {
    const bytes = await this.save();
    const g = globalThis as { Deno?: { writeFile?(path: string, data: Uint8Array): Promise<void> } };
    if (g.Deno?.writeFile) {
      await g.Deno.writeFile(path, bytes);
      return;
    }
    const fs = await import("node:fs/promises");
    await fs.writeFile(path, bytes);
  }

  /** FNV-1a 64-bit digest (hex) of every weight's F32 bytes in canonical order: equal digests = bitwise equal weights. */
  weightsDigest(): string {
    return callBinding(() => this.handle.weightsDigest());
  }

  /**
   * Runs `run` after every mutating call queued before it (one at a time, in call order).
   * @internal
   */
  protected exclusive<T>(run: () => Promise<T>): Promise<T> {
    const idle = this.#queued === 0;
    this.#queued++;
    const wrapped = async (): Promise<T> => {
      try {
        return await run();
      } finally {
        this.#queued--;
      }
    };
    // Nothing ahead: start now, so the binding takes the inputs before the caller gets control back.
    const p = idle ? wrapped() : this.#tail.then(wrapped, wrapped);
    this.#tail = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  /** Whether a mutating call (`fit`) is queued or running. @internal */
  protected get busy(): boolean {
    return this.#queued > 0;
  }

  /**
   * Frees the backend memory. Later calls throw `GqaError` code `DISPOSED`. Idempotent. Queued
   * like `fit`: the `fit` calls made before it still run to completion, and the memory is freed
   * when the last of them ends (at once when none is pending).
   */
  dispose(): void {
    const h = this.#handle;
    this.#handle = null;
    if (h === null) return;
    if (this.#queued > 0) void this.#tail.then(() => h.free());
    else h.free();
  }

  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.#handle === null;
  }
}

/**
 * The GQA transformer model (SPEC section 2), optionally with a task head (classification or
 * regression) for `fit`, `evaluate` and `predict`. Create with `GQA.build` or `GQA.load`.
 */
export class Model extends Layer<ModelConfig, ModelHandle> {
  /** The task head's options (`GQA.build({..., head})` or the file's `gqa_head` metadata), or null. */
  get head(): HeadOptions | null {
    return headOf(this.handle);
  }

  /**
   * Creates a KV-cache session for streaming inference (prefill + decode; see {@link Session}):
   * `batch` rows (default 1) of up to `maxLen` positions. The session keeps its own reference to
   * the weights, so disposing the model later does not affect it.
   * @throws GqaError `INVALID_INPUT` (`maxLen`, `batch`), `OUT_OF_MEMORY` (cache too large), `DISPOSED`
   */
  async session(options: SessionOptions): Promise<Session> {
    const h = this.handle;
    return createSession(this.backend, (batch, maxLen) => h.createSession(batch, maxLen), options);
  }

  /**
   * Attention probabilities of every layer and query head (for inspection and visualisation):
   * input `dims = [B, T, E]` (optional `lengths` as in {@link forward}) -> `Tensor [L, B, NH, T, T]`
   * where `[l, b, i, q, k]` is how much query position `q` of head `i` in layer `l` attends to key
   * `k`. Query head `i` reads KV head `floor(i / (NH / NKV))`. Rows sum to 1; keys `k > q`
   * (causal), `k >= lengths[b]` and, with `slidingWindow: W`, `k <= q - W` are 0. Computed with the core's reference attention ops
   * (`gqa_core::inspect::attention_maps`), synchronously on both backends.
   * @throws GqaError `INVALID_INPUT` (dims/length/lengths), `OUT_OF_MEMORY`, `DISPOSED`
   */
  async attentionMaps(data: Float32Array, dims: number[], options: LengthsOptions = {}): Promise<Tensor> {
    noPositionOffset(options, "attentionMaps");
    checkData(data, this.backend);
    checkDims(dims, "dims");
    const lengths = lengthsOf(options, dims);
    const h = this.handle;
    return toTensor(callBinding(() => h.attentionMaps(data, dims, lengths)));
  }

  /**
   * The model (and its task head, if any) as ONNX bytes (`gqa_core::onnx::export`; opset 17,
   * standard operators, weights inlined) for ONNX Runtime or any ONNX consumer. Inputs: `input`
   * float32 `[batch, seq, embedDim]` (dynamic `batch` and `seq`) and `lengths` int64 `[batch]`
   * (valid positions per row, `1..seq`; pass `seq` for unpadded rows). Outputs: `output` float32
   * (`[batch, hiddenSize]` for `last_timestep` / `mean_pool`, `[batch, seq, hiddenSize]` for
   * `all`), plus `probabilities` `[batch, numClasses]` (classification head) or `values`
   * `[batch, outDim]` (regression head). Rotary (RoPE, Edifice yarn, Hugging Face scalings) is
   * computed in the graph, so no maximum length is baked in. `options.inputTransform`: the input
   * transform of a `gqa train` model (`{mean, std, instanceNorm, patch}`, ts/data/transform.ts)
   * computed in the graph, whose `input` is then the raw series `[batch, steps, C]` with
   * `lengths` raw steps (`C * patch` must equal `embedDim`).
   * @throws GqaError `INVALID_OPTION` (an unknown option; an input transform that does not fit the
   *   model, naming `onnxOptions.inputTransform`; weights over the 2 GiB protobuf limit),
   *   `OUT_OF_MEMORY`, `DISPOSED`
   */
  exportOnnx(options: OnnxExportOptions = {}): Uint8Array {
    const h = this.handle;
    return callBinding(() => h.exportOnnx(coreOptions(options ?? {}, "onnxOptions")));
  }

  /** Whether the model has a task head. */
  get hasHead(): boolean {
    return this.head !== null;
  }

  /**
   * Trains the model and its head in place (AdamW, warmup + cosine schedule, global-norm
   * clipping, dropout in train mode; see {@link FitOptions}). Native: each step runs off the
   * main thread; wasm: the loop yields to the event loop between steps. Same `seed` on the same
   * backend: the same loss curve.
   *
   * One mutating call at a time per model: concurrent `fit` calls (and `dispose`) on one model
   * queue and run one after the other in call order, on both backends, so four concurrent fits
   * give the weights of the same four fits run sequentially. Forwards, predictions and sessions
   * started during a fit are not queued: each sees the weights before or after a step, never a
   * mix. Inputs are owned by the call: `data`, `options` and `options.validation` are checked
   * and read (copied when the fit has to wait its turn) before this returns its promise.
   *
   * Shapes: `data.x: [N, T, E]`, `data.labels: [N]` class indices or `[N, K]` targets.
   * @returns per-epoch mean loss, accuracy, optional validation figures, seconds; step count
   * @throws GqaError `INVALID_OPTION` (no head, bad fit option), `INVALID_INPUT` (sizes, lengths,
   *   labels out of range or of the wrong kind), `INTERNAL` (loss became non-finite), `DISPOSED`
   */
  async fit(data: TrainingData, options: FitOptions = {}): Promise<FitHistory> {
    const h = this.handle;
    return this.exclusive(prepareFit(h, this.backend, data, options, this.busy));
  }

  /**
   * Loss, accuracy and predicted classes in eval mode (no dropout).
   * @throws GqaError `INVALID_OPTION` (no head, batchSize), `INVALID_INPUT`, `DISPOSED`
   */
  async evaluate(data: TrainingData, options: EvaluateOptions = {}): Promise<EvalResult> {
    return evaluateModel(this.handle, this.backend, data, options);
  }

  /**
   * Head outputs for a batch `[B, T, E]`: class PROBABILITIES `[B, C]` (softmax of the logits;
   * rows sum to 1) for a classification head, values `[B, K]` for a regression head. Off the main
   * thread on native. Inputs are owned by the call, as for {@link forward}.
   * @throws GqaError `INVALID_OPTION` (no head), `INVALID_INPUT`, `DISPOSED`
   */
  async predict(input: Float32Array, dims: number[], options: LengthsOptions = {}): Promise<Tensor> {
    noPositionOffset(options, "predict");
    checkData(input, this.backend);
    checkDims(dims, "dims");
    return predictModel(this.handle, input, dims, lengthsOf(options, dims));
  }
}

/** A standalone GQA attention layer (`q_proj`, `k_proj`, `v_proj`, `out_proj`). Create with `GQA.buildGqaAttention`. */
export class GqaAttention extends Layer<AttentionConfig> {}
