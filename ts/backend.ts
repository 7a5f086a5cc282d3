// wasm-bindgen declares `[Symbol.dispose]()` on each class (bindings/wasm/gqa_wasm.d.ts, which these
// declarations import): kept in the emitted .d.ts so that a consumer whose `lib` predates
// `Symbol.dispose` (e.g. target ES2022) still type-checks them.
/// <reference lib="esnext.disposable" preserve="true" />
/**
 * Backend choice and loading: environment detection (Node, Deno, browser), the ordered list of
 * backends, loading each binding, and the error when loading fails.
 *
 * Three backends implement the same {@link Binding} surface:
 * - `native`: the napi-rs addon (`bindings/node`), built by `scripts/setup.sh`; Node, and Deno
 *   when the `ffi` permission is granted (`--allow-ffi`; Deno loads Node-API addons);
 * - `wasm`: the wasm-bindgen packages (`--target web`), everywhere, in two variants:
 *   `bindings/wasm/pkg-threads` (threaded: shared memory, a rayon pool on worker_threads in Node
 *   and on Web Workers in Deno and browsers) where the host can run it (Node, Deno, browsers
 *   whose page is `crossOriginIsolated`) and more than one thread is asked for, else
 *   `bindings/wasm/pkg` (single-threaded). Both give bitwise the same results. Each also exists
 *   built with relaxed SIMD (`pkg-relaxed`, `pkg-threads-relaxed`: the GEMM's multiply-add is a
 *   fused `f32x4.relaxed_madd`), loaded where the engine validates relaxed SIMD (Chromium 114+,
 *   Deno; not Node 20 without `--experimental-wasm-relaxed-simd`) unless `GQA.init({ relaxedSimd: false })` or
 *   `GQA_WASM_RELAXED_SIMD=0`; results then differ from the plain module's in the last bits.
 *
 * - `cuda`: the napi-rs addon built with the `cuda` feature (`npm run build:cuda`,
 *   `bindings/node/gqa-cuda.linux-x64-gnu.node`): models live on an NVIDIA GPU and run candle's
 *   CUDA ops (docs/cuda.md); only when asked for by name, never by `auto`.
 *
 * Selection: `GQA.init({ backend })`, else the environment variable `GQA_BACKEND`
 * (`auto` | `native` | `wasm` | `cuda`), else `auto` = native when its addon loads, else wasm.
 * A forced backend that cannot load throws `GqaError("BACKEND_LOAD_FAILED")` naming the file
 * tried and the reason. Overrides for the files (Node/Deno): `GQA_NATIVE_PATH` (path of a `.node`
 * addon, or of the napi-rs loader `index.js`), `GQA_CUDA_PATH` (path of the CUDA addon) and
 * `GQA_WASM_PATH` (path of the `.wasm` file; its JS glue `gqa_wasm.js` must sit next to it; a
 * glue that exports `initThreadPool` is run threaded).
 */

import { type CoreValue, freeOnce, GqaError, registerTrapInfo } from "./errors.js";
import type { AttentionConfig, ModelConfig, ParamSpec, RecommendedDefaults, SimdInfo } from "./gqa.js";
import { adaptSession, type SessionHandle } from "./session.js";
import type { ErrorCatalogEntry } from "./testing.js";
import type { EvalResult, HeadOptions, StepReport } from "./train.js";
import type * as NativeModule from "../bindings/node/index.js";
import type * as WasmModule from "../bindings/wasm/gqa_wasm.js";

/** A backend name. */
export type BackendName = "native" | "wasm" | "cuda";
/** What `GQA.init` accepts: a backend name or `"auto"`. */
export type BackendChoice = BackendName | "auto";
/** The JavaScript host. */
export type Environment = "node" | "deno" | "browser" | "unknown";

/**
 * The napi-rs addon's exports, as `napi build` declares them (`bindings/node/index.d.ts`,
 * generated and committed; `scripts/setup.sh` fails when a build changes it).
 */
export type NativeBinding = typeof NativeModule;

/**
 * The wasm-bindgen glue's exports, as wasm-bindgen declares them (`bindings/wasm/gqa_wasm.d.ts`,
 * a committed copy of the generated `pkg/gqa_wasm.d.ts`; `scripts/setup.sh` and
 * `test/binding-types.test.ts` check that they are the same).
 */
export type WasmBinding = typeof WasmModule;

/** The functions both bindings export under the same names, with the same arguments. */
type BindingFunctions =
  | "validateConfig"
  | "outputSize"
  | "paramCount"
  | "kvCacheBytesPerToken"
  | "parameterLayout"
  | "recommendedDefaults"
  | "ropeFrequencies"
  | "version"
  | "errorCatalog"
  | "apiFields"
  | "setThreads"
  | "threads"
  | "simdInfo"
  | "setMemoryLimit"
  | "memoryUsage"
  | "takeLastPanic"
  | "__testPanicSite"
  | "initDevice"
  | "cudaBuild";

