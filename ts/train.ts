/**
 * Training, evaluation and prediction with a task head (`GQA.build({...opts, head})`).
 *
 * The maths lives in the Rust core (`gqa_core::train`: heads, cross-entropy/MSE/Huber, AdamW,
 * global-norm clipping, warmup + cosine schedule, seeded shuffling and dropout); this module
 * converts data, drives the core's `Trainer` one step at a time and aggregates reports.
 * Native: every step runs on the libuv thread pool (the JS thread stays free); wasm: the loop
 * yields to the event loop (`setTimeout(0)`) before each step. The same `seed`, data and model
 * options give the same loss curve on a given backend.
 */

import type { BackendName, ModelHandle, TrainerHandle } from "./backend.js";
import { callBinding, callBindingAsync, coreOptions, type CoreValue, GqaError } from "./errors.js";
import { arrayOfCount, checkCount, checkInputBytes, checkTypedArray, lengthOf } from "./inputs.js";
import { Tensor } from "./tensor.js";

/** A classification head: `logits = h W^T + b : [B, numClasses]`, softmax cross-entropy. */
export interface ClassificationHead {
  type: "classification";
  /** Number of classes `C` (>= 2). */
  numClasses: number;
  /** Optional per-class loss weights `[C]` (PyTorch `cross_entropy(weight=...)` semantics). */
  classWeights?: number[];
}

/** A regression head: `y = h W^T + b : [B, outDim]`, MSE (default) or Huber loss. */
export interface RegressionHead {
  type: "regression";
  /** Output width `K` (>= 1). */
  outDim: number;
  /** Loss: `"mse"` (default) or `"huber"` (PyTorch `F.huber_loss`). */
  loss?: "mse" | "huber";
  /** Huber threshold `delta` (> 0), default 1. */
  huberDelta?: number;
}

/** A task head on the model output `[B, H]` (needs `outputMode` `last_timestep` or `mean_pool`). */
export type HeadOptions = ClassificationHead | RegressionHead;

/**
 * A labelled dataset of padded sequences.
 * - `x`: `[N, T, E]` row-major float32; sequence `n` is left-aligned with `lengths[n]` valid steps
 *   (padding values do not matter);
 * - `labels`: class indices `[N]` (classification head) or targets `[N, K]` flattened row-major
 *   (regression head; nested rows are flattened).
 */
export interface TrainingData {
  x: Float32Array;
  dims: [number, number, number] | number[];
  lengths?: number[] | Uint32Array;
  labels: number[] | number[][] | Uint32Array | Float32Array;
}

/** One optimisation step (the core's `StepReport`; `epoch`, `stepInEpoch`, `globalStep` 0-based). */
export interface StepReport {
  epoch: number;
  stepInEpoch: number;
  stepsPerEpoch: number;
  globalStep: number;
  /** Loss of the batch before the update. */
  loss: number;
  /** Correct predictions in the batch (classification; 0 for regression). */
  correct: number;
  /** Sequences in the batch. */
  count: number;
  /** Valid (unpadded) positions in the batch. */
  tokens: number;
  /** Learning rate used. */
  lr: number;
  /** Global gradient L2 norm before clipping (null when clipping is off). */
  gradNorm: number | null;
}

/** What {@link FitOptions.onEpochEnd} receives and the history records, per epoch. */
export interface EpochSummary {
  /** 1-based epoch number. */
  epoch: number;
  /** Mean training loss over the epoch's sequences (batch losses weighted by batch size). */
  loss: number;
  /** Training accuracy over the epoch (classification; null for regression). */
  accuracy: number | null;
  /** Validation loss (when `validation` data was given). */
  valLoss?: number;
  /** Validation accuracy (classification with `validation` data). */
  valAccuracy?: number | null;
  /** Valid positions processed per second of wall time in this epoch. */
  tokensPerSecond: number;
  /** Wall time of the epoch (training steps only) in seconds. */
  seconds: number;
}

