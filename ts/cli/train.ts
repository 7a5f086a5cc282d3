/**
 * `gqa train`: trains a GQA model with a classification or regression head on a UEA dataset or
 * the user's own CSV / `.npy` / `.ts` files, and writes the model, metrics and plot.
 */
import { existsSync } from "node:fs";
import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { SingleBar } from "cli-progress";
import { InvalidArgumentError, Option, type Command } from "commander";
import { padBatch } from "../data/batch.js";
import { xorshift32 } from "../data/random.js";
import { loadDataset, SHIPPED_DATASETS } from "../data/datasets.js";
import { DataFormatError } from "../data/errors.js";
import { readLabelled, sortClassNames, type RawLabelled, type Task } from "../data/labelled.js";
import { channelStats, standardize, type ChannelStats } from "../data/standardize.js";
import type { GqaOptions, HeadOptions } from "../index.js";
import { addBackendOption, addModelOptions, intArg, modelOptions, numArg, startBackend, status, type ModelDefaults, type ModelFlags } from "./common.js";
import { argmaxRows, classificationMetrics, formatMetrics, type ClassificationMetrics } from "./metrics.js";
import { buildTaskModel, ensembleOf, probabilitiesForSeries, type FitConfig, type LabelledData, type StepReport, type TaskModel } from "./model-api.js";
import { MAX_ENSEMBLE_MEMBERS, withCliMetadata, type CliMetadata } from "../model-file.js";
import { trainingCurveSvg, type CurvePoint } from "./plot.js";
import { applyTransform, type TransformSpec } from "../data/transform.js";
import { describe as describeCandidate, recipeTable, searchRecipe, type RecipeResult } from "./recipe.js";

interface TrainFlags extends ModelFlags {
  data: string;
  labels?: string;
  testData?: string;
  testLabels?: string;
  labelColumn?: string;
  idColumn?: string;
  task: Task;
  loss?: "mse" | "huber";
  huberDelta?: number;
  /** `auto` (cross-validated search) or `fixed`; undefined when not given (see {@link recipeOf}). */
  recipe?: "auto" | "fixed";
  /** `--recipe auto`: seconds for the search. */
  budget: number;
  /** `--recipe auto`: cross-validation folds (= ensemble members of the final model). */
  folds: number;
  /** `--recipe auto`: most candidates tried. */
  maxCandidates: number;
  /** Undefined when not given: the dataset preset's, else 1. */
  ensemble?: number;
  /** Undefined when not given: 30 (`--recipe fixed`), or from the data's size (`--recipe auto`). */
  epochs?: number;
  /** Undefined when not given: the dataset preset's, else {@link DEFAULT_BATCH_SIZE}. */
  batchSize?: number;
  lr: number;
  weightDecay: number;
  /** Undefined when not given: the dataset preset's, else 0. */
  labelSmoothing?: number;
  valSplit: number;
  out: string;
  progress: boolean;
}

/**
 * Architecture defaults of `gqa train` (smaller than the core's 256-wide, 4-layer default: the
 * UEA datasets have a few hundred cases). Measured on JapaneseVowels with the other defaults
 * (30 epochs, batch 32, lr 3e-3): test accuracy 0.973-0.987 over model/fit seeds 0-4, in about
 * 2 s of training on 2 shared cores (docs/training.md, "The main job").
 */
export const TRAIN_DEFAULTS: ModelDefaults = { hiddenSize: 64, numHeads: 4, numKvHeads: 2, numLayers: 2, dropout: 0.1, rope: true };

/** Epochs of `--recipe fixed` unless `--epochs` is given. */
export const DEFAULT_EPOCHS = 30;

/** Sequences per step unless `--batch-size` or a dataset preset says otherwise. */
export const DEFAULT_BATCH_SIZE = 32;

/**
 * Per-dataset settings for the shipped datasets, used where the flag is not given. BasicMotions
 * has 40 training cases of 100 steps: with mean pooling and batches of 8 it reached 40/40 test
 * cases for seeds 0, 1, 2, against 36-39/40 with the last timestep and batches of 32.
 * JapaneseVowels: an ensemble of 15 default models trained with label smoothing 0.1, chosen by
 * 5-fold cross-validation on its train split only (scripts/cv-japanese-vowels.mjs/.json: CV accuracy
 * 0.9926, against 0.9907 for the same ensemble without smoothing and 0.9722 for one plain model;
 * docs/training.md, "The main job").
 */
export const DATASET_PRESETS: Readonly<Record<string, { batchSize?: number; outputMode?: "last_timestep" | "mean_pool"; ensemble?: number; labelSmoothing?: number }>> = {
  "basic-motions": { batchSize: 8, outputMode: "mean_pool" },
  "japanese-vowels": { ensemble: 15, labelSmoothing: 0.1 },
};

/** `--budget` default (seconds): the search of `--recipe auto` keeps `gqa train` under about 2 minutes on 2 cores. */
export const DEFAULT_BUDGET_S = 90;

/** `--folds` default. */
export const DEFAULT_FOLDS = 5;

/** Flags that set what `--recipe auto` searches, or that only `--recipe fixed` has (camelCase keys). */
export const FIXED_ONLY_FLAGS = ["batchSize", "lr", "labelSmoothing", "ensemble", "valSplit", "hiddenSize", "numLayers", "outputMode"] as const;