/**
 * The surface of a binding module this file uses: its functions and the factories of its two
 * classes, typed by the native declarations. {@link wasmSurface} proves at compile time that the
 * wasm glue has the same surface, so one adapter serves both and checks for nothing.
 */
type BindingModule = Pick<NativeBinding, BindingFunctions> & {
  Model: Pick<NativeBinding["Model"], "build" | "load">;
  Attention: Pick<NativeBinding["Attention"], "build" | "load">;
};

/** A model as both bindings expose it. */
type RawModel = NativeModule.Model;
/** An attention layer as both bindings expose it. */
type RawAttention = NativeModule.Attention;
/** A trainer as both bindings expose it. */
type RawTrainer = NativeModule.Trainer;

/** Output of a binding's forward: row-major values and their dims (both bindings' `ForwardOutput`). */
export type RawTensor = NativeModule.ForwardOutput;

/**
 * An attention layer (or a model) living in native or wasm memory. Options go in and configs and
 * reports come out as plain objects ({@link CoreValue} in, the core's serde field names out),
 * converted by the bindings themselves (napi-rs `serde-json`, serde-wasm-bindgen): no JSON text
 * crosses.
 */
export interface LayerHandle {
  /**
   * Forward pass. `dims = [B, T, E]` (model) or `[B, T, H]` (attention); `lengths` per sequence;
   * `positionOffset`: absolute position of position 0 (rotary).
   */
  forward(data: Float32Array, dims: number[], lengths?: number[], positionOffset?: number): RawTensor;
  /** Same, off the main thread where the backend can (native); wasm runs it synchronously. */
  forwardAsync(data: Float32Array, dims: number[], lengths?: number[], positionOffset?: number): Promise<RawTensor>;
  /** safetensors bytes (canonical names, F32, config metadata). */
  save(): Uint8Array;
  /** Every option (TypeScript names), as the core validated them. */
  config(): ModelConfig | AttentionConfig;
  /** Exact parameter count. */
  paramCount(): number;
  /** FNV-1a 64-bit digest of every weight's bytes in canonical order (hex). */
  weightsDigest(): string;
  /** Frees the backend memory (idempotent). */
  free(): void;
}

/** A model (backbone and optional task head) living in native or wasm memory. */
export interface ModelHandle extends LayerHandle {
  /** Head outputs `[B, K]` (class probabilities or regression values). */
  predict(data: Float32Array, dims: number[], lengths?: number[]): RawTensor;
  /** Same, off the main thread on native. */
  predictAsync(data: Float32Array, dims: number[], lengths?: number[]): Promise<RawTensor>;
  /** The head's options, or null without a head. */
  headConfig(): HeadOptions | null;
  /** Starts a training run (see {@link TrainerHandle}); exactly one of `classes`/`targets`; `fitOptions` = the core's `FitOptions`. */
  createTrainer(x: Float32Array, dims: number[], lengths: Uint32Array | undefined, classes: Uint32Array | undefined, targets: Float32Array | undefined, fitOptions: CoreValue): TrainerHandle;
  /** A KV-cache session of `batch` rows and `maxLen` positions (see `ts/session.ts`). */
  createSession(batch: number, maxLen: number | undefined): SessionHandle;
  /** The model (and head) as ONNX bytes (`gqa_core::onnx::export`); `options` = `OnnxOptions`. */
  exportOnnx(options: CoreValue): Uint8Array;
  /** Attention probabilities `[L, B, NH, T, T]` (`gqa_core::inspect::attention_maps`). */
  attentionMaps(data: Float32Array, dims: number[], lengths?: number[]): RawTensor;
  /** The core's `EvalReport` (`{loss, accuracy, predictions, count}`; `loss` is null for empty data), off the main thread on native. */
  evaluateAsync(x: Float32Array, dims: number[], lengths: Uint32Array | undefined, classes: Uint32Array | undefined, targets: Float32Array | undefined, batchSize: number): Promise<EvalResult>;
}

/**
 * One training run in native or wasm memory (the core's `Trainer`). `stepAsync` runs a step on
 * the libuv thread pool (native) or yields to the event loop and then steps synchronously (wasm).
 */
export interface TrainerHandle {
  /** Next optimisation step; the core's `StepReport`. */
  stepAsync(): Promise<StepReport>;
  /** Steps per epoch, `ceil(N / batchSize)`. */
  readonly stepsPerEpoch: number;
  /** Steps of the whole run. */
  readonly totalSteps: number;
  /** Whether every step has been taken. */
  readonly done: boolean;
  /** Frees the trainer's memory (optimiser state, data copy); idempotent. */
  free(): void;
}

