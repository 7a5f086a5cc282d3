/**
 * Streaming inference with the grouped-query KV cache (SPEC section 4): `model.session()` creates
 * a {@link Session}; `push` appends new positions (a prefill chunk or one decode step) and returns
 * the model's output as a full forward over the prefix would, computing only the new positions.
 */

import type * as NativeModule from "../bindings/node/index.js";
import type { BackendName, RawTensor } from "./backend.js";
import { callBinding, callBindingAsync, freeOnce, GqaError } from "./errors.js";
import { checkCount as checkArrayCount, checkDimsCount, checkInputBytes, checkTypedArray } from "./inputs.js";
import { Tensor } from "./tensor.js";

/** Options of `model.session()`. */
export interface SessionOptions {
  /**
   * Most positions per row; integer >= 1. The cache is preallocated for `batch * maxLen` tokens,
   * or for a model with `slidingWindow: W` at most `batch * (W - 1 + max(W + 1, 64))` (SPEC
   * section 7). Optional for a sliding-window model only: without it, the session streams
   * forever at constant memory.
   */
  maxLen?: number;
  /** Rows (independent sequences) `B`, default 1. */
  batch?: number;
}

/** Options of {@link Session.push}. */
export interface PushOptions {
  /**
   * New valid positions per row (`B` values in `0..=t`, default `t` each): row `b` appends
   * `chunk[b, 0..lengths[b]]`; later positions of the chunk are ignored (any values, NaN included).
   */
  lengths?: number[];
  /**
   * Return the output at every new position (`[B, t, H]`, zeros at ignored positions) instead of
   * the output at the newest one. Default false.
   */
  allPositions?: boolean;
}

/** A binding's session, as both bindings declare it (`bindings/node/index.d.ts`; the wasm glue has the same class). */
type RawSession = NativeModule.Session;

/** A session in native or wasm memory; both bindings are adapted to this shape. @internal */
export interface SessionHandle {
  push(data: Float32Array, dims: number[], lengths: number[] | undefined, allPositions: boolean): RawTensor;
  pushAsync(data: Float32Array, dims: number[], lengths: number[] | undefined, allPositions: boolean): Promise<RawTensor>;
  pushPredict(data: Float32Array, dims: number[], lengths: number[] | undefined): RawTensor;
  pushPredictAsync(data: Float32Array, dims: number[], lengths: number[] | undefined): Promise<RawTensor>;
  lengths(): number[];
  readonly capacity: number;
  readonly maxLen: number | null | undefined;
  readonly batch: number;
  reset(): void;
  kvCacheBytes(): number;
  kvCacheBytesPerToken(): number;
  free(): void;
}

const u32 = (xs: readonly number[] | undefined): Uint32Array | undefined => (xs === undefined ? undefined : Uint32Array.from(xs));

/** A binding's `Session` object (both bindings declare the same class) -> {@link SessionHandle}. @internal */
export function adaptSession(s: RawSession): SessionHandle {
  return {
    push: (data, dims, lengths, all) => s.push(data, Uint32Array.from(dims), u32(lengths), all),
    pushAsync: (data, dims, lengths, all) => s.pushAsync(data, Uint32Array.from(dims), u32(lengths), all),
    pushPredict: (data, dims, lengths) => s.pushPredict(data, Uint32Array.from(dims), u32(lengths)),
    pushPredictAsync: (data, dims, lengths) => s.pushPredictAsync(data, Uint32Array.from(dims), u32(lengths)),
    lengths: () => Array.from(s.lengths()),
    get maxLen() {
      return s.maxLen;
    },
    get capacity() {
      return s.capacity;
    },
    get batch() {
      return s.batch;
    },
    reset: () => s.reset(),
    kvCacheBytes: () => s.kvCacheBytes(),
    kvCacheBytesPerToken: () => s.kvCacheBytesPerToken(),
    free: freeOnce(s),
  };
}

function checkCount(x: unknown, what: string, min: number): number {
  if (typeof x !== "number" || !Number.isInteger(x) || x < min || x > 0xffffffff) {
    throw GqaError.invalidInput(what, `an integer in ${min}..2^32-1`, JSON.stringify(x));
  }
  return x;
}

/** A push's arguments, checked and owned by the call (see {@link Session.push}). */
interface PushArgs {
  chunk: Float32Array;
  dims: number[];
  lengths: number[] | undefined;
  allPositions: boolean;
}

/**
 * Checks a push's arguments and takes them: `dims` and `lengths` are copied (lengths' count is
 * checked against `dims[0]` before it is read), `chunk` too when `copy` (the push waits behind
 * another). Only own properties of `options` are read.
 */