/** Registers `gqa train` on `program`. */
export function registerTrain(program: Command): void {
  const cmd = program
    .command("train")
    .summary("train a GQA classifier or regressor on a UEA dataset or your own CSV / .npy / .ts data")
    .description(
      [
        "Train a GQA model with a linear classification (or, with --task regression, regression)",
        "head. By default (--recipe auto) the recipe is chosen by k-fold cross-validation on the",
        "training split within --budget seconds (patching, instance normalisation, pooling, width,",
        "depth, lr, label smoothing, epochs, augmentation) and the fold models are kept as an",
        "ensemble; the table of candidates goes to stdout and metrics.json. --recipe fixed trains",
        "what the flags say (the behaviour below). Data:",
        "a UEA dataset (its train split; accuracy on its test split at the end) or your",
        "own file: CSV (header; one row per time step; a label column, an optional id column",
        "grouping rows into cases, every other column a channel), .npy [B, T, C] with --labels",
        "(text, one label per line, or .npy), or a UEA .ts file; --test-data is then scored once at",
        "the end. Regression reports RMSE and MAE in the targets' units. Inputs are standardised per",
        "channel with the training part's mean and std (regression targets too), stored in the model",
        "file for eval/predict. Optimiser:",
        "AdamW with warmup and cosine decay. Defaults: hidden 64, 4 heads, 2 KV heads, 2 layers,",
        "rotary, dropout 0.1, 30 epochs, batch 32, lr 3e-3; basic-motions uses mean pooling and",
        "batches of 8 unless --output-mode/--batch-size are given. Writes to --out: model.safetensors,",
        "metrics.json, training-curve.svg.",
      ].join(" ").replace(/ ?\n ?/g, "\n"),
    )
    .requiredOption("--data <name|path>", "dataset: japanese-vowels, basic-motions, a directory with *_TRAIN.ts/*_TEST.ts, a path prefix, or a training file (.csv, .npy, .ts)")
    .option("--labels <file>", "labels of .npy training data: text (one per line) or .npy [B] / [B, K]")
    .option("--test-data <file>", "test data (.csv, .npy, .ts) scored once after training")
    .option("--test-labels <file>", "labels of .npy test data")
    .option("--label-column <name>", "CSV: the label column (regression: comma-separated names for several targets); default label")
    .option("--id-column <name>", "CSV: the column whose value groups consecutive rows into one case; default id (rows are single-step cases without it)")
    .addOption(new Option("--task <task>", "classification (cross-entropy) or regression").choices(["classification", "regression"]).default("classification"))
    .addOption(new Option("--loss <loss>", "regression loss: mse or huber (PyTorch huber_loss); default mse").choices(["mse", "huber"]))
    .option("--huber-delta <x>", "Huber threshold delta (> 0) on standardised targets; default 1", numArg(Number.MIN_VALUE))
    .addOption(new Option("--recipe <recipe>", "auto: choose patching, normalisation, pooling, width, depth, lr, label smoothing, epochs and augmentation by k-fold CV on the training split within the budget, and keep the fold models as an ensemble; fixed: train what the flags say. Default: auto, or fixed when a flag only the fixed recipe takes is given (lr, batch size, label smoothing, ensemble, validation split, hidden size, layers, output mode)").choices(["auto", "fixed"]))
    .option("--budget <seconds>", "--recipe auto: seconds for the cross-validated search (the base candidate always runs)", numArg(Number.MIN_VALUE), DEFAULT_BUDGET_S)
    .option("--folds <k>", "--recipe auto: cross-validation folds, also the final ensemble's members", intArg(2), DEFAULT_FOLDS)
    .option("--max-candidates <n>", "--recipe auto: most candidates tried", intArg(1), 20)
    .option("--epochs <n>", "passes over the training data; default 30 (--recipe auto: clamp(ceil(300 / steps per epoch), 30, 150))", intArg(1))
    .option("--batch-size <n>", `sequences per optimisation step; default ${DEFAULT_BATCH_SIZE} (basic-motions: 8)`, intArg(1))
    .option("--lr <x>", "peak learning rate (10% linear warmup, then cosine decay to 0)", numArg(Number.MIN_VALUE), 3e-3)
    .option("--weight-decay <x>", "AdamW decoupled weight decay", numArg(0), 0.01)
    .option("--label-smoothing <x>", "classification label smoothing in [0, 1) (PyTorch cross_entropy(label_smoothing=)); default 0 (japanese-vowels: its preset, 0.1)", numArg(0, 1))
    .option("--val-split <f>", "fraction of the training data held out for validation (per class for classification, seeded), scored every epoch (progress line, plot, metrics.json)", numArg(0, 1), 0)
    .option("--ensemble <n>", `train n models (seeds seed*n .. seed*n+n-1) and average their outputs; one model file holds all (at most ${MAX_ENSEMBLE_MEMBERS}); default 1 (japanese-vowels: its preset)`, ensembleArg)
    .option("--out <dir>", "output directory (created if missing)", "runs/latest")
    .option("--no-progress", "no progress bar (one line per epoch instead)");
  addModelOptions(cmd, TRAIN_DEFAULTS, true);
  addBackendOption(cmd);
  cmd.action(async (flags: TrainFlags, command: Command) => {
    const given = (k: string) => command.getOptionValueSource(k) === "cli";
    await runTrain({ ...flags, recipe: recipeOf(flags.recipe, FIXED_ONLY_FLAGS.filter(given)) }, FIXED_ONLY_FLAGS.filter(given));
  });
}

/** Training and test data, from a UEA dataset pair or the user's files. */
interface TrainingSet {
  name: string;
  /** One of the shipped datasets (its preset applies). */
  shipped: boolean;
  task: Task;
  /** Files read (train, and test when given). */
  files: { train: string; test?: string; labels?: string; testLabels?: string };
  channels: number;
  /** Class names (classification), in output order. */
  classLabels: string[];
  /** Target names (regression). */
  targetNames: string[];
  train: { series: Float32Array[]; y: number[] | number[][] };
  test?: { series: Float32Array[]; y: number[] | number[][] };
}

/**
 * Whether `--data` names one file (CSV, `.npy`, or a `.ts` file that is not one half of a
 * `*_TRAIN.ts`/`*_TEST.ts` pair used without `--test-data`), rather than a dataset pair. Used by
 * `gqa train` and `gqa eval` (which has no `--test-data`).
 */
export function isOwnFile(spec: string, testData: string | undefined): boolean {
  if (/\.(csv|txt|npy)$/i.test(spec)) return true;
  if (!/\.ts$/i.test(spec)) return false;
  if (testData !== undefined) return true;
  const m = /^(.*)_(TRAIN|TEST)\.ts$/i.exec(spec);
  return !(m && existsSync(`${m[1]}_TRAIN.ts`) && existsSync(`${m[1]}_TEST.ts`));
}