/**
 * The surface both bindings provide to the TypeScript layer. Options are passed as the plain
 * objects {@link coreOptions} makes; every error thrown is an `Error` carrying `code` and the
 * code's fields.
 */
export interface Binding {
  /** Validates options; returns them with every default filled in. */
  validateConfig(options: CoreValue): ModelConfig;
  /** Edifice `output_size/1`. */
  outputSize(options: CoreValue): number;
  /** Edifice `param_count/1` (approximate) or every parameter when `exact`. */
  paramCount(options: CoreValue, exact: boolean): number;
  /** KV-cache bytes per cached token. */
  kvCacheBytesPerToken(options: CoreValue): number;
  /** The parameter table (`gqa_core::layout`): `[{name, shape, init, stream, matmul, axonName}]`. */
  parameterLayout(options: CoreValue): ParamSpec[];
  /** Edifice `recommended_defaults/0`. */
  recommendedDefaults(): RecommendedDefaults;
  /** Rotary frequencies of model or attention options at a sequence length. */
  ropeFrequencies(options: CoreValue, seqLen: number): { invFreq: number[]; attentionFactor: number };
  /** The binding crate's version. */
  version(): string;
  /** `gqa_core::ERROR_CATALOG`, `[{code, fields}]`: the codes and field names its errors carry. */
  errorCatalog(): ErrorCatalogEntry[];
  /** `gqa_core::schema::api_fields`: the serde field names of each boundary struct. */
  apiFields(): Record<string, string[]>;
  /** Sets the compute threads (native: gqa's own pool; wasm: 1 in the single-threaded module). */
  setThreads(n: number): void;
  /** The compute threads calls use now. */
  threads(): number;
  /** SIMD paths `{kernels, gemm}`. */
  simdInfo(): SimdInfo;
  /** Sets the memory budget in bytes (`undefined`: the default); returns the limit in force (`gqa_core::memory`). */
  setMemoryLimit(bytes?: number): number;
  /** `[limit, inUse]` in bytes. */
  memoryUsage(): number[];
  /** Test hook: arms a forced Rust panic at a site (`forward`, `push`, `step`; `undefined` disarms). */
  testPanicSite(site?: string): void;
  /** Builds a model from options and an optional head. */
  buildModel(options: CoreValue, head?: CoreValue): ModelHandle;
  /** Loads a model from safetensors bytes and `LoadOptions`. */
  loadModel(bytes: Uint8Array, options: CoreValue): ModelHandle;
  /** Builds a standalone attention layer from its options. */
  buildAttention(options: CoreValue): LayerHandle;
  /** Loads a standalone attention layer from safetensors bytes and load options (`{config?, hfConfig?, layer?, strict?, prefix?}`). */
  loadAttention(bytes: Uint8Array, options: CoreValue): LayerHandle;
}

/** The module a backend runs: the native addon, the CUDA addon, or one of the two wasm modules. */
export type BackendVariant = "native" | "cuda" | "wasm" | "wasm-threads";

/** A loaded backend: its name, its binding and the file it came from. */
export interface LoadedBackend {
  name: BackendName;
  /** Which module: `"wasm-threads"` is the threaded wasm module. */
  variant: BackendVariant;
  /** Wasm: whether the module is a relaxed-SIMD build (its GEMM reports `"relaxed-simd"`); false for native. */
  relaxedSimd: boolean;
  binding: Binding;
  /** The addon / wasm file that was loaded (path or URL). */
  file: string;
  /** Where its models live: `"cpu"`, or the GPU and dtype (`"cuda:0"`, `"cuda:0 bf16"`). */
  device: string;
}

/** Detects the JavaScript host. */
export function detectEnvironment(): Environment {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Deno === "object" && g.Deno !== null) return "deno";
  const proc = g.process as { versions?: { node?: string } } | undefined;
  if (proc?.versions?.node) return "node";
  if (typeof g.window === "object" || typeof g.importScripts === "function" || typeof g.document === "object") {
    return "browser";
  }
  return "unknown";
}

/** Reads an environment variable in Node or Deno (undefined elsewhere or when not permitted). */
export function envVar(name: string): string | undefined {
  const g = globalThis as { process?: { env?: Record<string, string | undefined> }; Deno?: { env?: { get(name: string): string | undefined } } };
  try {
    if (g.process?.env) return g.process.env[name] ?? undefined;
    if (g.Deno?.env) return g.Deno.env.get(name) ?? undefined;
  } catch {
    /* Deno without --allow-env */
  }
  return undefined;
}