/**
 * Options of `model.fit` (the core's `FitOptions`, defaults in brackets) plus callbacks:
 * epochs [10], batchSize [32], lr (peak) [1e-3], minLr [0], weightDecay (AdamW, decoupled) [0.01],
 * beta1 [0.9], beta2 [0.999], eps [1e-8], warmupRatio (linear warmup fraction, then cosine decay)
 * [0.1], clipNorm (global L2; null = off) [1], seed (shuffling and dropout) [0], shuffle [true],
 * labelSmoothing (classification; PyTorch `cross_entropy(label_smoothing=)`, in [0, 1)) [0].
 * Unknown names are refused (`INVALID_OPTION`).
 */
export interface FitOptions {
  epochs?: number;
  batchSize?: number;
  lr?: number;
  minLr?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  warmupRatio?: number;
  clipNorm?: number | null;
  seed?: number;
  shuffle?: boolean;
  /**
   * Label smoothing `eps` in [0, 1) of the classification loss: the target puts `1 - eps` on the
   * label and `eps / C` on every class (PyTorch `cross_entropy(label_smoothing=eps)`). Step reports
   * give the smoothed loss, `evaluate` and validation the plain cross-entropy. Default 0.
   */
  labelSmoothing?: number;
  /** Called after every step, in order (may return a promise, which is awaited). */
  onStep?: (report: StepReport) => void | Promise<void>;
  /** Called after every epoch (after validation), in order. */
  onEpochEnd?: (summary: EpochSummary) => void | Promise<void>;
  /** Data evaluated (eval mode, no dropout) at the end of every epoch. */
  validation?: TrainingData;
}

/** What `model.fit` returns. */
export interface FitHistory {
  /** One entry per epoch. */
  epochs: EpochSummary[];
  /** Optimisation steps taken. */
  steps: number;
}

/** What `model.evaluate` returns (the core's `EvalReport`). */
export interface EvalResult {
  /** Mean loss over the data (class weights applied as in training). */
  loss: number;
  /** Fraction correct (classification), null for regression. */
  accuracy: number | null;
  /** Predicted class (argmax) per sequence (classification), empty for regression. */
  predictions: number[];
  /** Sequences evaluated. */
  count: number;
}

/** Options of `model.evaluate`. */
export interface EvaluateOptions {
  /** Sequences per forward pass, default 64 (does not change the result). */
  batchSize?: number;
}

const CALLBACK_KEYS = new Set(["onStep", "onEpochEnd", "validation"]);

function invalidInput(what: string, expected: string, found: string): GqaError {
  return GqaError.invalidInput(what, expected, found);
}

/** The head options of a model handle, or null. */
export function headOf(handle: ModelHandle): HeadOptions | null {
  return callBinding(() => handle.headConfig()) ?? null;
}

interface RawData {
  x: Float32Array;
  dims: number[];
  lengths: Uint32Array | undefined;
  classes: Uint32Array | undefined;
  targets: Float32Array | undefined;
}

/**
 * Converts a {@link TrainingData} for the binding: labels become class indices (`Uint32Array`)
 * for a classification head (or no head: the core then reports the missing head) and targets
 * (`Float32Array`) for a regression head. Sizes are checked by the core.
 */