/**
 * Reads the data `gqa train` trains on: a shipped/UEA dataset pair (`--data` name, directory or
 * prefix), or the user's own file (`--data x.csv|x.npy|x.ts` with `--labels` for `.npy`, and
 * optionally `--test-data`/`--test-labels`).
 * @throws {DataFormatError} naming file and line/index (see ts/data/labelled.ts); a test file whose
 *   channels differ from the training file's or with a class the training data lacks.
 */
async function loadTrainingSet(flags: TrainFlags): Promise<TrainingSet> {
  const task = flags.task;
  if (!isOwnFile(flags.data, flags.testData)) {
    if (task === "regression") throw new DataFormatError(flags.data, undefined, "--task regression needs CSV or .npy data (UEA .ts datasets are classification)");
    if (flags.labels !== undefined || flags.testLabels !== undefined) throw new DataFormatError(flags.data, undefined, "--labels/--test-labels go with .npy data; a UEA dataset carries its labels");
    const ds = await loadDataset(flags.data);
    return {
      name: ds.name,
      shipped: ds.name in SHIPPED_DATASETS,
      task,
      files: ds.files,
      channels: ds.train.channels,
      classLabels: ds.train.classLabels,
      targetNames: [],
      train: { series: ds.train.series, y: ds.train.labels },
      test: { series: ds.test.series, y: ds.test.labels },
    };
  }
  const opts = { task, labelColumns: flags.labelColumn?.split(",").map((c) => c.trim()), idColumn: flags.idColumn };
  const tr = await readLabelled(flags.data, { ...opts, ...(flags.labels !== undefined && { labels: flags.labels }) });
  const te = flags.testData === undefined ? undefined : await readLabelled(flags.testData, { ...opts, ...(flags.testLabels !== undefined && { labels: flags.testLabels }) });
  if (te && te.channels !== tr.channels) {
    throw new DataFormatError(te.file, te.format === "csv" ? 1 : undefined, `test data has ${te.channels} channels, training data (${tr.file}) has ${tr.channels}`);
  }
  const name = basename(flags.data).replace(/\.[^.]+$/, "").replace(/_TRAIN$/i, "");
  const files = { train: tr.file, ...(te && { test: te.file }), ...(flags.labels !== undefined && { labels: flags.labels }), ...(flags.testLabels !== undefined && { testLabels: flags.testLabels }) };
  if (task === "regression") {
    const k = tr.targets![0]!.length;
    if (te && te.targets![0]!.length !== k) throw new DataFormatError(flags.testLabels ?? te.file, undefined, `test targets have ${te.targets![0]!.length} values per case, training targets have ${k}`);
    const targetNames = tr.targetNames ?? (k === 1 ? ["target"] : Array.from({ length: k }, (_, j) => `target${j}`));
    return { name, shipped: false, task, files, channels: tr.channels, classLabels: [], targetNames, train: { series: tr.series, y: tr.targets! }, ...(te && { test: { series: te.series, y: te.targets! } }) };
  }
  const classLabels = tr.declaredClasses ?? sortClassNames(tr.classNames!);
  const index = new Map(classLabels.map((c, k) => [c, k] as const));
  const toIdx = (d: RawLabelled) =>
    d.classNames!.map((c, i) => {
      const k = index.get(c);
      if (k === undefined) {
        throw new DataFormatError(d.format === "npy" ? flags.testLabels ?? d.file : d.file, undefined, `${d.where[i]}: class '${c}' does not occur in the training data (${tr.file}: ${classLabels.join(", ")})`);
      }
      return k;
    });
  return { name, shipped: false, task, files, channels: tr.channels, classLabels, targetNames: [], train: { series: tr.series, y: toIdx(tr) }, ...(te && { test: { series: te.series, y: toIdx(te) } }) };
}

/** Mean and population std of each target column (std below 1e-8 becomes 1). */
function targetStats(rows: readonly number[][]): { mean: number[]; std: number[] } {
  const k = rows[0]!.length;
  const mean = Array.from({ length: k }, (_, j) => rows.reduce((a, r) => a + r[j]!, 0) / rows.length);
  const std = mean.map((m, j) => {
    const sd = Math.sqrt(rows.reduce((a, r) => a + (r[j]! - m) ** 2, 0) / rows.length);
    return sd < 1e-8 ? 1 : sd;
  });
  return { mean, std };
}

/** Regression metrics over every output of every case: RMSE and MAE in the targets' units. */
export function regressionMetrics(truth: readonly number[][], pred: readonly number[][]): { rmse: number; mae: number; count: number } {
  let se = 0, ae = 0, n = 0;
  truth.forEach((t, i) => {
    t.forEach((v, j) => {
      const d = pred[i]![j]! - v;
      se += d * d;
      ae += Math.abs(d);
      n++;
    });
  });
  return { rmse: Math.sqrt(se / n), mae: ae / n, count: truth.length };
}

/** Regression metrics of {@link regressionMetrics}, or classification metrics. */
type SplitMetrics = ReturnType<typeof regressionMetrics> | ClassificationMetrics;

/** The training split after the validation hold-out and standardisation, ready for `fit` and scoring. */
interface PreparedData {
  /** Indices into the training split of the cases trained on, ascending. */
  fitIdx: number[];
  /** Indices of the held-out validation cases (`--val-split`), ascending; empty without one. */
  valIdx: number[];
  /** Per-channel mean/std of the cases trained on. */
  stats: ChannelStats;
  /** Regression: per-target mean/std of the cases trained on. */
  tstats?: { mean: number[]; std: number[] };
  /** Features per token of the model's inputs: `C`, or `C * P` with patches of `P` steps. */
  width: number;
  /** Instance normalisation and patching after the standardisation (`--recipe auto`; absent: none). */
  transform?: TransformSpec;
  /** Transformed training series (standardised; `--recipe auto`: its whole transform), in the split's order. */
  ztrain: Float32Array[];
  /** Standardised test series (empty without test data). */
  ztest: Float32Array[];
  /** The padded cases trained on `[N, T, C]` with their labels (regression: standardised targets). */
  fit: LabelledData;
  /** The padded validation cases, when any. */
  validation?: LabelledData;
}