/** Resolves the requested backend from an explicit choice, `GQA_BACKEND`, or `"auto"`. */
export function requestedBackend(choice?: BackendChoice): BackendChoice {
  const raw = choice ?? (envVar("GQA_BACKEND") as BackendChoice | undefined) ?? "auto";
  if (raw !== "auto" && raw !== "native" && raw !== "wasm" && raw !== "cuda") {
    throw new GqaError(
      "BACKEND_LOAD_FAILED",
      `unknown backend "${String(raw)}" (from ${choice ? "GQA.init({backend})" : "GQA_BACKEND"}): expected "auto", "native", "wasm" or "cuda"`,
    );
  }
  return raw;
}

/**
 * The default locations, relative to this module (`ts/` and `dist/` are both one level deep).
 * The native loader is napi-rs's generated `index.js`: it loads `gqa.<triple>.node` beside it (a
 * checkout's build) or else the platform package `gqa-<triple>` (`npm/<triple>`, an optional
 * dependency of the installed `gqa` package, which ships the loader without any `.node` file).
 */
const NATIVE_LOADER_URL = new URL("../bindings/node/index.js", import.meta.url);
const WASM_JS_URL = new URL("../bindings/wasm/pkg/gqa_wasm.js", import.meta.url);
const WASM_BIN_URL = new URL("../bindings/wasm/pkg/gqa_wasm_bg.wasm", import.meta.url);
const WASM_MT_JS_URL = new URL("../bindings/wasm/pkg-threads/gqa_wasm.js", import.meta.url);
const WASM_MT_BIN_URL = new URL("../bindings/wasm/pkg-threads/gqa_wasm_bg.wasm", import.meta.url);
const WASM_RX_JS_URL = new URL("../bindings/wasm/pkg-relaxed/gqa_wasm.js", import.meta.url);
const WASM_RX_BIN_URL = new URL("../bindings/wasm/pkg-relaxed/gqa_wasm_bg.wasm", import.meta.url);
const WASM_MT_RX_JS_URL = new URL("../bindings/wasm/pkg-threads-relaxed/gqa_wasm.js", import.meta.url);
const WASM_MT_RX_BIN_URL = new URL("../bindings/wasm/pkg-threads-relaxed/gqa_wasm_bg.wasm", import.meta.url);
/** [glue, .wasm] of each module, by [threaded][relaxed] (literal URLs: bundlers emit each as an asset). */
const WASM_MODULES: [URL, URL][][] = [
  [[WASM_JS_URL, WASM_BIN_URL], [WASM_RX_JS_URL, WASM_RX_BIN_URL]],
  [[WASM_MT_JS_URL, WASM_MT_BIN_URL], [WASM_MT_RX_JS_URL, WASM_MT_RX_BIN_URL]],
];

/**
 * A 45-byte module whose one function is `f32x4.relaxed_madd` of three splats: it validates
 * exactly where the engine implements relaxed SIMD (the feature-detection approach of
 * wasm-feature-detect; bytes written by hand from the WebAssembly 3.0 binary format).
 */
const RELAXED_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, // magic, version 1
  1, 5, 1, 96, 0, 1, 123, // type section: () -> v128
  3, 2, 1, 0, // function section: one function of type 0
  10, 19, 1, 17, 0, // code section: one body of 17 bytes, no locals
  65, 1, 253, 15, 65, 2, 253, 15, 65, 3, 253, 15, // (i8x16.splat (i32.const 1..3)) x 3
  253, 133, 2, // f32x4.relaxed_madd (0xfd 0x105)
  11, // end
]);

/** Whether this engine implements relaxed SIMD (`WebAssembly.validate` of a one-instruction probe). */
export function wasmRelaxedSimdAvailable(): boolean {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

async function nodeModules() {
  const [fs, url, module, path] = await Promise.all([
    import("node:fs"),
    import("node:url"),
    import("node:module"),
    import("node:path"),
  ]);
  return { fs, url, module, path };
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0]! : String(e);
}

/** Whether Deno has granted the `ffi` permission (needed to load a Node-API addon); false elsewhere. */
function denoFfiGranted(): boolean {
  try {
    const deno = (globalThis as { Deno?: { permissions?: { querySync?(d: { name: string }): { state: string } } } }).Deno;
    return deno?.permissions?.querySync?.({ name: "ffi" })?.state === "granted";
  } catch {
    return false;
  }
}

