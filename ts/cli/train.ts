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
import { loadDataset, SHIPPED_DATASETS } from "../data/datasets.js";
import { DataFormatError } from "../data/errors.js";
import { readLabelled, sortClassNames, type RawLabelled, type Task } from "../data/labelled.js";
import { channelStats, standardize } from "../data/standardize.js";
import type { HeadOptions } from "../index.js";
import { addBackendOption, addModelOptions, intArg, modelOptions, numArg, startBackend, status, type ModelDefaults, type ModelFlags } from "./common.js";
import { argmaxRows, classificationMetrics, formatMetrics } from "./metrics.js";
import { buildTaskModel, ensembleOf, probabilitiesForSeries, type Classifier, type StepReport } from "./model-api.js";
import { MAX_ENSEMBLE_MEMBERS, withCliMetadata, type CliMetadata } from "../model-file.js";
import { trainingCurveSvg, type CurvePoint } from "./plot.js";

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
  /** Undefined when not given: the dataset preset's, else 1. */
  ensemble?: number;
  epochs: number;
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

/** Registers `gqa train` on `program`. */
export function registerTrain(program: Command): void {
  const cmd = program
    .command("train")
    .summary("train a GQA classifier or regressor on a UEA dataset or your own CSV / .npy / .ts data")
    .description(
      [
        "Train a GQA model with a linear classification (or, with --task regression, regression)",
        "head on a UEA dataset (its train split; accuracy on its test split at the end) or on your",
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
    .option("--epochs <n>", "passes over the training data", intArg(1), 30)
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
  cmd.action(async (flags: TrainFlags) => {
    await runTrain(flags);
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
  truth.forEach((t, i) => t.forEach((v, j) => {
    const d = pred[i]![j]! - v;
    se += d * d;
    ae += Math.abs(d);
    n++;
  }));
  return { rmse: Math.sqrt(se / n), mae: ae / n, count: truth.length };
}

async function runTrain(flags: TrainFlags): Promise<void> {
  const backend = await startBackend(flags);
  const ds = await loadTrainingSet(flags);
  const { train, test } = ds;
  const C = ds.channels;
  const regression = ds.task === "regression";
  const K = regression ? ds.targetNames.length : ds.classLabels.length;
  if (!regression && K < 2) throw new DataFormatError(ds.files.train, undefined, `classification needs at least 2 classes, found ${K} (${ds.classLabels.join(", ")})`);
  if (flags.huberDelta !== undefined && flags.loss !== "huber") throw new InvalidArgumentError("--huber-delta goes with --loss huber");
  if (flags.loss !== undefined && !regression) throw new InvalidArgumentError("--loss goes with --task regression (classification uses cross-entropy)");
  const seed = flags.seed ?? 0;
  // Regression: one group, so the hold-out is a seeded fraction of all cases.
  const strata = regression ? train.series.map(() => 0) : (train.y as number[]);
  const { fit: fitIdx, val: valIdx } = validationSplit(strata, flags.valSplit, seed);
  // Standardisation statistics come from the cases the model trains on (targets too, for regression).
  const stats = channelStats(fitIdx.map((i) => train.series[i]!), C);
  const tstats = regression ? targetStats(fitIdx.map((i) => (train.y as number[][])[i]!)) : undefined;
  const zy = (rows: number[][]) => rows.map((r) => r.map((v, j) => (v - tstats!.mean[j]!) / tstats!.std[j]!));
  const yOf = (idx: number[]) => (regression ? zy(idx.map((i) => (train.y as number[][])[i]!)) : idx.map((i) => (train.y as number[])[i]!));
  const ztrain = standardize(train.series, stats);
  const ztest = test ? standardize(test.series, stats) : [];
  const batch = padBatch(fitIdx.map((i) => ztrain[i]!), C);
  const fitLabels = yOf(fitIdx);
  const validation = valIdx.length ? (() => {
    const vb = padBatch(valIdx.map((i) => ztrain[i]!), C);
    return { data: vb.data, dims: vb.dims, lengths: vb.lengths, labels: yOf(valIdx) };
  })() : undefined;
  const longest = Math.max(...train.series.map((s) => s.length / C), ...(test ? test.series.map((s) => s.length / C) : []));
  const what = regression ? `${K} target${K === 1 ? "" : "s"} (regression)` : `${K} classes`;
  status(`data: ${ds.name}: ${train.series.length} train / ${test ? test.series.length : "no"} test cases, ${C} channels, ${what}, T <= ${longest}${test ? " (both splits)" : ""}`);
  if (validation) status(`validation: ${valIdx.length} of the ${train.series.length} training cases held out (--val-split ${flags.valSplit}); training on ${fitIdx.length}`);

  // Presets belong to the shipped datasets, not to a user's file that happens to share the name.
  const preset = (ds.shipped && DATASET_PRESETS[ds.name]) || {};
  flags = { ...flags, batchSize: flags.batchSize ?? preset.batchSize ?? DEFAULT_BATCH_SIZE, labelSmoothing: flags.labelSmoothing ?? (regression ? 0 : preset.labelSmoothing) ?? 0 };
  const opts = modelOptions(flags, C, TRAIN_DEFAULTS);
  if (flags.outputMode === undefined && preset.outputMode) opts.outputMode = preset.outputMode;
  const head: HeadOptions = regression
    ? { type: "regression", outDim: K, loss: flags.loss ?? "mse", ...(flags.huberDelta !== undefined && { huberDelta: flags.huberDelta }) }
    : { type: "classification", numClasses: K };
  const n = flags.ensemble ?? preset.ensemble ?? 1;
  const memberSeed = (j: number) => seed * n + j;
  const batchSize = flags.batchSize!;
  const stepsPerEpoch = Math.ceil(fitIdx.length / batchSize);
  const total = stepsPerEpoch * flags.epochs * n;
  const useBar = flags.progress && process.stderr.isTTY === true;
  const bar = new SingleBar(
    {
      format: `${n > 1 ? "member {m}/{n} " : ""}epoch {ep}/{epochs} |{bar}| step {s}/{spe} | loss {loss}${regression ? "" : " | acc {acc}"}{val} | {tps} tok/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 50,
    },
  );
  const members: Classifier[] = [];
  const memberHistories: CurvePoint[][] = [];
  const t0 = performance.now();
  let tokensAll = 0;
  if (useBar) bar.start(total, 0, { m: 1, n, ep: 1, epochs: flags.epochs, s: 0, spe: stepsPerEpoch, loss: "-", acc: "-", val: "", tps: "-" });
  try {
    for (let j = 0; j < n; j++) {
      // Member j: its own weight initialisation, dropout and batch order (seed * n + j; = seed alone).
      const clf = await buildTaskModel({ ...opts, seed: memberSeed(j) }, head);
      members.push(clf);
      if (j === 0) status(`model: ${clf.paramCount.toLocaleString("en-US")} parameters (with head)${n > 1 ? ` per member; an ensemble of ${n} (seeds ${memberSeed(0)}-${memberSeed(n - 1)}), outputs averaged` : ""}`);
      const history: CurvePoint[] = [];
      memberHistories.push(history);
      const who = n > 1 ? `member ${j + 1}/${n} ` : "";
      let ep = { loss: 0, correct: 0, count: 0, tokens: 0, start: performance.now() };
      let epochTps = 0;
      const onStep = (r: StepReport) => {
        ep.loss += r.loss * r.count;
        ep.correct += r.correct;
        ep.count += r.count;
        ep.tokens += r.tokens;
        tokensAll += r.tokens;
        const secs = (performance.now() - t0) / 1000;
        if (useBar) {
          bar.update(j * stepsPerEpoch * flags.epochs + r.globalStep + 1, {
            m: j + 1,
            ep: r.epoch + 1,
            epochs: flags.epochs,
            s: r.stepInEpoch + 1,
            spe: r.stepsPerEpoch,
            loss: (ep.loss / ep.count).toFixed(4),
            acc: (ep.correct / ep.count).toFixed(3),
            tps: secs > 0 ? Math.round(tokensAll / secs).toLocaleString("en-US") : "-",
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
        if (useBar) bar.update({ val: val.replace(",", " |") });
        else status(`${who}epoch ${point.epoch}/${flags.epochs}: loss ${point.trainLoss.toFixed(4)}${point.trainAccuracy !== undefined ? `, acc ${point.trainAccuracy.toFixed(3)}` : ""}${val}, ${epochTps.toLocaleString("en-US")} tok/s`);
      };
      await clf.fit(
        { data: batch.data, dims: batch.dims, lengths: batch.lengths, labels: fitLabels },
        { epochs: flags.epochs, batchSize, lr: flags.lr, weightDecay: flags.weightDecay, ...(flags.labelSmoothing! > 0 && { labelSmoothing: flags.labelSmoothing }), seed: memberSeed(j), onStep, onEpochEnd, ...(validation && { validation }) },
      );
    }
  } catch (e) {
    members.forEach((m) => m.dispose());
    throw e;
  } finally {
    if (useBar) bar.stop();
  }
  const clf = ensembleOf(members);
  // The plotted curve: per epoch, the mean over the members (the members' own in metrics.json).
  const mean = (xs: (number | undefined)[]) => (xs.every((x) => x !== undefined) ? xs.reduce((a, x) => a! + x!, 0)! / xs.length : undefined);
  const history: CurvePoint[] = memberHistories[0]!.map((p, e) => {
    const pts = memberHistories.map((h) => h[e]!);
    const out: CurvePoint = { epoch: p.epoch, trainLoss: mean(pts.map((q) => q.trainLoss))! };
    for (const k of ["trainAccuracy", "valLoss", "valAccuracy"] as const) {
      const v = mean(pts.map((q) => q[k]));
      if (v !== undefined) out[k] = v;
    }
    return out;
  });
  const trainSeconds = (performance.now() - t0) / 1000;

  // Scores in the data's units: class predictions, or outputs mapped back to the targets' scale.
  const outputs = async (series: Float32Array[]) => {
    const flat = await probabilitiesForSeries(clf, series, C);
    return Array.from({ length: series.length }, (_, i) => Array.from(flat.subarray(i * K, (i + 1) * K), (v, j) => (regression ? v * tstats!.std[j]! + tstats!.mean[j]! : v)));
  };
  const score = async (idx: number[] | undefined, series: Float32Array[], y: number[] | number[][]) => {
    const sel = idx ?? series.map((_, i) => i);
    const out = await outputs(sel.map((i) => series[i]!));
    if (regression) return regressionMetrics(sel.map((i) => (y as number[][])[i]!), out);
    return classificationMetrics(sel.map((i) => (y as number[])[i]!), argmaxRows(Float32Array.from(out.flat()), K), K);
  };
  const testMetrics = test ? await score(undefined, ztest, test.y) : undefined;
  // Training metrics over the cases trained on (without the validation part).
  const trainMetrics = await score(fitIdx, ztrain, train.y);
  const valMetrics = valIdx.length ? await score(valIdx, ztrain, train.y) : undefined;
  if (history.length && testMetrics && "accuracy" in testMetrics) history[history.length - 1]!.testAccuracy = testMetrics.accuracy;

  await mkdir(flags.out, { recursive: true });
  const meta: CliMetadata = {
    version: 1,
    task: ds.task,
    dataset: ds.name,
    classLabels: ds.classLabels,
    channels: C,
    standardize: stats,
    ...(tstats && { targets: { names: ds.targetNames, ...tstats } }),
  };
  const modelPath = join(flags.out, "model.safetensors");
  const modelBytes = withCliMetadata(await clf.save(), meta);
  const metrics = {
    dataset: ds.name,
    task: ds.task,
    files: ds.files,
    backend,
    config: clf.config,
    head,
    ...(regression ? { targetNames: ds.targetNames, targetStandardize: tstats } : { numClasses: K, classLabels: ds.classLabels }),
    paramCount: clf.paramCount,
    training: { epochs: flags.epochs, batchSize, lr: flags.lr, weightDecay: flags.weightDecay, labelSmoothing: flags.labelSmoothing, seed, ensemble: n, memberSeeds: members.map((_, j) => memberSeed(j)), valSplit: flags.valSplit, trainCount: fitIdx.length, valCount: valIdx.length, seconds: trainSeconds, tokensPerSecond: tokensAll / trainSeconds },
    history,
    ...(n > 1 && { memberHistories }),
    train: "accuracy" in trainMetrics ? { accuracy: trainMetrics.accuracy, count: trainMetrics.count } : trainMetrics,
    ...(valMetrics && { validation: valMetrics }),
    ...(testMetrics && { test: testMetrics }),
  };
  const curve = trainingCurveSvg(history, `gqa train ${ds.name}`, regression ? `${head.type === "regression" && head.loss === "huber" ? "Huber" : "MSE"} (standardised targets)` : undefined);
  clf.dispose();
  await writeOutputs(flags.out, [
    ["model.safetensors", modelBytes],
    ["metrics.json", JSON.stringify(metrics, null, 2) + "\n"],
    ["training-curve.svg", curve],
  ]);

  const fmt = (m: Awaited<ReturnType<typeof score>>) => ("accuracy" in m ? `accuracy: ${(100 * m.accuracy).toFixed(2)}% (${Math.round(m.accuracy * m.count)}/${m.count})` : `RMSE ${fmtNum(m.rmse)}, MAE ${fmtNum(m.mae)} (${m.count} cases)`);
  process.stdout.write(
    [
      `trained ${n > 1 ? `${n} members x ` : ""}${flags.epochs} epochs in ${trainSeconds.toFixed(1)} s on ${backend}`,
      `train ${fmt(trainMetrics)}`,
      ...(valMetrics ? [`validation ${fmt(valMetrics)}`] : []),
      ...(testMetrics ? [regression || !("accuracy" in testMetrics) ? `test ${fmt(testMetrics)}` : `test ${formatMetrics(testMetrics, ds.classLabels)}`] : ["no test data (--test-data): not scored"]),
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
  let s = (seed ^ 0x9e3779b9) >>> 0 || 1;
  const rand = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
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
