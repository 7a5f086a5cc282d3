/* tslint:disable */
/* eslint-disable */

/** Output of a forward pass: row-major values and their dims (`[B,H]` or `[B,T,H]`). */
export interface ForwardOutput {
    /** Row-major f32 values. */
    data: Float32Array;
    /** Shape, outermost first. */
    dims: Array<number>;
}



/**
 * A GQA attention layer (`q_proj`, `k_proj`, `v_proj`, `out_proj`) in wasm memory.
 */
export class Attention {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Builds the layer from attention options. Errors: `INVALID_OPTION`.
     */
    static build(options: any): Attention;
    /**
     * Every option (TypeScript names).
     */
    config(): any;
    /**
     * `forward` as a promise (settled before it returns: wasm has no thread of its own).
     */
    forwardAsync(data: Float32Array | number[], dims: Uint32Array | number[], lengths?: Uint32Array | number[] | null, position_offset?: number | null): Promise<ForwardOutput>;
    /**
     * Forward pass. `dims = [B,T,H]`; `position_offset`: absolute position of position 0
     * (rotary; an integer, default 0).
     */
    forward(data: Float32Array | number[], dims: Uint32Array | number[], lengths?: Uint32Array | number[] | null, position_offset?: number | null): ForwardOutput;
    /**
     * Loads the layer from safetensors bytes and the load options
     * (`{config?, hfConfig?, layer?, strict?, prefix?}`, see `GqaAttention::load_value`): a gqa
     * file (`q_proj.weight`, ...) or, with `hfConfig` + `layer`, one decoder layer's
     * `self_attn` of a Hugging Face checkpoint.
     */
    static load(bytes: Uint8Array | number[], options: any): Attention;
    /**
     * Exact parameter count.
     */
    paramCount(): number;
    /**
     * The weights as safetensors bytes.
     */
    save(): Uint8Array;
    /**
     * FNV-1a 64-bit digest of every weight (16 hex digits).
     */
    weightsDigest(): string;
}

/**
 * A GQA model (backbone plus optional head: a `gqa_core::train::TaskModel`) in wasm memory
 * (call `free()` to release it; a `Trainer` keeps its own reference).
 */
export class Model {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Attention probabilities `[L,B,NH,T,T]` (`gqa_core::inspect::attention_maps`) for input
     * `dims = [B,T,E]` with optional `lengths`; rows sum to 1, causal and padded keys are 0.
     * Errors: `INVALID_INPUT`, `OUT_OF_MEMORY`.
     */
    attentionMaps(data: Float32Array | number[], dims: Uint32Array | number[], lengths?: Uint32Array | number[] | null): ForwardOutput;
    /**
     * Builds a model from options (weights from `seed`) and an optional head
     * (`{type: "classification", numClasses: C}` or `{type: "regression", outDim: K, ...}`).
     * Errors: `INVALID_OPTION`, `OUT_OF_MEMORY`.
     */
    static build(options: any, head: any): Model;
    /**
     * Every option (TypeScript names).
     */
    config(): any;
    /**
     * Evaluates in eval mode (no dropout) in batches of `batchSize`; resolves to the `EvalReport`
     * (`{loss, accuracy, predictions, count}`), settled before it returns (wasm has no thread of
     * its own). Arguments as [`Model::trainer`].
     * Errors: `INVALID_OPTION` (no head, batchSize 0), `INVALID_INPUT`.
     */
    evaluateAsync(x: Float32Array | number[], dims: Uint32Array | number[], lengths: Uint32Array | number[] | null | undefined, class_labels: Uint32Array | number[] | null | undefined, targets: Float32Array | number[] | null | undefined, batch_size: number): Promise<any>;
    /**
     * The model (and its head) as ONNX bytes (`gqa_core::onnx::export`: opset 17, inputs
     * `input` `[batch, seq, embedDim]` f32 and `lengths` `[batch]` i64, output `output`, plus
     * `probabilities` / `values` with a head). `options`: `OnnxOptions` (`{}`).
     * Errors: `INVALID_OPTION` (options, a model too large for one ONNX file), `OUT_OF_MEMORY`.
     */
    exportOnnx(options: any): Uint8Array;
    /**
     * `forward` as a promise (settled before it returns: wasm has no thread of its own).
     */
    forwardAsync(data: Float32Array | number[], dims: Uint32Array | number[], lengths?: Uint32Array | number[] | null, position_offset?: number | null): Promise<ForwardOutput>;
    /**
     * Forward pass. `dims = [B,T,E]`; `lengths` one per batch row; `position_offset`: absolute
     * position of position 0 (rotary; an integer, default 0).
     */
    forward(data: Float32Array | number[], dims: Uint32Array | number[], lengths?: Uint32Array | number[] | null, position_offset?: number | null): ForwardOutput;
    /**
     * Whether the model has a task head.
     */
    hasHead(): boolean;
    /**
     * The head's options (what `gqa_head` metadata holds), or `null` without a head.
     */
    headConfig(): any;
    /**
     * Loads a model (and its head, from `gqa_head` metadata) from safetensors bytes and
     * `LoadOptions`.
     */
    static load(bytes: Uint8Array | number[], options: any): Model;
    /**
     * Exact parameter count, the head's included.
     */
    paramCount(): number;
    /**
     * `predict` as a promise (settled before it returns).
     */
    predictAsync(data: Float32Array | number[], dims: Uint32Array | number[], lengths?: Uint32Array | number[] | null): Promise<ForwardOutput>;
    /**
     * Head outputs `[B,K]`: class probabilities (classification) or values (regression).
     * `dims = [B,T,E]`. Errors: `INVALID_OPTION` (no head), `INVALID_INPUT`.
     */
    predict(data: Float32Array | number[], dims: Uint32Array | number[], lengths?: Uint32Array | number[] | null): ForwardOutput;
    /**
     * The weights as safetensors bytes (canonical names, F32, `gqa_config` metadata; with a
     * head also `head.weight`, `head.bias` and `gqa_head` metadata).
     */
    save(): Uint8Array;
    /**
     * Creates a KV-cache session for `batch` rows of up to `maxLen` positions each (a
     * sliding-window model's session may omit it: unbounded, constant memory).
     * Errors: `INVALID_INPUT` (`maxLen` 0, or absent without `slidingWindow`), `OUT_OF_MEMORY`
     * (cache over the buffer limit).
     */
    session(batch: number, max_len?: number | null): Session;
    /**
     * Starts a training run on this model (which needs a head). `x: [N*T*E]` row-major with
     * `dims = [N,T,E]`, sequences left-aligned with `lengths[n]` valid steps (default all `T`);
     * exactly one of `classLabels` (`[N]`, classification head) or `targets` (`[N*K]`,
     * regression); `fitOptions` = the core's `FitOptions` (camelCase).
     * Errors: `INVALID_OPTION` (fit options, no head), `INVALID_INPUT` (sizes, lengths, labels).
     */
    trainer(x: Float32Array | number[], dims: Uint32Array | number[], lengths: Uint32Array | number[] | null | undefined, class_labels: Uint32Array | number[] | null | undefined, targets: Float32Array | number[] | null | undefined, fit_options: any): Trainer;
    /**
     * FNV-1a 64-bit digest of every backbone weight (16 hex digits; the head is not included).
     */
    weightsDigest(): string;
}