/** Loads the napi-rs addon (Node; Deno with `--allow-ffi`, through `node:module`'s `createRequire`). */
export async function loadNative(): Promise<LoadedBackend> {
  const env = detectEnvironment();
  if (env !== "node" && env !== "deno") {
    throw new GqaError("BACKEND_LOAD_FAILED", `native backend: needs Node.js or Deno (this host is ${env}); use backend "wasm"`);
  }
  if (env === "deno" && !denoFfiGranted()) {
    throw new GqaError("BACKEND_LOAD_FAILED", `native backend: Deno needs the ffi permission to load the Node-API addon (run with --allow-ffi), or use backend "wasm"`);
  }
  const { fs, url, module, path } = await nodeModules();
  const override = envVar("GQA_NATIVE_PATH");
  const file = override ? path.resolve(override) : url.fileURLToPath(NATIVE_LOADER_URL);
  if (!fs.existsSync(file)) {
    throw new GqaError(
      "BACKEND_LOAD_FAILED",
      `native backend: cannot load ${file}: file not found` +
        (override ? " (from GQA_NATIVE_PATH)" : " (run `bash scripts/setup.sh` to build the addon)"),
    );
  }
  let raw: NativeBinding | undefined;
  try {
    raw = module.createRequire(import.meta.url)(file) as NativeBinding | undefined;
  } catch (e) {
    const proc = (globalThis as { process?: { platform?: string; arch?: string } }).process;
    // napi-rs's "Cannot find native binding" (its first line blames an npm bug): say where the addon comes from.
    const why = !override && reason(e).startsWith("Cannot find native binding")
      ? `no addon for ${proc?.platform}-${proc?.arch}: neither bindings/node/gqa.<triple>.node (a checkout: run \`bash scripts/setup.sh\`) nor the platform package gqa-<triple> (an optional dependency of gqa: reinstall without --omit=optional / --no-optional) is present`
      : reason(e);
    throw new GqaError("BACKEND_LOAD_FAILED", `native backend: cannot load ${file}: ${why}`, { cause: e });
  }
  if (typeof raw?.validateConfig !== "function") {
    throw new GqaError("BACKEND_LOAD_FAILED", `native backend: ${file} is not the gqa addon (no validateConfig export)`);
  }
  return { name: "native", variant: "native", relaxedSimd: false, binding: adaptNative(raw), file, device: "cpu" };
}

/** Options of {@link loadCuda}. */
export interface CudaLoadOptions {
  /** The CUDA device index (default 0). */
  device?: number;
  /** The parameters' dtype: `"f32"` (default; inference and training) or `"bf16"` (inference only). */
  dtype?: "f32" | "bf16";
}

/** The CUDA addon's default location (`npm run build:cuda` writes it; never built by `npm test`). */
const CUDA_ADDON_URL = new URL("../bindings/node/gqa-cuda.linux-x64-gnu.node", import.meta.url);

/** The shared libraries the CUDA addon links ({@link cudaLoadReason} names the missing one). */
const CUDA_LIBRARIES: [RegExp, string][] = [
  [/libcuda\.so/, "no NVIDIA driver: libcuda.so.1 cannot be loaded (install the NVIDIA driver, or run on a machine that has one)"],
  [/lib(cublas|cublasLt|curand|nvrtc)\.so[.\d]*/, "a CUDA 13 library is missing"],
];

/** Why the CUDA addon failed to load, in the user's terms (which library, what to do). */
function cudaLoadReason(e: unknown): string {
  const why = reason(e);
  for (const [pattern, what] of CUDA_LIBRARIES) {
    const m = pattern.exec(why);
    if (m) {
      return what.startsWith("no NVIDIA")
        ? `${what}: ${why}`
        : `${what} (${m[0]}): put the CUDA 13 libraries on LD_LIBRARY_PATH (e.g. pip's nvidia-cublas and nvidia-curand; docs/cuda.md): ${why}`;
    }
  }
  return why;
}

/**
 * Loads the CUDA addon (Node; Deno with `--allow-ffi`) and opens the GPU. Each failure is a
 * `BACKEND_LOAD_FAILED` naming what is missing: the addon file (not built), the NVIDIA driver
 * (`libcuda.so.1`), a CUDA library, a CUDA build of the addon, or a GPU at the index.
 */