function rawData(data: TrainingData, head: HeadOptions | null, what: string, copy = false): RawData {
  if (typeof data !== "object" || data === null) throw invalidInput(what, "{x, dims, lengths?, labels}", String(data));
  checkTypedArray(data.x, `${what}.x`);
  // Every array's length is checked against the count expected before its elements are read.
  const dimsExpected = "[N, T, E] (3 non-negative integers)";
  if (lengthOf(data.dims, `${what}.dims`, dimsExpected) !== 3) throw invalidInput(`${what}.dims`, dimsExpected, JSON.stringify(data.dims));
  const dims = Array.from(data.dims);
  if (dims.some((d) => !Number.isInteger(d) || d < 0 || d > 0xffffffff)) {
    throw invalidInput(`${what}.dims`, dimsExpected, JSON.stringify(data.dims));
  }
  const n = dims[0]!;
  let lengths: Uint32Array | undefined;
  // Optional: read only as an own property (an inherited `lengths` is not the caller's).
  if (Object.hasOwn(data, "lengths") && data.lengths !== undefined) {
    const l = arrayOfCount(data.lengths, `${what}.lengths`, n, "lengths", "one per sequence");
    const bad = l.findIndex((v) => !Number.isInteger(v) || v < 0 || v > 0xffffffff);
    if (bad >= 0) throw invalidInput(`${what}.lengths[${bad}]`, "an integer length", String(l[bad]));
    lengths = Uint32Array.from(l);
  }
  const raw = data.labels;
  if (raw === undefined || raw === null || typeof (raw as ArrayLike<unknown>).length !== "number") {
    throw invalidInput(`${what}.labels`, "an array of labels", String(raw));
  }
  if (ArrayBuffer.isView(raw) || raw instanceof Float32Array || raw instanceof Uint32Array) checkTypedArray(raw, `${what}.labels`, raw instanceof Uint32Array ? Uint32Array : Float32Array);
  const nested = Array.isArray(raw) && raw.length > 0 && Array.isArray(raw[0]);
  if (head?.type === "regression") {
    // [N, K] targets: N rows of K, or N*K values flat.
    const k = head.outDim;
    const count = nested ? n : n * k;
    const unit = nested ? "rows of targets" : "regression targets";
    checkCount(raw, `${what}.labels`, count, unit, nested ? `one per sequence, ${k} values each` : `N*outDim = ${n}*${k}`);
    const flat: ArrayLike<number> = nested ? (raw as number[][]).flat() : (raw as ArrayLike<number>);
    return { x: copy ? data.x.slice() : data.x, dims, lengths, classes: undefined, targets: flat instanceof Float32Array ? (copy ? flat.slice() : flat) : Float32Array.from(flat) };
  }
  checkCount(raw, `${what}.labels`, n, "class labels", "one per sequence");
  const flat = raw as ArrayLike<number>;
  if (!(flat instanceof Uint32Array)) {
    for (let i = 0; i < flat.length; i++) {
      const v = flat[i]!;
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw invalidInput(`${what}.labels[${i}]`, "a class index (integer >= 0)", String(v));
    }
  }
  return { x: copy ? data.x.slice() : data.x, dims, lengths, classes: flat instanceof Uint32Array ? (copy ? flat.slice() : flat) : Uint32Array.from(flat), targets: undefined };
}

/** The most steps a run may take (the core's `MAX_TOTAL_STEPS`). */
const MAX_TOTAL_STEPS = 0xffffffff;

/**
 * `epochs` above 2^32-1: always more than {@link MAX_TOTAL_STEPS} steps. The core refuses such a
 * run naming `epochs` (`check_total_steps`), but wasm32 cannot even parse the count (`usize` is 32
 * bits there), so it is refused here with the core's own message, the same on both backends.
 * Other values are left to the core.
 */
function checkEpochsRange(epochs: unknown, batchSize: unknown, n: number): void {
  if (typeof epochs !== "number" || !Number.isInteger(epochs) || epochs <= MAX_TOTAL_STEPS || n < 1) return;
  const b = batchSize ?? 32; // the core's default
  if (typeof b !== "number" || !Number.isInteger(b) || b < 1) return;
  const spe = Math.ceil(n / b);
  throw GqaError.invalidOption("epochs", `at most ${Math.floor(MAX_TOTAL_STEPS / spe)} epochs (${spe} steps per epoch; a run takes at most ${MAX_TOTAL_STEPS} steps)`, String(epochs));
}

/**
 * `model.fit`, in two parts: this checks and converts the data and options at the call (own
 * properties only; typed arrays copied when `copy`, i.e. when the fit has to wait behind another)
 * and returns the run, which `Model.fit` queues. See {@link FitOptions}.
 * @internal called by `Model.fit`.
 */