/**
 * A batched KV-cache session (`gqa_core::session::Session`): per layer K/V caches
 * `[B, NKV, maxLen, D]` f32 in wasm memory, rows with independent lengths (call `free()`).
 */
export class Session {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Cache bytes per cached token and row: `2 * numLayers * numKvHeads * headDim * 4` (SPEC section 4).
     */
    kvCacheBytesPerToken(): number;
    /**
     * Bytes allocated for the K and V caches of all layers: `B * maxLen * kvCacheBytesPerToken`.
     */
    kvCacheBytes(): number;
    /**
     * Positions pushed so far per row (`B` values; absolute, also after a sliding window
     * dropped old keys).
     */
    lengths(): Uint32Array;
    /**
     * `push` as a promise (settled before it returns: wasm has no thread of its own).
     */
    pushAsync(data: Float32Array | number[], dims: Uint32Array | number[], lengths: Uint32Array | number[] | null | undefined, all: boolean): Promise<ForwardOutput>;
    /**
     * `pushPredict` as a promise (settled before it returns: wasm has no thread of its own).
     */
    pushPredictAsync(data: Float32Array | number[], dims: Uint32Array | number[], lengths?: Uint32Array | number[] | null): Promise<ForwardOutput>;
    /**
     * `push`, then the model's head on each row's output: `[B,K]` class probabilities or
     * regression values. Errors: as `push`; `INVALID_OPTION` (no head, `outputMode` all).
     */
    pushPredict(data: Float32Array | number[], dims: Uint32Array | number[], lengths?: Uint32Array | number[] | null): ForwardOutput;
    /**
     * Pushes a chunk `data: [B,t,E]` (`dims = [B,t,E]`); `lengths` = new valid positions per
     * row (default `t`). Returns the output mode at each row's newest position (`[B,H]`, or
     * `[B,t,H]` for `all`), or at every new position (`[B,t,H]`) when `allPositions`.
     * Errors: `INVALID_INPUT`, `CACHE_FULL` (the session is unchanged).
     */
    push(data: Float32Array | number[], dims: Uint32Array | number[], lengths: Uint32Array | number[] | null | undefined, all: boolean): ForwardOutput;
    /**
     * Forgets every cached position (the allocation is kept).
     */
    reset(): void;
    /**
     * Number of rows `B`.
     */
    readonly batch: number;
    /**
     * Cache slots per row: `maxLen`, or a sliding-window model's ring slots.
     */
    readonly capacity: number;
    /**
     * Most positions per row (`maxLen`), `undefined` for an unbounded sliding-window session.
     */
    readonly maxLen: number | undefined;
}