export async function loadCuda(options: CudaLoadOptions = {}): Promise<LoadedBackend> {
  const env = detectEnvironment();
  if (env !== "node" && env !== "deno") {
    throw new GqaError("BACKEND_LOAD_FAILED", `cuda backend: needs Node.js or Deno (this host is ${env}); WebGPU is the browser's GPU path`);
  }
  if (env === "deno" && !denoFfiGranted()) {
    throw new GqaError("BACKEND_LOAD_FAILED", "cuda backend: Deno needs the ffi permission to load the Node-API addon (run with --allow-ffi)");
  }
  const { fs, url, module, path } = await nodeModules();
  const override = envVar("GQA_CUDA_PATH");
  const file = override ? path.resolve(override) : url.fileURLToPath(CUDA_ADDON_URL);
  if (!fs.existsSync(file)) {
    throw new GqaError(
      "BACKEND_LOAD_FAILED",
      `cuda backend: no CUDA addon at ${file}` + (override ? " (from GQA_CUDA_PATH)" : ": build it with `npm run build:cuda` (docs/cuda.md)"),
    );
  }
  let raw: NativeBinding | undefined;
  try {
    raw = module.createRequire(import.meta.url)(file) as typeof raw;
  } catch (e) {
    throw new GqaError("BACKEND_LOAD_FAILED", `cuda backend: cannot load ${file}: ${cudaLoadReason(e)}`, { cause: e });
  }
  if (typeof raw?.initDevice !== "function" || typeof raw.cudaBuild !== "function" || !raw.cudaBuild()) {
    throw new GqaError("BACKEND_LOAD_FAILED", `cuda backend: ${file} is not a CUDA build of the gqa addon (build it with \`npm run build:cuda\`)`);
  }
  const ordinal = options.device ?? 0;
  let device: string;
  try {
    device = raw.initDevice({ device: "cuda", ordinal, dtype: options.dtype ?? "f32" });
  } catch (e) {
    throw new GqaError("BACKEND_LOAD_FAILED", `cuda backend: no usable CUDA GPU at index ${ordinal}: ${reason(e)}`, { cause: e });
  }
  return { name: "cuda", variant: "cuda", relaxedSimd: false, binding: adaptNative(raw), file, device };
}

/**
 * Whether this host can run the threaded wasm module: Node (worker_threads), Deno (Workers),
 * browsers and Web Workers whose context is `crossOriginIsolated` (served with
 * `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`,
 * which shared memory needs). `false` where `SharedArrayBuffer` is missing.
 */
export function wasmThreadsAvailable(): boolean {
  const g = globalThis as { SharedArrayBuffer?: unknown; Atomics?: unknown; crossOriginIsolated?: boolean; Worker?: unknown };
  if (typeof g.SharedArrayBuffer !== "function" || typeof g.Atomics !== "object") return false;
  const env = detectEnvironment();
  if (env === "node" || env === "deno") return true;
  return g.crossOriginIsolated === true && typeof g.Worker === "function";
}

/** The default wasm thread count: `GQA_THREADS` (Node/Deno), else the available cores. */
async function defaultWasmThreads(): Promise<number> {
  const fromEnv = Number(envVar("GQA_THREADS"));
  if (Number.isInteger(fromEnv) && fromEnv >= 1 && fromEnv <= 1024) return fromEnv;
  if (detectEnvironment() === "node") {
    const os = await import("node:os");
    return typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  }
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  return n !== undefined && Number.isInteger(n) && n >= 1 ? Math.min(n, 1024) : 1;
}

/** The most workers the threaded wasm module's pool holds (rayon-core's limit on 32-bit targets). */
export const WASM_MAX_THREADS = 255;

/** Glue URLs of threaded modules whose pool has started (an instance's pool starts only once). */
const wasmPools = new Set<string>();

/** Options of {@link loadWasm}. */
export interface WasmLoadOptions {
  /** Worker threads (default {@link defaultWasmThreads}); above 1 picks the threaded module where {@link wasmThreadsAvailable}. */
  threads?: number;
  /** The relaxed-SIMD module (default: env `GQA_WASM_RELAXED_SIMD` `0`/`1`, else {@link wasmRelaxedSimdAvailable}). */
  relaxedSimd?: boolean;
}

/**
 * Loads a wasm-bindgen package: `initSync` with the file's bytes in Node/Deno, `init(url)` in
 * browsers; the threaded module's worker pool then starts with `threads` workers.
 */