export function prepareFit(handle: ModelHandle, backend: BackendName, data: TrainingData, options: FitOptions = {}, copy = false): () => Promise<FitHistory> {
  if (typeof options !== "object" || options === null) throw GqaError.invalidOption("fit options", "an object", String(options));
  const own = <K extends keyof FitOptions>(k: K): FitOptions[K] => (Object.hasOwn(options, k) ? options[k] : undefined);
  const head = headOf(handle);
  const d = rawData(data, head, "data", copy);
  checkInputBytes(data.x, "data.x", backend);
  const core = coreOptions(Object.fromEntries(Object.entries(options).filter(([k, v]) => !CALLBACK_KEYS.has(k) && v !== undefined)));
  checkEpochsRange(own("epochs"), own("batchSize"), d.dims[0]!);
  const validation = own("validation");
  const val = validation === undefined ? undefined : rawData(validation, head, "validation", copy);
  if (val) checkInputBytes(val.x, "validation.x", backend);
  const create: ModelHandle["createTrainer"] = (...a) => handle.createTrainer(...a);
  const evaluate: ModelHandle["evaluateAsync"] = (...a) => handle.evaluateAsync(...a);
  const onStep = own("onStep");
  const onEpochEnd = own("onEpochEnd");
  const valBatch = Math.max(1, own("batchSize") ?? 64);
  return () => runFit(head, d, val, core, create, evaluate, onStep, onEpochEnd, valBatch);
}

/** One training run over prepared data ({@link prepareFit}). */
async function runFit(
  head: HeadOptions | null,
  d: RawData,
  val: RawData | undefined,
  core: CoreValue,
  create: ModelHandle["createTrainer"],
  evaluate: ModelHandle["evaluateAsync"],
  onStep: FitOptions["onStep"],
  onEpochEnd: FitOptions["onEpochEnd"],
  valBatch: number,
): Promise<FitHistory> {
  const trainer: TrainerHandle = callBinding(() => create(d.x, d.dims, d.lengths, d.classes, d.targets, core));
  const history: FitHistory = { epochs: [], steps: 0 };
  const classification = head?.type !== "regression";
  try {
    const total = trainer.totalSteps;
    let ep = { loss: 0, correct: 0, count: 0, tokens: 0, start: performance.now() };
    for (let s = 0; s < total; s++) {
      const r = await callBindingAsync(() => trainer.stepAsync());
      history.steps++;
      ep.loss += r.loss * r.count;
      ep.correct += r.correct;
      ep.count += r.count;
      ep.tokens += r.tokens;
      if (onStep) await onStep(r);
      if (r.stepInEpoch === r.stepsPerEpoch - 1) {
        const seconds = (performance.now() - ep.start) / 1000;
        const summary: EpochSummary = {
          epoch: r.epoch + 1,
          loss: ep.loss / ep.count,
          accuracy: classification ? ep.correct / ep.count : null,
          tokensPerSecond: ep.tokens / Math.max(seconds, 1e-9),
          seconds,
        };
        if (val) {
          const e = await callBindingAsync(() => evaluate(val.x, val.dims, val.lengths, val.classes, val.targets, valBatch));
          summary.valLoss = e.loss;
          summary.valAccuracy = e.accuracy;
        }
        history.epochs.push(summary);
        if (onEpochEnd) await onEpochEnd(summary);
        ep = { loss: 0, correct: 0, count: 0, tokens: 0, start: performance.now() };
      }
    }
  } finally {
    trainer.free();
  }
  return history;
}

/** `model.evaluate`. @internal called by `Model.evaluate`. */
export async function evaluateModel(handle: ModelHandle, backend: BackendName, data: TrainingData, options: EvaluateOptions = {}): Promise<EvalResult> {
  const d = rawData(data, headOf(handle), "data");
  checkInputBytes(d.x, "data.x", backend);
  const batchSize = (typeof options === "object" && options !== null && Object.hasOwn(options, "batchSize") ? options.batchSize : undefined) ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 0xffffffff) {
    throw GqaError.invalidOption("batchSize", "an integer >= 1", String(batchSize));
  }
  const r = await callBindingAsync(() => handle.evaluateAsync(d.x, d.dims, d.lengths, d.classes, d.targets, batchSize));
  if (r.loss === null) r.loss = NaN; // the core's NaN crosses as null, as in JSON (empty data)
  return r;
}

/** `model.predict`. @internal called by `Model.predict`. */
export async function predictModel(handle: ModelHandle, input: Float32Array, dims: number[], lengths?: number[]): Promise<Tensor> {
  const r = await callBindingAsync(() => handle.predictAsync(input, dims, lengths));
  return new Tensor(r.data, r.dims);
}
