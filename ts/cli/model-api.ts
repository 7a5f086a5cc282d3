/**
 * The one place where the CLI touches the training API (`GQA.build(opts & {head})`, `model.fit`,
 * `model.predict`, `GQA.load`). `train`, `eval` and `predict` use only {@link TaskModel} (a model
 * with a classification or a regression head).
 *
 * - `GQA.build({...opts, head: {type: "classification", numClasses}})` or
 *   `{type: "regression", outDim, loss, huberDelta}`;
 * - `model.fit({x, dims: [N, T, E], lengths, labels}, {epochs, batchSize, lr, weightDecay, seed,
 *    onStep(report)})`, `report` = the core's `StepReport` (epochs 0-based);
 * - `model.predict(x, dims, {lengths})` -> `Tensor` of class PROBABILITIES `[B, numClasses]`
 *   (the core applies the softmax; nothing here applies it again), or regression outputs `[B, outDim]`;
 * - `GQA.load(bytes)` restores the head from the file's `gqa_head` metadata.
 */
import { GQA, type GqaOptions, type HeadOptions, type Model, type StepReport } from "../index.js";
import { GqaError } from "../errors.js";
import { modelInputs, type CliMetadata } from "../model-file.js";

export type { StepReport };

/** A labelled, padded dataset `[N, T, E]`. */
export interface LabelledData {
  data: Float32Array;
  dims: [number, number, number];
  lengths: number[];
  /** Class index per sequence `[N]` (classification) or target rows `[N][K]` (regression). */
  labels: number[] | number[][];
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
  /** Data scored (eval mode) at the end of every epoch. */
  validation?: LabelledData;
  /** Called after every epoch, after validation: validation loss and accuracy when given. */
  onEpochEnd?: (e: { epoch: number; valLoss?: number; valAccuracy?: number | null }) => void;
}

/** A GQA model with a classification or regression head, as the CLI sees it. */
export interface TaskModel {
  /** Backend holding the weights. */
  readonly backend: string;
  /** Every model option, defaults filled in. */
  readonly config: Record<string, unknown>;
  /** Exact parameter count (including the head). */
  readonly paramCount: number;
  /** Outputs per case `K`: classes (classification) or targets (regression). */
  readonly numOutputs: number;
  /** The head. */
  readonly head: HeadOptions;
  /** Trains in place. */
  fit(train: LabelledData, cfg: FitConfig): Promise<void>;
  /** Class probabilities `[B, K]` (rows sum to 1), or regression outputs `[B, K]`, for a padded batch `[B, T, E]`. */
  probabilities(data: Float32Array, dims: [number, number, number], lengths: number[]): Promise<Float32Array>;
  /** safetensors bytes (weights, config and head metadata). */
  save(): Promise<Uint8Array>;
  dispose(): void;
}

function wrap(m: Model, numOutputs: number, head: HeadOptions): TaskModel {
  return {
    head,
    backend: m.backend,
    config: m.config as unknown as Record<string, unknown>,
    get paramCount() {
      return m.paramCount;
    },
    numOutputs,
    async fit(train, cfg) {
      const { validation, ...opts } = cfg;
      const data = (d: LabelledData) => ({ x: d.data, dims: d.dims, lengths: d.lengths, labels: d.labels });
      await m.fit(data(train), validation ? { ...opts, validation: data(validation) } : opts);
    },
    async probabilities(data, dims, lengths) {
      const t = await m.predict(data, dims, { lengths });
      if (t.dims.length !== 2 || t.dims[0] !== dims[0] || t.dims[1] !== numOutputs) {
        throw new Error(`model.predict returned dims [${t.dims.join(", ")}], expected [${dims[0]}, ${numOutputs}]`);
      }
      return t.data;
    },
    save: () => m.save(),
    dispose: () => m.dispose(),
  };
}

/** Builds a classifier: the GQA model plus a `numClasses`-way linear classification head. */
export async function buildClassifier(opts: GqaOptions, numClasses: number): Promise<TaskModel> {
  return buildTaskModel(opts, { type: "classification", numClasses });
}

/** Builds the GQA model plus `head` (classification or regression). */
export async function buildTaskModel(opts: GqaOptions, head: HeadOptions): Promise<TaskModel> {
  const m = await GQA.build({ ...opts, head });
  return wrap(m, head.type === "classification" ? head.numClasses : head.outDim, head);
}

/**
 * Loads a regression model saved by {@link TaskModel.save}.
 * @throws GqaError `INVALID_INPUT` when the file has no regression head of `outDim` outputs.
 */