export async function loadWasm(options: WasmLoadOptions = {}): Promise<LoadedBackend> {
  const env = detectEnvironment();
  const override = envVar("GQA_WASM_PATH");
  // Checked before any worker starts: the threaded module's rayon pool holds at most 255 threads.
  if (options.threads !== undefined && options.threads > WASM_MAX_THREADS && wasmThreadsAvailable()) {
    throw GqaError.invalidOption("threads", `an integer in [1, ${WASM_MAX_THREADS}] for the threaded wasm module (rayon's limit on 32-bit targets; no worker was started)`, String(options.threads));
  }
  const wanted = options.threads ?? Math.min(await defaultWasmThreads(), WASM_MAX_THREADS);
  const threaded = wanted > 1 && wasmThreadsAvailable();
  const relaxedEnv = envVar("GQA_WASM_RELAXED_SIMD");
  const relaxed = options.relaxedSimd ?? (relaxedEnv === "0" ? false : relaxedEnv === "1" ? true : wasmRelaxedSimdAvailable());
  let [jsUrl, binUrl] = WASM_MODULES[threaded ? 1 : 0]![relaxed ? 1 : 0]!;
  if (override) {
    if (env === "node") {
      const { url, path } = await nodeModules();
      binUrl = url.pathToFileURL(path.resolve(override));
    } else {
      binUrl = new URL(override, import.meta.url);
    }
    jsUrl = new URL("gqa_wasm.js", binUrl);
  }
  const hint = override ? " (from GQA_WASM_PATH)" : " (in a checkout, `bash scripts/setup.sh --all` builds the wasm packages)";
  let file = binUrl.href;
  /** The glue; the threaded module's also starts its worker pool. */
  let glue: WasmBinding & { initThreadPool?: (n: number) => Promise<unknown> };
  try {
    if (env === "node") {
      const { fs, url } = await nodeModules();
      file = url.fileURLToPath(binUrl);
      if (!fs.existsSync(file)) throw new Error("file not found" + hint);
      glue = await import(/* @vite-ignore */ jsUrl.href);
      glue.initSync({ module: fs.readFileSync(file) });
    } else if (env === "deno") {
      glue = await import(/* @vite-ignore */ jsUrl.href);
      const deno = (globalThis as unknown as { Deno: { readFile(u: URL): Promise<Uint8Array> } }).Deno;
      const bytes: Uint8Array = binUrl.protocol === "file:" ? await deno.readFile(binUrl) : new Uint8Array(await (await fetch(binUrl)).arrayBuffer());
      glue.initSync({ module: bytes });
    } else {
      glue = await import(/* @vite-ignore */ jsUrl.href);
      await glue.default({ module_or_path: binUrl });
    }
  } catch (e) {
    throw new GqaError("BACKEND_LOAD_FAILED", `wasm backend: cannot load ${file}: ${reason(e)}`, { cause: e });
  }
  const initThreadPool = glue.initThreadPool;
  const isThreaded = typeof initThreadPool === "function";
  if (initThreadPool && !wasmPools.has(jsUrl.href)) {
    const workers = Math.max(2, wanted);
    try {
      await initThreadPool(workers);
    } catch (e) {
      throw new GqaError(
        "BACKEND_LOAD_FAILED",
        `wasm backend: ${file}: cannot start ${workers} worker threads: ${reason(e)} (GQA.init({ threads: 1 }) loads the single-threaded module)`,
        { cause: e },
      );
    }
    wasmPools.add(jsUrl.href);
  }
  // From the module itself, so that a GQA_WASM_PATH override reports what it really is.
  const relaxedSimd = (glue.simdInfo() as SimdInfo).gemm === "relaxed-simd";
  return { name: "wasm", variant: isThreaded ? "wasm-threads" : "wasm", relaxedSimd, binding: adaptWasm(glue), file, device: "cpu" };
}

/**
 * Loads the requested backend. `auto` tries native (Node; Deno only when `--allow-ffi` was
 * granted, so that no permission prompt appears), then wasm; when both fail the
 * error lists each attempt.
 */
export async function loadBackend(choice?: BackendChoice, wasm: WasmLoadOptions = {}, cuda: CudaLoadOptions = {}): Promise<LoadedBackend> {
  const req = requestedBackend(choice);
  if (req === "native") return loadNative();
  if (req === "cuda") return loadCuda(cuda);
  if (req === "wasm") return loadWasm(wasm);
  const failures: string[] = [];
  const env = detectEnvironment();
  if (env === "node" || (env === "deno" && denoFfiGranted())) {
    try {
      return await loadNative();
    } catch (e) {
      failures.push(reason(e));
    }
  }
  try {
    return await loadWasm(wasm);
  } catch (e) {
    if (e instanceof GqaError && e.code === "INVALID_OPTION") throw e; // the caller's option, not a load failure
    failures.push(reason(e));
  }
  throw new GqaError("BACKEND_LOAD_FAILED", `no backend could be loaded:\n  ${failures.join("\n  ")}`);
}

// ---------------------------------------------------------------------------------------------
// Adapter: one for both bindings, typed by their generated declarations. Both export the same
// functions and classes with the same arguments and results (`wasmSurface` checks it), so
// nothing here depends on the binding but one flag ({@link BindingKind}). What the adapter does
// is the TypeScript layer's own convenience: `number[]` dims become `Uint32Array`, `free()` runs
// once and never throws, and the model-only methods get the names `model.ts` uses.

/** Compile-time proof that the wasm glue has the binding surface: names, argument order, types. */
function wasmSurface(glue: WasmBinding): BindingModule {
  return glue;
}