function checkPush(chunk: Float32Array, dims: readonly number[], options: PushOptions, copy: boolean): PushArgs {
  checkTypedArray(chunk, "input");
  if (Array.isArray(dims)) checkDimsCount(dims, "dims");
  const own = <K extends keyof PushOptions>(k: K): PushOptions[K] => (typeof options === "object" && options !== null && Object.hasOwn(options, k) ? options[k] : undefined);
  const given = own("lengths");
  if (given !== undefined && Array.isArray(dims) && dims.length === 3 && Number.isInteger(dims[0])) {
    checkArrayCount(given, "row_lengths", dims[0]!, "values", "one per row"); // the core's name
  }
  for (const [what, xs] of [["dims", dims], ["lengths", given]] as const) {
    if (xs === undefined && what === "lengths") continue;
    if (!Array.isArray(xs) || xs.some((d) => !Number.isInteger(d) || d < 0 || d > 0xffffffff)) {
      throw GqaError.invalidInput(what, "an array of integers in 0..2^32-1", JSON.stringify(xs));
    }
  }
  return { chunk: copy ? chunk.slice() : chunk, dims: [...dims], lengths: given === undefined ? undefined : [...given], allPositions: own("allPositions") === true };
}

/**
 * Creates a session on a model handle (used by `Model.session`). @internal
 * @throws GqaError `INVALID_INPUT` (`maxLen`, `batch`), `OUT_OF_MEMORY`, `DISPOSED`
 */
export function createSession(backend: BackendName, create: (batch: number, maxLen: number | undefined) => SessionHandle, options: SessionOptions): Session {
  if (typeof options !== "object" || options === null) {
    throw GqaError.invalidInput("options", "{maxLen?, batch?}", JSON.stringify(options));
  }
  // Absent: the core answers (a sliding-window model streams without one; others name maxLen).
  const maxLen = options.maxLen === undefined ? undefined : checkCount(options.maxLen, "maxLen", 1);
  const batch = checkCount(options.batch ?? 1, "batch", 0);
  return new Session(backend, callBinding(() => create(batch, maxLen)));
}

/**
 * A KV-cache session over one model: `B` rows (sequences) of up to `maxLen` positions each,
 * with independent lengths. A model with `slidingWindow: W` keeps only what its window reads
 * (about `W` positions per row, {@link capacity}), so its session may stream without `maxLen`
 * at constant memory and step time (SPEC section 7). Per layer it caches K (after RoPE/YaRN) and V for the `numKvHeads`
 * KV heads only: `kvCacheBytesPerToken = 2 * numLayers * numKvHeads * headDim * 4` bytes, `numHeads /
 * numKvHeads` times less than multi-head attention; the whole cache (`kvCacheBytes`) is allocated
 * when the session is created.
 *
 * After each push the output equals `model.forward` over the prefix pushed so far (within float
 * rounding, about 1e-6): rotary positions continue from each row's length and new positions
 * attend causally to the cached ones.
 *
 * Lifetime: the session holds its own reference to the model's weights, so `model.dispose()`
 * while a session exists is safe: the session keeps working and the weights are freed once the
 * session is disposed too. Call {@link dispose} to free the cache. Training the model
 * (`model.fit`) changes its weights but not the cached K/V: call {@link reset} afterwards.
 *
 * Concurrency: `push` calls run one after the other in call order (native: each off the main
 * thread). `pushSync`, `reset` and the getters act at once; on native they wait for a push that
 * is running at that moment.
 */
export class Session {
  /** The backend that holds this session's cache (the model's backend). */
  readonly backend: BackendName;
  #handle: SessionHandle | null;
  #tail: Promise<unknown> = Promise.resolve();
  /** Pushes queued or running. */
  #pending = 0;

  /** @internal use `model.session()`. */
  constructor(backend: BackendName, handle: SessionHandle) {
    this.backend = backend;
    this.#handle = handle;
  }

  get #h(): SessionHandle {
    if (this.#handle === null) throw GqaError.disposed("session");
    return this.#handle;
  }

  /**
   * Appends a chunk of new positions to every row and returns the model's output after it.
   *
   * - `chunk: [B, t, E]` row-major (`dims = [B, t, E]`, `B = batch`, `t >= 1`, `E = embedDim`).
   * - Result (`H = hiddenSize`): `[B, H]` = the output mode at each row's newest position, as
   *   `model.forward` over the row's whole prefix gives it (`last_timestep`: the final hidden
   *   state; `mean_pool`: the mean over every cached position); `outputMode: "all"`: `[B, t, H]`
   *   the hidden states of the new positions. With `allPositions: true`: `[B, t, H]`, the output
   *   mode at each new position. Ignored positions (`>= lengths[b]`) give zeros; a row that has
   *   never received a position gives zeros.
   *
   * Off the main thread on native; wasm computes synchronously. Pushes are queued in call order.
   * Inputs are owned by the call: `chunk`, `dims` and `options` are checked and taken before
   * this returns (the chunk copied when the push has to wait behind another), so the caller may
   * change or reuse them at once.
   *
   * @throws GqaError `CACHE_FULL` when a row's pushed plus new positions exceed `maxLen` (the
   *   session is left unchanged and usable), `INVALID_INPUT` (dims, chunk size, lengths; `session`
   *   when an earlier push of a sliding-window session failed part-way: call {@link reset}),
   *   `OUT_OF_MEMORY`, `DISPOSED`
   */
  push(chunk: Float32Array, dims: number[], options: PushOptions = {}): Promise<Tensor> {
    return this.#queue(chunk, dims, options, (h, a) => h.pushAsync(a.chunk, a.dims, a.lengths, a.allPositions));
  }