export async function loadRegressor(bytes: Uint8Array, outDim: number, file = "<model>"): Promise<TaskModel> {
  const m = await GQA.load(bytes);
  const head = m.head;
  if (head?.type !== "regression" || head.outDim !== outDim) {
    m.dispose();
    const found = head === null ? "no head" : head.type === "regression" ? `${head.outDim} outputs` : "a classification head";
    throw new GqaError("INVALID_INPUT", `${file}: expected a regression head with ${outDim} output${outDim === 1 ? "" : "s"} (the gqa_cli targets), found ${found}`);
  }
  return wrap(m, outDim, head);
}

/**
 * Loads a classifier saved by {@link TaskModel.save} (the head comes from the file's metadata).
 * @throws GqaError `INVALID_INPUT` when the file has no classification head of `numClasses`
 *   classes (a model file from another configuration or dataset); load errors of `GQA.load`.
 */
export async function loadClassifier(bytes: Uint8Array, numClasses: number, file = "<model>"): Promise<TaskModel> {
  const m = await GQA.load(bytes);
  const head = m.head;
  if (head?.type !== "classification" || head.numClasses !== numClasses) {
    m.dispose();
    const found = head === null ? "no head" : head.type === "classification" ? `${head.numClasses} classes` : `a regression head`;
    throw new GqaError("INVALID_INPUT", `${file}: expected a classification head with ${numClasses} classes (the gqa_cli class labels), found ${found}`);
  }
  return wrap(m, numClasses, head);
}

/**
 * Outputs `[N, K]` for unpadded series (each `[T_i * C]`): class probabilities, or regression
 * outputs (standardised targets) for a regression head; run in padded chunks of
 * `chunk` cases (each chunk padded to its own longest case; padding does not change the result).
 */
export async function probabilitiesForSeries(model: TaskModel, series: readonly Float32Array[], channels: number, chunk = 128): Promise<Float32Array> {
  const { padBatch } = await import("../data/batch.js");
  const out = new Float32Array(series.length * model.numOutputs);
  for (let i = 0; i < series.length; i += chunk) {
    const b = padBatch(series.slice(i, i + chunk), channels);
    out.set(await model.probabilities(b.data, b.dims, b.lengths), i * model.numOutputs);
  }
  return out;
}

/**
 * The series and token width {@link probabilitiesForSeries} takes for raw cases of a `gqa train`
 * model: its record's transform applied (ts/data/transform.ts, via `modelInputs`).
 */
export function modelArgs(series: readonly Float32Array[], meta: CliMetadata): [Float32Array[], number] {
  const z = modelInputs(series, meta);
  return [z.series, z.width];
}

/**
 * An ensemble of models with the same head: `probabilities` is the element-wise mean of the
 * members' outputs (class probabilities, so rows still sum to 1; or regression outputs); `save`
 * packs the members into one file ({@link packEnsemble}); `paramCount` counts every member;
 * `config` is member 0's. It cannot be trained as one (train the members).
 */
export function ensembleOf(members: readonly TaskModel[]): TaskModel {
  if (members.length === 1) return members[0]!;
  const first = members[0]!;
  return {
    backend: first.backend,
    config: first.config,
    paramCount: members.reduce((a, m) => a + m.paramCount, 0),
    numOutputs: first.numOutputs,
    head: first.head,
    async fit() {
      throw new GqaError("INVALID_INPUT", "an ensemble is trained member by member");
    },
    async probabilities(data, dims, lengths) {
      const sum = new Float32Array(dims[0] * first.numOutputs);
      for (const m of members) {
        const p = await m.probabilities(data, dims, lengths);
        for (let i = 0; i < p.length; i++) sum[i]! += p[i]! / members.length;
      }
      return sum;
    },
    async save() {
      const { packEnsemble } = await import("../model-file.js");
      return packEnsemble(await Promise.all(members.map((m) => m.save())));
    },
    dispose: () => {
      for (const m of members) m.dispose();
    },
  };
}

/**
 * Loads a model file written by `gqa train` (one model or an ensemble), checking its head against
 * the CLI metadata: `numOutputs` classes (classification) or targets (regression).
 * @throws GqaError `INVALID_INPUT` / load errors as {@link loadClassifier}; DataFormatError for a
 *   malformed ensemble file.
 */
export async function loadCliModel(bytes: Uint8Array, task: "classification" | "regression", numOutputs: number, file = "<model>"): Promise<TaskModel> {
  const { unpackEnsemble } = await import("../model-file.js");
  const members: TaskModel[] = [];
  try {
    for (const b of unpackEnsemble(bytes, file)) members.push(task === "regression" ? await loadRegressor(b, numOutputs, file) : await loadClassifier(b, numOutputs, file));
  } catch (e) {
    for (const m of members) m.dispose();
    throw e;
  }
  return ensembleOf(members);
}