/** What `gqa train` builds and how it trains it: flags with dataset presets applied, model options, head, ensemble size. */
interface TrainingPlan {
  /** The flags, `epochs`, `batchSize` and `labelSmoothing` filled in (flag, else the dataset preset, else the default). */
  flags: TrainFlags & { epochs: number; batchSize: number; labelSmoothing: number };
  /** Model options (`embedDim` = channels; the preset's output mode unless `--output-mode`). */
  opts: GqaOptions;
  head: HeadOptions;
  /** Ensemble members (1: one model). */
  n: number;
  /** `--seed` (default 0); member `j` uses {@link memberSeed}. */
  seed: number;
}

/** The trained members with their per-epoch curves, training time (s) and tokens processed. */
interface TrainedMembers {
  members: TaskModel[];
  memberHistories: CurvePoint[][];
  seconds: number;
  tokens: number;
}

/** Scores of the trained model: training (fitted cases), validation and test splits. */
interface RunScores {
  train: SplitMetrics;
  val?: SplitMetrics;
  test?: SplitMetrics;
}

/**
 * The recipe to run: `--recipe` when given (auto with a flag in {@link FIXED_ONLY_FLAGS} is an
 * error), else fixed when such a flag is given (it says what to train), else auto.
 * @throws {InvalidArgumentError} `--recipe auto` with `--lr`, `--batch-size`, ...
 */
export function recipeOf(recipe: "auto" | "fixed" | undefined, fixedFlags: readonly string[]): "auto" | "fixed" {
  const flag = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  if (recipe === "auto" && fixedFlags.length) {
    throw new InvalidArgumentError(`--recipe auto chooses ${fixedFlags.map(flag).join(", ")} itself: expected none of them, found ${fixedFlags.map(flag).join(", ")} (give --recipe fixed to set them)`);
  }
  return recipe ?? (fixedFlags.length ? "fixed" : "auto");
}

/** `gqa train`: loads data, trains the model (or ensemble), scores it, writes `--out` and prints a summary. */
async function runTrain(flags: TrainFlags, fixedFlags: readonly string[]): Promise<void> {
  const backend = await startBackend(flags);
  const ds = await loadTrainingSet(flags);
  const K = checkedOutputCount(ds, flags);
  const seed = flags.seed ?? 0;
  if (flags.recipe === "auto") {
    await runAuto(flags, ds, K, backend);
    return;
  }
  if (flags.recipe === "fixed" && fixedFlags.length) status(`recipe: fixed (${fixedFlags.length} training flag${fixedFlags.length > 1 ? "s" : ""} given; --recipe auto would search them)`);
  const data = prepareData(ds, flags.valSplit, seed);
  reportData(ds, data, K, flags.valSplit);
  const plan = trainingPlan(ds, flags, K, seed);
  const trained = await trainMembers(plan, data, ds.task === "regression");
  const model = ensembleOf(trained.members);
  const history = meanHistory(trained.memberHistories);
  const scores = await scoreRun(model, ds, data, K);
  if (history.length && scores.test && "accuracy" in scores.test) history[history.length - 1]!.testAccuracy = scores.test.accuracy;
  const modelPath = await saveRun({ ds, data, plan, trained, model, history, scores, backend, K });
  printSummary(ds, plan, trained.seconds, backend, scores, modelPath);
}

/**
 * `gqa train --recipe auto`: searches the recipe by cross-validation on the training split
 * (ts/cli/recipe.ts), then transforms the training and test splits with the chosen transform,
 * scores the k fold models as one ensemble, writes `--out` and prints the table and the summary.
 * @throws {InvalidArgumentError} fewer training cases than `--folds`.
 */
async function runAuto(flags: TrainFlags, ds: TrainingSet, K: number, backend: string): Promise<void> {
  const seed = flags.seed ?? 0;
  const C = ds.channels;
  const regression = ds.task === "regression";
  if (ds.train.series.length < flags.folds) throw new InvalidArgumentError(`--folds: expected at most as many folds as training cases (${ds.train.series.length}), found ${flags.folds}`);
  const stats = channelStats(ds.train.series, C);
  const tstats = regression ? targetStats(ds.train.y as number[][]) : undefined;
  const y = regression ? (ds.train.y as number[][]).map((r) => r.map((v, j) => (v - tstats!.mean[j]!) / tstats!.std[j]!)) : (ds.train.y as number[]);
  const plan0 = trainingPlan(ds, flags, K, seed);
  status(`data: ${ds.name}: ${ds.train.series.length} train cases, ${C} channels, ${regression ? `${K} target(s) (regression)` : `${K} classes`}, T <= ${Math.max(...ds.train.series.map((x) => x.length / C))}; recipe auto: ${flags.folds}-fold CV on the training split, budget ${flags.budget} s`);
  const result = await searchRecipe(
    { task: ds.task, series: ds.train.series, channels: C, y, outputs: K, stats, ...(tstats && { tstats }) },
    { budget: flags.budget, folds: flags.folds, seed, maxCandidates: flags.maxCandidates, ...(flags.epochs !== undefined && { epochs: flags.epochs }), opts: plan0.opts, head: plan0.head, weightDecay: flags.weightDecay, progress: flags.progress },
  );
  const c = result.chosen;
  const transform: TransformSpec = { instanceNorm: c.instanceNorm, patch: c.patch };
  const t = { ...transform, standardize: stats };
  // The test split is transformed and scored only now, after the choice.
  const ztrain = applyTransform(ds.train.series, t);
  const ztest = ds.test ? applyTransform(ds.test.series, t) : [];
  const width = C * c.patch;
  const all = ds.train.series.map((_, i) => i);
  const b = padBatch(ztrain, width);
  const data: PreparedData = { fitIdx: all, valIdx: [], stats, ...(tstats && { tstats }), width, transform, ztrain, ztest, fit: { data: b.data, dims: b.dims, lengths: b.lengths, labels: y } };
  const plan: TrainingPlan = {
    flags: { ...plan0.flags, epochs: c.epochs, batchSize: c.batchSize, lr: c.lr, labelSmoothing: c.labelSmoothing },
    opts: { ...plan0.opts, embedDim: width, hiddenSize: c.hiddenSize, numLayers: c.numLayers, outputMode: c.outputMode },
    head: plan0.head,
    n: flags.folds,
    seed,
  };
  const trained: TrainedMembers = { members: result.models, memberHistories: result.curves, seconds: result.seconds, tokens: 0 };
  const model = ensembleOf(result.models);
  const history = meanHistory(result.curves);
  const scores = await scoreRun(model, ds, data, K);
  if (history.length && scores.test && "accuracy" in scores.test) history[history.length - 1]!.testAccuracy = scores.test.accuracy;
  process.stdout.write(`${recipeTable(result)}\nchosen: ${c.name} (${describeCandidate(c)}): ${result.reason}\n`);
  const modelPath = await saveRun({ ds, data, plan, trained, model, history, scores, backend, K, recipe: result });
  printSummary(ds, plan, trained.seconds, backend, scores, modelPath);
}