/**
 * The one behaviour that differs: wasm has no thread of its own, so its `...Async` methods run
 * synchronously and settle before they return; between training steps the adapter then yields to
 * the event loop (`yieldBeforeStep`), so timers, I/O and UI updates run during a fit.
 * @internal
 */
interface BindingKind {
  yieldBeforeStep: boolean;
}

function toU32(xs: readonly number[]): Uint32Array;
function toU32(xs: readonly number[] | undefined): Uint32Array | undefined;
function toU32(xs: readonly number[] | undefined): Uint32Array | undefined {
  return xs === undefined ? undefined : Uint32Array.from(xs);
}

/** A binding's attention layer (or model) -> {@link LayerHandle}. */
function wrapLayer(h: RawAttention): LayerHandle {
  return {
    forward: (data, dims, lengths, at) => h.forward(data, toU32(dims), toU32(lengths), at),
    forwardAsync: (data, dims, lengths, at) => h.forwardAsync(data, toU32(dims), toU32(lengths), at),
    save: () => h.save(),
    config: () => h.config(),
    paramCount: () => h.paramCount(),
    weightsDigest: () => h.weightsDigest(),
    free: freeOnce(h),
  };
}

/** A binding's model -> {@link ModelHandle}. */
function wrapModel(h: RawModel, kind: BindingKind): ModelHandle {
  return {
    ...wrapLayer(h),
    predict: (data, dims, lengths) => h.predict(data, toU32(dims), toU32(lengths)),
    predictAsync: (data, dims, lengths) => h.predictAsync(data, toU32(dims), toU32(lengths)),
    headConfig: () => h.headConfig() ?? null,
    createTrainer: (x, dims, lengths, classes, targets, fitOptions) => wrapTrainer(h.trainer(x, toU32(dims), lengths, classes, targets, fitOptions), kind),
    createSession: (batch, maxLen) => adaptSession(h.session(batch, maxLen)),
    exportOnnx: (options) => h.exportOnnx(options),
    attentionMaps: (data, dims, lengths) => h.attentionMaps(data, toU32(dims), toU32(lengths)),
    evaluateAsync: (x, dims, lengths, classes, targets, batchSize) => h.evaluateAsync(x, toU32(dims), lengths, classes, targets, batchSize),
  };
}

/** A binding's trainer -> {@link TrainerHandle}. */
function wrapTrainer(t: RawTrainer, kind: BindingKind): TrainerHandle {
  return {
    stepAsync: async () => {
      if (kind.yieldBeforeStep) await new Promise((r) => setTimeout(r, 0));
      return t.stepAsync();
    },
    get stepsPerEpoch() {
      return t.stepsPerEpoch;
    },
    get totalSteps() {
      return t.totalSteps;
    },
    get done() {
      return t.done;
    },
    free: freeOnce(t),
  };
}

/** A binding module (napi addon or wasm glue) -> {@link Binding}. */
function adapt(m: BindingModule, kind: BindingKind): Binding {
  // Native: always "" (a panic is caught and thrown as INTERNAL); wasm: the message of a trap.
  registerTrapInfo(() => m.takeLastPanic() || undefined);
  return {
    validateConfig: (o) => m.validateConfig(o),
    outputSize: (o) => m.outputSize(o),
    paramCount: (o, e) => m.paramCount(o, e),
    kvCacheBytesPerToken: (o) => m.kvCacheBytesPerToken(o),
    parameterLayout: (o) => m.parameterLayout(o),
    recommendedDefaults: () => m.recommendedDefaults(),
    ropeFrequencies: (o, n) => m.ropeFrequencies(o, n),
    version: () => m.version(),
    errorCatalog: () => m.errorCatalog(),
    apiFields: () => m.apiFields(),
    setThreads: (n) => m.setThreads(n),
    threads: () => m.threads(),
    simdInfo: () => m.simdInfo(),
    setMemoryLimit: (n) => m.setMemoryLimit(n),
    memoryUsage: () => Array.from(m.memoryUsage()),
    testPanicSite: (s) => m.__testPanicSite(s),
    buildModel: (o, head) => wrapModel(m.Model.build(o, head), kind),
    loadModel: (bytes, o) => wrapModel(m.Model.load(bytes, o), kind),
    buildAttention: (o) => wrapLayer(m.Attention.build(o)),
    loadAttention: (bytes, o) => wrapLayer(m.Attention.load(bytes, o)),
  };
}

/** napi-rs addon -> {@link Binding}. */
function adaptNative(raw: NativeBinding): Binding {
  return adapt(raw, { yieldBeforeStep: false });
}

/** wasm-bindgen glue -> {@link Binding}. */
function adaptWasm(glue: WasmBinding): Binding {
  return adapt(wasmSurface(glue), { yieldBeforeStep: true });
}