/**
 * One training run over a model with a head (the core's `Trainer`). Holds its own reference to
 * the model, so freeing the JS `Model` does not end the run.
 */
export class Trainer {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * `step` as a promise (settled before it returns: wasm has no thread of its own; the
     * TypeScript layer yields to the event loop before each step).
     */
    stepAsync(): Promise<any>;
    /**
     * Takes the next step; returns the `StepReport` (camelCase).
     * Errors: `INVALID_INPUT` once the run is done; `INTERNAL` for a non-finite loss.
     */
    step(): any;
    /**
     * Whether every step has been taken.
     */
    readonly done: boolean;
    /**
     * Steps per epoch, `ceil(N / batchSize)`.
     */
    readonly stepsPerEpoch: number;
    /**
     * Steps of the whole run, `stepsPerEpoch * epochs`.
     */
    readonly totalSteps: number;
}

/**
 * Test hook (mirrors `gqa_core::testing`): arms a forced Rust panic at `site` (`forward`,
 * `push`, `step`; `undefined` disarms). In wasm a panic traps; the test suite proves the
 * TypeScript layer reports it as `INTERNAL` and the module keeps working.
 */
export function __testPanicSite(site?: string | null): void;

/**
 * The field names of every options, config and report struct exchanged with the
 * TypeScript layer, `{"GqaConfig": ["dropout", "embedDim", ...], ...}`
 * (`gqa_core::schema::api_fields`); the TypeScript interfaces are checked against it by a test.
 */
export function apiFields(): any;

/**
 * Whether this module was built with CUDA: never (the CUDA addon is a Node addon).
 */
export function cudaBuild(): boolean;

/**
 * The error codes of the core with the names of their fields,
 * `[{"code": "INVALID_OPTION", "fields": ["option", "expected", "found"]}, ...]`
 * (`gqa_core::ERROR_CATALOG`): every error this binding throws carries `code` and those fields as
 * properties. The TypeScript layer's `CORE_ERROR_FIELDS` is checked against it by a test.
 */
export function errorCatalog(): any;

/**
 * Opens a device for the models built and loaded after this call (`{device?: "cpu" | "cuda",
 * ordinal?, dtype?: "f32" | "bf16"}`) and returns its description (`cpu`, `cpu bf16`).
 * Errors: `INVALID_OPTION` (a bad field), `BACKEND` (`cuda`: this module has no CUDA).
 */
export function initDevice(options: any): string;

/**
 * KV-cache bytes per cached token (F32), SPEC section 4.
 *
 * # Errors
 * As [`validate_config`].
 */
export function kvCacheBytesPerToken(options: any): number;

/**
 * `[limit, inUse]` in bytes.
 */
export function memoryUsage(): Float64Array;

/**
 * Edifice's `output_size/1` (= `hiddenSize`).
 *
 * # Errors
 * As [`validate_config`].
 */
export function outputSize(options: any): number;

/**
 * Parameter count: Edifice's approximate formula, or every parameter when `exact`.
 * Returned as a double (exact below 2^53, far above any model that validates).
 *
 * # Errors
 * As [`validate_config`].
 */
export function paramCount(options: any, exact: boolean): number;

/**
 * The model's parameter table (`gqa_core::layout::model_layout_of`),
 * `[{name, shape, init, stream, matmul, axonName}, ...]` in canonical order.
 *
 * # Errors
 * As [`validate_config`].
 */
export function parameterLayout(options: any): any;

/**
 * Edifice's `recommended_defaults/0`.
 */
export function recommendedDefaults(): any;

/**
 * Rotary frequencies of model or attention options at a sequence length,
 * `{invFreq, attentionFactor}` (`gqa_core::attention::rope_frequencies`).
 *
 * # Errors
 * `INVALID_OPTION`.
 */
export function ropeFrequencies(options: any, seq_len: number): any;

/**
 * Sets the limit in bytes (`undefined`: back to the default, 4 GiB; larger values are capped
 * there) and returns the limit now in force. Errors: `INVALID_OPTION` naming `memoryLimit` for
 * 0, a negative, fractional or non-finite number.
 */
export function setMemoryLimit(bytes?: number | null): number;

/**
 * Sets the compute threads (`n >= 1`). The single-threaded module runs everything on the
 * calling thread whatever the count; the threaded module caps each call at `n` of its pool's
 * workers. Errors: `INVALID_OPTION` naming `threads` (threaded module: above the pool's size).
 */