  /**
   * {@link push} a chunk, then apply the model's task head to each row's output after it: class
   * PROBABILITIES `[B, C]` (classification head) or values `[B, K]` (regression head), what
   * `model.predict` gives for each row's whole prefix. With a sliding-window model this is
   * streaming prediction at constant memory. Queued with the pushes, in call order.
   * @throws GqaError as {@link push}; `INVALID_OPTION` naming `head` (a model without one) or
   *   `outputMode` (`all`); `INVALID_INPUT` naming `allPositions` (a head reads one output per row)
   */
  predict(chunk: Float32Array, dims: number[], options: Omit<PushOptions, "allPositions"> = {}): Promise<Tensor> {
    if (typeof options === "object" && options !== null && (options as PushOptions).allPositions !== undefined) {
      return Promise.reject(GqaError.invalidInput("allPositions", "no allPositions: predict returns one row per sequence", JSON.stringify((options as PushOptions).allPositions)));
    }
    return this.#queue(chunk, dims, options, (h, a) => h.pushPredictAsync(a.chunk, a.dims, a.lengths));
  }

  /** Checks and takes a push's arguments now, then runs `call` in call order (see {@link push}). */
  #queue(chunk: Float32Array, dims: number[], options: PushOptions, call: (h: SessionHandle, a: PushArgs) => Promise<RawTensor>): Promise<Tensor> {
    // Inputs are owned by the call: checked and taken now (the chunk copied when this push
    // waits behind another), so the caller may reuse its buffers as soon as push returns.
    let args: PushArgs;
    try {
      args = checkPush(chunk, dims, options, this.#pending > 0);
      checkInputBytes(chunk, "input", this.backend);
    } catch (e) {
      return Promise.reject(e);
    }
    const run = async (): Promise<Tensor> => {
      try {
        const h = this.#h;
        const raw = await callBindingAsync(() => call(h, args));
        return new Tensor(raw.data, raw.dims);
      } finally {
        this.#pending--;
      }
    };
    // Nothing ahead: start now, so the binding takes the chunk before the caller gets control back.
    const p = this.#pending++ === 0 ? run() : this.#tail.then(run, run);
    this.#tail = p.catch(() => undefined);
    return p;
  }

  /** Same as {@link push}, blocking the calling thread (not queued behind pending async pushes). */
  pushSync(chunk: Float32Array, dims: number[], options: PushOptions = {}): Tensor {
    const args = checkPush(chunk, dims, options, false);
    checkInputBytes(chunk, "input", this.backend);
    const h = this.#h;
    const raw = callBinding(() => h.push(args.chunk, args.dims, args.lengths, args.allPositions));
    return new Tensor(raw.data, raw.dims);
  }

  /**
   * Positions pushed so far per row (`B` values): the next position of row `b` is `lengths[b]`,
   * its absolute position (rotary angles use it), also after a sliding window has dropped old
   * keys from the cache.
   */
  get lengths(): number[] {
    const h = this.#h;
    return callBinding(() => h.lengths());
  }

  /**
   * The longest row's cached length (0 when empty): for the usual `batch = 1` session, the
   * number of positions pushed so far. See {@link lengths} for every row.
   */
  get length(): number {
    // A loop, not Math.max(...lengths): spreading a batch of 300,000 rows overflows the stack.
    let max = 0;
    for (const l of this.lengths) if (l > max) max = l;
    return max;
  }

  /**
   * Cache slots per row: `maxLen`, or for a sliding-window model `min(maxLen, W - 1 + max(W + 1,
   * 64))` (SPEC section 7).
   */
  get capacity(): number {
    const h = this.#h;
    return callBinding(() => h.capacity);
  }

  /** Most positions per row (`maxLen`), `null` for an unbounded sliding-window session. */
  get maxLen(): number | null {
    const h = this.#h;
    return callBinding(() => h.maxLen) ?? null;
  }

  /** Rows `B`. */
  get batch(): number {
    const h = this.#h;
    return callBinding(() => h.batch);
  }

  /**
   * Bytes allocated for the K and V caches of all layers: `batch * capacity * kvCacheBytesPerToken`;
   * constant for a sliding-window session however long it streams.
   */
  get kvCacheBytes(): number {
    const h = this.#h;
    return callBinding(() => h.kvCacheBytes());
  }

  /** Cache bytes per cached token and row (F32): `2 * numLayers * numKvHeads * headDim * 4` (SPEC section 4). */
  get kvCacheBytesPerToken(): number {
    const h = this.#h;
    return callBinding(() => h.kvCacheBytesPerToken());
  }

  /** Forgets every cached position (all rows back to length 0); the allocation is kept. */
  reset(): void {
    const h = this.#h;
    callBinding(() => h.reset());
  }

  /** Frees the cache. Later calls throw `GqaError` code `DISPOSED`; a running push completes. Idempotent. */
  dispose(): void {
    this.#handle?.free();
    this.#handle = null;
  }

  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.#handle === null;
  }
}