/** The `recipe` entry of metrics.json: settings, every candidate's CV scores and time, the choice and why. */
function recipeJson(r: RecipeResult, plan: TrainingPlan): Record<string, unknown> {
  return {
    kind: "auto",
    budgetSeconds: plan.flags.budget,
    folds: plan.n,
    metric: r.metric,
    seconds: r.seconds,
    foldSizes: r.folds.map((f) => f.length),
    candidates: r.results.map((x) => ({ name: x.candidate.name, settings: x.candidate, status: x.status, ...(x.score !== undefined && { cvScore: x.score, foldScores: x.foldScores, outOfFold: x.oof }), seconds: x.seconds })),
    chosen: r.chosen,
    reason: r.reason,
    finalModel: `the ${plan.n} fold models of the chosen candidate (each trained on ${plan.n - 1}/${plan.n} of the training split), outputs averaged; no retraining`,
  };
}

/**
 * Outputs per case `K` (classes, or regression targets), after checking the task's flags.
 * @throws {DataFormatError} classification data with fewer than 2 classes.
 * @throws {InvalidArgumentError} `--huber-delta` without `--loss huber`; `--loss` without `--task regression`.
 */
function checkedOutputCount(ds: TrainingSet, flags: TrainFlags): number {
  const regression = ds.task === "regression";
  const K = regression ? ds.targetNames.length : ds.classLabels.length;
  if (!regression && K < 2) throw new DataFormatError(ds.files.train, undefined, `classification needs at least 2 classes, found ${K} (${ds.classLabels.join(", ")})`);
  if (flags.huberDelta !== undefined && flags.loss !== "huber") throw new InvalidArgumentError("--huber-delta goes with --loss huber");
  if (flags.loss !== undefined && !regression) throw new InvalidArgumentError("--loss goes with --task regression (classification uses cross-entropy)");
  return K;
}

/**
 * Holds out `valSplit` of the training cases (per class; regression: of all cases, seeded by
 * `seed`), computes the standardisation statistics on the rest (targets too, for regression),
 * standardises both splits and pads the fitting and validation batches.
 */
function prepareData(ds: TrainingSet, valSplit: number, seed: number): PreparedData {
  const { train, test } = ds;
  const C = ds.channels;
  const regression = ds.task === "regression";
  // Regression: one group, so the hold-out is a seeded fraction of all cases.
  const strata = regression ? train.series.map(() => 0) : (train.y as number[]);
  const { fit: fitIdx, val: valIdx } = validationSplit(strata, valSplit, seed);
  // Standardisation statistics come from the cases the model trains on (targets too, for regression).
  const stats = channelStats(fitIdx.map((i) => train.series[i]!), C);
  const tstats = regression ? targetStats(fitIdx.map((i) => (train.y as number[][])[i]!)) : undefined;
  const zy = (rows: number[][]) => rows.map((r) => r.map((v, j) => (v - tstats!.mean[j]!) / tstats!.std[j]!));
  const yOf = (idx: number[]) => (regression ? zy(idx.map((i) => (train.y as number[][])[i]!)) : idx.map((i) => (train.y as number[])[i]!));
  const ztrain = standardize(train.series, stats);
  const ztest = test ? standardize(test.series, stats) : [];
  const batch = padBatch(fitIdx.map((i) => ztrain[i]!), C);
  const fit: LabelledData = { data: batch.data, dims: batch.dims, lengths: batch.lengths, labels: yOf(fitIdx) };
  const validation = valIdx.length ? (() => {
    const vb = padBatch(valIdx.map((i) => ztrain[i]!), C);
    return { data: vb.data, dims: vb.dims, lengths: vb.lengths, labels: yOf(valIdx) };
  })() : undefined;
  return { fitIdx, valIdx, stats, ...(tstats && { tstats }), width: C, ztrain, ztest, fit, ...(validation && { validation }) };
}

/** Prints the `data:` status line (and `validation:` with a hold-out): case counts, channels, outputs, longest case. */
function reportData(ds: TrainingSet, data: PreparedData, K: number, valSplit: number): void {
  const { train, test } = ds;
  const C = ds.channels;
  const longest = Math.max(...train.series.map((s) => s.length / C), ...(test ? test.series.map((s) => s.length / C) : []));
  const what = ds.task === "regression" ? `${K} target${K === 1 ? "" : "s"} (regression)` : `${K} classes`;
  status(`data: ${ds.name}: ${train.series.length} train / ${test ? test.series.length : "no"} test cases, ${C} channels, ${what}, T <= ${longest}${test ? " (both splits)" : ""}`);
  if (data.validation) status(`validation: ${data.valIdx.length} of the ${train.series.length} training cases held out (--val-split ${valSplit}); training on ${data.fitIdx.length}`);
}