export function setThreads(n: number): void;

/**
 * The SIMD paths of this module, `{kernels: "simd128", gemm: "simd128"}`
 * (`gqa_core::kernels::simd_info`).
 */
export function simdInfo(): any;

/**
 * Runs when the module is instantiated (and on each worker of the threaded module): installs
 * the panic hook that records the message for [`take_last_panic`].
 */
export function start(): void;

/**
 * Takes (and clears) the message of the last panic; `""` when there was none.
 */
export function takeLastPanic(): string;

/**
 * The compute threads calls use (1 in the single-threaded module).
 */
export function threads(): number;

/**
 * Parses and validates options; returns the normalised options (every option written).
 *
 * # Errors
 * `INVALID_OPTION` or `OUT_OF_MEMORY` (see `GqaConfig::validate`).
 */
export function validateConfig(options: any): any;

/**
 * The binding's crate version (for diagnostics).
 */
export function version(): string;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __testPanicSite: (a: number, b: number) => void;
    readonly __wbg_attention_free: (a: number, b: number) => void;
    readonly __wbg_model_free: (a: number, b: number) => void;
    readonly __wbg_session_free: (a: number, b: number) => void;
    readonly __wbg_trainer_free: (a: number, b: number) => void;
    readonly apiFields: () => [number, number, number];
    readonly attention_build: (a: any) => [number, number, number];
    readonly attention_config: (a: number) => [number, number, number];
    readonly attention_forward: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number) => [number, number, number];
    readonly attention_forwardAsync: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number) => any;
    readonly attention_load: (a: number, b: number, c: any) => [number, number, number];
    readonly attention_paramCount: (a: number) => number;
    readonly attention_save: (a: number) => [number, number, number, number];
    readonly attention_weightsDigest: (a: number) => [number, number, number, number];
    readonly cudaBuild: () => number;
    readonly errorCatalog: () => [number, number, number];
    readonly initDevice: (a: any) => [number, number, number, number];
    readonly kvCacheBytesPerToken: (a: any) => [number, number, number];
    readonly memoryUsage: () => [number, number];
    readonly model_attentionMaps: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => [number, number, number];
    readonly model_build: (a: any, b: any) => [number, number, number];
    readonly model_config: (a: number) => [number, number, number];
    readonly model_evaluateAsync: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number, k: number, l: number) => any;
    readonly model_exportOnnx: (a: number, b: any) => [number, number, number, number];
    readonly model_forward: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number) => [number, number, number];
    readonly model_forwardAsync: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number) => any;
    readonly model_hasHead: (a: number) => number;
    readonly model_headConfig: (a: number) => [number, number, number];
    readonly model_load: (a: number, b: number, c: any) => [number, number, number];
    readonly model_paramCount: (a: number) => number;
    readonly model_predict: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => [number, number, number];
    readonly model_predictAsync: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => any;
    readonly model_save: (a: number) => [number, number, number, number];
    readonly model_session: (a: number, b: number, c: number) => [number, number, number];
    readonly model_trainer: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number, k: number, l: any) => [number, number, number];
    readonly model_weightsDigest: (a: number) => [number, number, number, number];
    readonly outputSize: (a: any) => [number, number, number];
    readonly paramCount: (a: any, b: number) => [number, number, number];
    readonly parameterLayout: (a: any) => [number, number, number];
    readonly recommendedDefaults: () => [number, number, number];
    readonly ropeFrequencies: (a: any, b: number) => [number, number, number];
    readonly session_batch: (a: number) => number;
    readonly session_capacity: (a: number) => number;
    readonly session_kvCacheBytes: (a: number) => number;
    readonly session_kvCacheBytesPerToken: (a: number) => number;
    readonly session_lengths: (a: number) => [number, number];
    readonly session_maxLen: (a: number) => number;
    readonly session_push: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number, number];
    readonly session_pushAsync: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => any;
    readonly session_pushPredict: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => [number, number, number];
    readonly session_pushPredictAsync: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => any;
    readonly session_reset: (a: number) => void;
    readonly setMemoryLimit: (a: number, b: number) => [number, number, number];
    readonly setThreads: (a: number) => [number, number];
    readonly simdInfo: () => [number, number, number];
    readonly start: () => void;
    readonly takeLastPanic: () => [number, number];
    readonly threads: () => number;
    readonly trainer_done: (a: number) => number;
    readonly trainer_step: (a: number) => [number, number, number];
    readonly trainer_stepAsync: (a: number) => any;
    readonly trainer_stepsPerEpoch: (a: number) => number;
    readonly trainer_totalSteps: (a: number) => number;
    readonly validateConfig: (a: any) => [number, number, number];
    readonly version: () => [number, number];
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
