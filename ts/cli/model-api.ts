/**
 * The one place where the CLI touches the training API (`GQA.build(opts & {head})`, `model.fit`,
 * `model.predict`, `GQA.load`). `train`, `eval` and `predict` use only {@link Classifier}, so when
 * the training API's exact shape settles, only this file changes.
 *
 * Assumed API (ts_api.md, "Training"; core `train/trainer.rs`):
 * - `GQA.build({...opts, head: {type: "classification", numClasses}})`
 * - `model.fit({data, dims: [N, T, E], lengths, labels}, {epochs, batchSize, lr, weightDecay, seed,
 *    onStep?(report)})` where `report` is the core's `StepReport` (camelCase: epoch, stepInEpoch,
 *    stepsPerEpoch, globalStep, loss, correct, count, tokens, lr, gradNorm), epochs 0-based;
 * - `model.predict(data, dims, {lengths})` -> `Tensor` of logits `[B, numClasses]`;
 * - `GQA.load(bytes)` restores the head from the file's `gqa_head` metadata.
 */
import { GQA, type GqaOptions } from "../index.js";

/** A labelled, padded dataset `[N, T, E]`. */
export interface LabelledData {
  data: Float32Array;
  dims: [number, number, number];
  lengths: number[];
  /** Class index per sequence, `[N]`. */
  labels: number[];
}

/** One optimisation step (the core's `StepReport`; `epoch`, `stepInEpoch` 0-based). */
export interface StepReport {
  epoch: number;
  stepInEpoch: number;
  stepsPerEpoch: number;
  globalStep: number;
  loss: number;
  correct: number;
  count: number;
  tokens: number;
  lr: number;
  gradNorm?: number;
}

/** Training options passed through to `model.fit`. */
export interface FitConfig {
  epochs: number;
  batchSize: number;
  lr: number;
  weightDecay: number;
  seed: number;
  /** Called after every step, in order. */
  onStep?: (r: StepReport) => void;
}

/** A GQA model with a classification head, as the CLI sees it. */
export interface Classifier {
  /** Backend holding the weights. */
  readonly backend: string;
  /** Every model option, defaults filled in. */
  readonly config: Record<string, unknown>;
  /** Exact parameter count (including the head). */
  readonly paramCount: number;
  /** Number of classes `K`. */
  readonly numClasses: number;
  /** Trains in place. */
  fit(train: LabelledData, cfg: FitConfig): Promise<void>;
  /** Logits `[B, K]` for a padded batch `[B, T, E]`. */
  logits(data: Float32Array, dims: [number, number, number], lengths: number[]): Promise<Float32Array>;
  /** safetensors bytes (weights, config and head metadata). */
  save(): Promise<Uint8Array>;
  dispose(): void;
}

// The training methods are not in the typed API yet; reach them dynamically, in one place.
type AnyModel = {
  backend: string;
  config: Record<string, unknown>;
  paramCount: number;
  fit?: (data: unknown, opts: unknown) => Promise<unknown>;
  predict?: (data: Float32Array, dims: number[], opts: { lengths?: number[] }) => Promise<{ data: Float32Array; dims: number[] }>;
  save(): Promise<Uint8Array>;
  dispose(): void;
};

function wrap(m: AnyModel, numClasses: number): Classifier {
  return {
    backend: m.backend,
    config: m.config,
    get paramCount() {
      return m.paramCount;
    },
    numClasses,
    async fit(train, cfg) {
      if (typeof m.fit !== "function") throw new Error("this build of gqa has no model.fit (training API missing)");
      const { onStep, ...opts } = cfg;
      await m.fit(
        { data: train.data, dims: train.dims, lengths: train.lengths, labels: train.labels },
        onStep ? { ...opts, onStep } : opts,
      );
    },
    async logits(data, dims, lengths) {
      if (typeof m.predict !== "function") throw new Error("this build of gqa has no model.predict (training API missing)");
      const t = await m.predict(data, dims, { lengths });
      if (t.dims.length !== 2 || t.dims[0] !== dims[0] || t.dims[1] !== numClasses) {
        throw new Error(`model.predict returned dims [${t.dims.join(", ")}], expected [${dims[0]}, ${numClasses}]`);
      }
      return t.data;
    },
    save: () => m.save(),
    dispose: () => m.dispose(),
  };
}

/** Builds a classifier: the GQA model plus a `numClasses`-way linear head. */
export async function buildClassifier(opts: GqaOptions, numClasses: number): Promise<Classifier> {
  const build = GQA.build as unknown as (o: unknown) => Promise<AnyModel>;
  const m = await build({ ...opts, head: { type: "classification", numClasses } });
  return wrap(m, numClasses);
}

/** Loads a classifier saved by {@link Classifier.save} (the head comes from the file's metadata). */
export async function loadClassifier(bytes: Uint8Array, numClasses: number): Promise<Classifier> {
  const m = (await GQA.load(bytes)) as unknown as AnyModel;
  return wrap(m, numClasses);
}

/**
 * Whether the loaded backend supports training (a model built with a classification head has
 * `fit` and `predict`). Initialises the backend if needed; never throws.
 */
export async function trainingAvailable(): Promise<boolean> {
  try {
    const c = await buildClassifier({ embedDim: 2, hiddenSize: 4, numHeads: 2, numKvHeads: 1, numLayers: 1 }, 2);
    const m = c as unknown as { fit: unknown };
    const ok = typeof m.fit === "function";
    try {
      const logits = await c.logits(new Float32Array(2 * 3 * 2), [2, 3, 2], [3, 1]);
      c.dispose();
      return ok && logits.length === 4;
    } catch {
      c.dispose();
      return false;
    }
  } catch {
    return false;
  }
}

/**
 * Logits `[N, K]` for unpadded series (each `[T_i * C]`), run in padded chunks of `chunk` cases
 * (each chunk padded to its own longest case).
 */
export async function logitsForSeries(clf: Classifier, series: readonly Float32Array[], channels: number, chunk = 128): Promise<Float32Array> {
  const { padBatch } = await import("../data/batch.js");
  const out = new Float32Array(series.length * clf.numClasses);
  for (let i = 0; i < series.length; i += chunk) {
    const b = padBatch(series.slice(i, i + chunk), channels);
    out.set(await clf.logits(b.data, b.dims, b.lengths), i * clf.numClasses);
  }
  return out;
}