/**
 * Resolves what to train: batch size, label smoothing, output mode and ensemble size from the flags,
 * else the shipped dataset's preset ({@link DATASET_PRESETS}), else the defaults; the model options
 * and the head (`K` classes, or `K` regression targets with `--loss`/`--huber-delta`).
 */
function trainingPlan(ds: TrainingSet, flags: TrainFlags, K: number, seed: number): TrainingPlan {
  const regression = ds.task === "regression";
  // Presets belong to the shipped datasets, not to a user's file that happens to share the name.
  const preset = (ds.shipped && DATASET_PRESETS[ds.name]) || {};
  const resolved = { ...flags, epochs: flags.epochs ?? DEFAULT_EPOCHS, batchSize: flags.batchSize ?? preset.batchSize ?? DEFAULT_BATCH_SIZE, labelSmoothing: flags.labelSmoothing ?? (regression ? 0 : preset.labelSmoothing) ?? 0 };
  const opts = modelOptions(resolved, ds.channels, TRAIN_DEFAULTS);
  if (resolved.outputMode === undefined && preset.outputMode) opts.outputMode = preset.outputMode;
  const head: HeadOptions = regression
    ? { type: "regression", outDim: K, loss: resolved.loss ?? "mse", ...(resolved.huberDelta !== undefined && { huberDelta: resolved.huberDelta }) }
    : { type: "classification", numClasses: K };
  return { flags: resolved, opts, head, n: flags.ensemble ?? preset.ensemble ?? 1, seed };
}

/** Seed of ensemble member `j`: `seed * n + j` (one model: `seed` itself). */
function memberSeed(plan: TrainingPlan, j: number): number {
  return plan.seed * plan.n + j;
}

/** The progress bar of `gqa train` on stderr (member, epoch, step, loss, accuracy, validation, tokens/s, ETA). */
function progressBar(n: number, regression: boolean): SingleBar {
  return new SingleBar(
    {
      format: `${n > 1 ? "member {m}/{n} " : ""}epoch {ep}/{epochs} |{bar}| step {s}/{spe} | loss {loss}${regression ? "" : " | acc {acc}"}{val} | {tps} tok/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 50,
    },
  );
}

/**
 * Trains the `plan.n` members one after the other (member `j` with its own initialisation, dropout
 * and batch order from {@link memberSeed}), reporting progress on a bar (a TTY with `--progress`)
 * or one status line per epoch. On an error the members built so far are disposed.
 */
async function trainMembers(plan: TrainingPlan, data: PreparedData, regression: boolean): Promise<TrainedMembers> {
  const { flags, n } = plan;
  const stepsPerEpoch = Math.ceil(data.fitIdx.length / flags.batchSize);
  const useBar = flags.progress && process.stderr.isTTY === true;
  const bar = progressBar(n, regression);
  const run: ProgressRun = { ...(useBar && { bar }), t0: performance.now(), tokens: 0, epochs: flags.epochs, stepsPerEpoch, n, regression };
  const members: TaskModel[] = [];
  const memberHistories: CurvePoint[][] = [];
  if (useBar) bar.start(stepsPerEpoch * flags.epochs * n, 0, { m: 1, n, ep: 1, epochs: flags.epochs, s: 0, spe: stepsPerEpoch, loss: "-", acc: "-", val: "", tps: "-" });
  try {
    for (let j = 0; j < n; j++) {
      // Member j: its own weight initialisation, dropout and batch order (seed * n + j; = seed alone).
      const member = await buildTaskModel({ ...plan.opts, seed: memberSeed(plan, j) }, plan.head);
      members.push(member);
      if (j === 0) status(`model: ${member.paramCount.toLocaleString("en-US")} parameters (with head)${n > 1 ? ` per member; an ensemble of ${n} (seeds ${memberSeed(plan, 0)}-${memberSeed(plan, n - 1)}), outputs averaged` : ""}`);
      const history: CurvePoint[] = [];
      memberHistories.push(history);
      const { onStep, onEpochEnd } = memberProgress(run, j, history);
      await member.fit(data.fit, {
        epochs: flags.epochs, batchSize: flags.batchSize, lr: flags.lr, weightDecay: flags.weightDecay, ...(flags.labelSmoothing > 0 && { labelSmoothing: flags.labelSmoothing }),
        seed: memberSeed(plan, j), onStep, onEpochEnd, ...(data.validation && { validation: data.validation }),
      });
    }
  } catch (e) {
    for (const m of members) m.dispose();
    throw e;
  } finally {
    if (useBar) bar.stop();
  }
  return { members, memberHistories, seconds: (performance.now() - run.t0) / 1000, tokens: run.tokens };
}

/** Progress state shared by every member's callbacks: the bar (absent: status lines), start time (ms), tokens so far. */
interface ProgressRun {
  bar?: SingleBar;
  t0: number;
  tokens: number;
  epochs: number;
  stepsPerEpoch: number;
  /** Ensemble members. */
  n: number;
  regression: boolean;
}

/**
 * The `onStep`/`onEpochEnd` callbacks of member `j`: they accumulate each epoch's loss, accuracy
 * and tokens, append one {@link CurvePoint} per epoch to `history` (validation scores added at the
 * epoch's end), and update the bar or print the epoch's status line.
 */
function memberProgress(run: ProgressRun, j: number, history: CurvePoint[]): Required<Pick<FitConfig, "onStep" | "onEpochEnd">> {
  const { bar, n, regression } = run;
  const who = n > 1 ? `member ${j + 1}/${n} ` : "";
  let ep = { loss: 0, correct: 0, count: 0, tokens: 0, start: performance.now() };
  let epochTps = 0;
  const onStep = (r: StepReport) => {
    ep.loss += r.loss * r.count;
    ep.correct += r.correct;
    ep.count += r.count;
    ep.tokens += r.tokens;
    run.tokens += r.tokens;
    const secs = (performance.now() - run.t0) / 1000;
    if (bar) {
      bar.update(j * run.stepsPerEpoch * run.epochs + r.globalStep + 1, {
        m: j + 1,
        ep: r.epoch + 1,
        epochs: run.epochs,
        s: r.stepInEpoch + 1,
        spe: r.stepsPerEpoch,
        loss: (ep.loss / ep.count).toFixed(4),
        acc: (ep.correct / ep.count).toFixed(3),
        tps: secs > 0 ? Math.round(run.tokens / secs).toLocaleString("en-US") : "-",
      });
    }
    if (r.stepInEpoch === r.stepsPerEpoch - 1) {
      const s = (performance.now() - ep.start) / 1000;
      history.push({ epoch: r.epoch + 1, trainLoss: ep.loss / ep.count, ...(!regression && { trainAccuracy: ep.correct / ep.count }) });
      epochTps = Math.round(ep.tokens / Math.max(s, 1e-9));
      ep = { loss: 0, correct: 0, count: 0, tokens: 0, start: performance.now() };
    }
  };
  // After each epoch's validation (when any): record it and print the epoch line.
  const onEpochEnd = (e: { epoch: number; valLoss?: number; valAccuracy?: number | null }) => {
    const point = history[history.length - 1]!;
    if (e.valLoss !== undefined) point.valLoss = e.valLoss;
    if (e.valAccuracy !== undefined && e.valAccuracy !== null) point.valAccuracy = e.valAccuracy;
    const val = point.valAccuracy !== undefined ? `, val acc ${point.valAccuracy.toFixed(3)}` : point.valLoss !== undefined ? `, val loss ${point.valLoss.toFixed(4)}` : "";
    if (bar) bar.update({ val: val.replace(",", " |") });
    else status(`${who}epoch ${point.epoch}/${run.epochs}: loss ${point.trainLoss.toFixed(4)}${point.trainAccuracy !== undefined ? `, acc ${point.trainAccuracy.toFixed(3)}` : ""}${val}, ${epochTps.toLocaleString("en-US")} tok/s`);
  };
  return { onStep, onEpochEnd };
}

/** The plotted curve: per epoch, the mean over the members of each value every member has (the members' own go to metrics.json). */
function meanHistory(memberHistories: readonly CurvePoint[][]): CurvePoint[] {
  const mean = (xs: (number | undefined)[]) => (xs.every((x) => x !== undefined) ? xs.reduce((a, x) => a! + x!, 0)! / xs.length : undefined);
  return memberHistories[0]!.map((p, e) => {
    const pts = memberHistories.map((h) => h[e]!);
    const out: CurvePoint = { epoch: p.epoch, trainLoss: mean(pts.map((q) => q.trainLoss))! };
    for (const k of ["trainAccuracy", "valLoss", "valAccuracy"] as const) {
      const v = mean(pts.map((q) => q[k]));
      if (v !== undefined) out[k] = v;
    }
    return out;
  });
}

/**
 * Scores `model` in the data's units (class predictions, or outputs mapped back to the targets'
 * scale): on the test split (when given), the cases trained on (without the validation part), and
 * the validation part (when any).
 */
async function scoreRun(model: TaskModel, ds: TrainingSet, data: PreparedData, K: number): Promise<RunScores> {
  const regression = ds.task === "regression";
  const { tstats } = data;
  const outputs = async (series: Float32Array[]) => {
    const flat = await probabilitiesForSeries(model, series, data.width);
    return Array.from({ length: series.length }, (_, i) => Array.from(flat.subarray(i * K, (i + 1) * K), (v, j) => (regression ? v * tstats!.std[j]! + tstats!.mean[j]! : v)));
  };
  const score = async (idx: number[] | undefined, series: Float32Array[], y: number[] | number[][]): Promise<SplitMetrics> => {
    const sel = idx ?? series.map((_, i) => i);
    const out = await outputs(sel.map((i) => series[i]!));
    if (regression) return regressionMetrics(sel.map((i) => (y as number[][])[i]!), out);
    return classificationMetrics(sel.map((i) => (y as number[])[i]!), argmaxRows(Float32Array.from(out.flat()), K), K);
  };
  const test = ds.test ? await score(undefined, data.ztest, ds.test.y) : undefined;
  const train = await score(data.fitIdx, data.ztrain, ds.train.y);
  const val = data.valIdx.length ? await score(data.valIdx, data.ztrain, ds.train.y) : undefined;
  return { train, ...(val && { val }), ...(test && { test }) };
}

/** Everything {@link saveRun} writes about a finished run. */
interface FinishedRun {
  ds: TrainingSet;
  data: PreparedData;
  plan: TrainingPlan;
  trained: TrainedMembers;
  /** The trained model or ensemble; disposed by {@link saveRun}. */
  model: TaskModel;
  /** Mean curve over the members ({@link meanHistory}). */
  history: CurvePoint[];
  scores: RunScores;
  backend: string;
  K: number;
  /** `--recipe auto`: the search's table and choice. */
  recipe?: RecipeResult;
}

/**
 * Writes the run to `--out` (created if missing), all or nothing: model.safetensors (weights plus
 * the CLI metadata eval/predict need), metrics.json and training-curve.svg. Disposes the model.
 * @returns the model file's path.
 */
async function saveRun(run: FinishedRun): Promise<string> {
  const { ds, data, plan, model } = run;
  const out = plan.flags.out;
  await mkdir(out, { recursive: true });
  const meta: CliMetadata = {
    version: 1,
    task: ds.task,
    dataset: ds.name,
    classLabels: ds.classLabels,
    channels: ds.channels,
    standardize: data.stats,
    ...(data.transform && { transform: data.transform }),
    ...(data.tstats && { targets: { names: ds.targetNames, ...data.tstats } }),
  };
  const modelPath = join(out, "model.safetensors");
  const modelBytes = withCliMetadata(await model.save(), meta);
  const metrics = metricsJson(run);
  const regressionLoss = ds.task === "regression" ? `${plan.head.type === "regression" && plan.head.loss === "huber" ? "Huber" : "MSE"} (standardised targets)` : undefined;
  const curve = trainingCurveSvg(run.history, `gqa train ${ds.name}`, regressionLoss);
  model.dispose();
  await writeOutputs(out, [
    ["model.safetensors", modelBytes],
    ["metrics.json", JSON.stringify(metrics, null, 2) + "\n"],
    ["training-curve.svg", curve],
  ]);
  return modelPath;
}

/** The contents of metrics.json: data, backend, model config, head, training settings and time, curves, scores. */
function metricsJson(run: FinishedRun): Record<string, unknown> {
  const { ds, data, plan, trained, model, scores, K } = run;
  const { flags, n } = plan;
  const regression = ds.task === "regression";
  const { train } = scores;
  return {
    dataset: ds.name,
    task: ds.task,
    files: ds.files,
    backend: run.backend,
    config: model.config,
    head: plan.head,
    ...(regression ? { targetNames: ds.targetNames, targetStandardize: data.tstats } : { numClasses: K, classLabels: ds.classLabels }),
    paramCount: model.paramCount,
    training: { epochs: flags.epochs, batchSize: flags.batchSize, lr: flags.lr, weightDecay: flags.weightDecay, labelSmoothing: flags.labelSmoothing, seed: plan.seed, ensemble: n, memberSeeds: trained.members.map((_, j) => memberSeed(plan, j)), valSplit: flags.valSplit, trainCount: data.fitIdx.length, valCount: data.valIdx.length, seconds: trained.seconds, tokensPerSecond: trained.tokens / trained.seconds },
    ...(run.recipe && { recipe: recipeJson(run.recipe, plan) }),
    history: run.history,
    ...(n > 1 && { memberHistories: trained.memberHistories }),
    train: "accuracy" in train ? { accuracy: train.accuracy, count: train.count } : train,
    ...(scores.val && { validation: scores.val }),
    ...(scores.test && { test: scores.test }),
  };
}

/** Prints the run's summary on stdout: training time, train/validation/test scores, files written. */
function printSummary(ds: TrainingSet, plan: TrainingPlan, seconds: number, backend: string, scores: RunScores, modelPath: string): void {
  const { flags, n } = plan;
  const { train, val, test } = scores;
  const fmt = (m: SplitMetrics) => ("accuracy" in m ? `accuracy: ${(100 * m.accuracy).toFixed(2)}% (${Math.round(m.accuracy * m.count)}/${m.count})` : `RMSE ${fmtNum(m.rmse)}, MAE ${fmtNum(m.mae)} (${m.count} cases)`);
  process.stdout.write(
    [
      `trained ${n > 1 ? `${n} members x ` : ""}${flags.epochs} epochs in ${seconds.toFixed(1)} s on ${backend}`,
      `train ${fmt(train)}`,
      ...(val ? [`validation ${fmt(val)}`] : []),
      ...(test ? [ds.task === "regression" || !("accuracy" in test) ? `test ${fmt(test)}` : `test ${formatMetrics(test, ds.classLabels)}`] : ["no test data (--test-data): not scored"]),
      `wrote ${modelPath}, ${join(flags.out, "metrics.json")}, ${join(flags.out, "training-curve.svg")}`,
    ].join("\n") + "\n",
  );
}

/**
 * Writes the run's outputs into `dir` all or nothing: each file to a temporary name in `dir`
 * first; once every write succeeded and every target is free to take a file (not a directory),
 * the temporary files are renamed into place. On an error they are removed, so a failed write
 * leaves no output half-written (no model without its metrics).
 */
async function writeOutputs(dir: string, files: ReadonlyArray<readonly [string, string | Uint8Array]>): Promise<void> {
  const tag = `.${process.pid}-${Date.now()}.tmp`;
  const temps = files.map(([name]) => join(dir, `.${name}${tag}`));
  try {
    for (const [i, [, data]] of files.entries()) await writeFile(temps[i]!, data);
    for (const [name] of files) {
      const target = join(dir, name);
      const st = await stat(target).catch(() => undefined);
      if (st && !st.isFile()) throw new Error(`cannot write ${target}: it exists and is ${st.isDirectory() ? "a directory" : "not a regular file"}; no output was written`);
    }
    for (const [i, [name]] of files.entries()) await rename(temps[i]!, join(dir, name));
  } catch (e) {
    await Promise.all(temps.map((t) => rm(t, { force: true })));
    throw e;
  }
}

/** `--ensemble`: an integer in 1..{@link MAX_ENSEMBLE_MEMBERS}, the model file's limit (checked before training). */
function ensembleArg(v: string): number {
  const n = intArg(1)(v);
  if (n > MAX_ENSEMBLE_MEMBERS) {
    throw new InvalidArgumentError(`expected at most ${MAX_ENSEMBLE_MEMBERS} members (the model file's limit: its 'gqa_ensemble' metadata, read by eval, predict and info, holds [1, ${MAX_ENSEMBLE_MEMBERS}]), found ${v}`);
  }
  return n;
}

/** A metric value with 6 significant digits. */
const fmtNum = (v: number) => Number(v.toPrecision(6)).toString();

/**
 * Splits training indices into a fitting part and a validation part: from each class,
 * `round(fraction * count)` cases (at most `count - 1`), chosen by a seeded shuffle (xorshift32 of
 * `seed`), so every class stays in both parts and the split is the same for a seed.
 */
export function validationSplit(labels: readonly number[], fraction: number, seed: number): { fit: number[]; val: number[] } {
  const all = labels.map((_, i) => i);
  if (!(fraction > 0)) return { fit: all, val: [] };
  const rand = xorshift32(seed, 0x9e3779b9);
  const val: number[] = [];
  for (const c of [...new Set(labels)].sort((a, b) => a - b)) {
    const idx = all.filter((i) => labels[i] === c);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    val.push(...idx.slice(0, Math.min(Math.round(fraction * idx.length), idx.length - 1)));
  }
  const held = new Set(val);
  return { fit: all.filter((i) => !held.has(i)), val: val.sort((a, b) => a - b) };
}
