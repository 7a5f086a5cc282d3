/**
 * `gqa eval`: accuracy, per-class accuracy and confusion matrix of a trained classifier (RMSE and
 * MAE of a regressor) on a dataset split or on the user's own labelled file.
 */
import { basename } from "node:path";
import type { Command } from "commander";
import { Option } from "commander";
import { loadDataset } from "../data/datasets.js";
import { DataFormatError, readFileOrThrow } from "../data/errors.js";
import { readLabelled, type RawLabelled } from "../data/labelled.js";
import { addBackendOption, startBackend, type ModelFlags } from "./common.js";
import { argmaxRows, classificationMetrics, formatMetrics } from "./metrics.js";
import { loadCliModel, modelArgs, probabilitiesForSeries } from "./model-api.js";
import { modelInputs, readCliMetadata, type CliMetadata } from "../model-file.js";
import { isOwnFile, regressionMetrics } from "./train.js";

interface EvalFlags {
  model: string;
  data: string;
  labels?: string;
  labelColumn?: string;
  idColumn?: string;
  split: "train" | "test";
  json?: boolean;
  backend?: ModelFlags["backend"];
  threads?: number;
}

/** Registers `gqa eval` on `program`. */
export function registerEval(program: Command): void {
  const cmd = program
    .command("eval")
    .summary("evaluate a trained model on a dataset split or your own CSV / .npy / .ts file")
    .description(
      "Evaluate a model written by `gqa train` on a UEA dataset split or on your own labelled file, " +
        "in the formats gqa train reads (CSV with a label column and an optional id column; .npy " +
        "[B, T, C] with --labels; a UEA .ts file), with any number of cases: accuracy, per-class " +
        "accuracy (recall) and the confusion matrix (rows: true class, columns: predicted); for a " +
        "regression model, RMSE and MAE in the targets' units. Inputs are standardised with the " +
        "training statistics stored in the model file.",
    )
    .requiredOption("--model <file>", "model.safetensors written by gqa train")
    .requiredOption("--data <name|path>", "dataset: japanese-vowels, basic-motions, a directory or a path prefix, or a labelled file (.csv, .npy, .ts)")
    .option("--labels <file>", "labels of .npy data: text (one per line) or .npy [B] / [B, K]")
    .option("--label-column <name>", "CSV: the label column (regression: comma-separated names for several targets); default label")
    .option("--id-column <name>", "CSV: the column whose value groups consecutive rows into one case; default id (rows are single-step cases without it)")
    .addOption(new Option("--split <split>", "which split of a dataset to evaluate").choices(["train", "test"]).default("test"))
    .option("--json", "print the metrics as JSON");
  addBackendOption(cmd);
  cmd.action(async (flags: EvalFlags) => {
    await runEval(flags);
  });
}

async function runEval(flags: EvalFlags): Promise<void> {
  const backend = await startBackend(flags);
  const bytes = new Uint8Array(await readFileOrThrow(flags.model));
  const meta = readCliMetadata(bytes, flags.model);
  if (isOwnFile(flags.data, undefined)) {
    await evalOwnFile(flags, bytes, meta, backend);
    return;
  }
  if (flags.labels !== undefined) throw new DataFormatError(flags.data, undefined, "--labels goes with .npy data; a UEA dataset carries its labels");
  if (meta.task === "regression") {
    throw new DataFormatError(flags.model, undefined, "a regression model: UEA datasets are classification; evaluate it on a CSV or .npy file with targets");
  }
  const ds = await loadDataset(flags.data);
  const split = flags.split === "train" ? ds.train : ds.test;
  const file = flags.split === "train" ? ds.files.train : ds.files.test;
  if (split.channels !== meta.channels) {
    throw new DataFormatError(file, 1, `the model expects ${meta.channels} channels, the data has ${split.channels}`);
  }
  if (split.classLabels.join("\u0000") !== meta.classLabels.join("\u0000")) {
    throw new DataFormatError(file, 1, `@classLabel (${split.classLabels.join(" ")}) differs from the model's classes (${meta.classLabels.join(" ")})`);
  }
  const clf = await loadCliModel(bytes, "classification", meta.classLabels.length, flags.model);
  const K = meta.classLabels.length;
  const pred = argmaxRows(await probabilitiesForSeries(clf, ...modelArgs(split.series, meta)), K);
  clf.dispose();
  const m = classificationMetrics(split.labels, pred, K);
  if (flags.json) {
    process.stdout.write(JSON.stringify({ backend, dataset: ds.name, split: flags.split, classLabels: meta.classLabels, ...m }, null, 2) + "\n");
  } else {
    process.stdout.write(`${ds.name} (${flags.split} split, ${m.count} cases)\n${formatMetrics(m, meta.classLabels)}\n`);
  }
}

/**
 * `gqa eval --data <file>`: the model's metrics on one labelled file, read by `gqa train`'s reader
 * with the model's task. Classes are matched to the model's class labels by name.
 * @throws {DataFormatError} naming the file (and case) for a channel count other than the model's,
 *   a class the model does not know, or a number of targets other than the model's.
 */
async function evalOwnFile(flags: EvalFlags, bytes: Uint8Array, meta: CliMetadata, backend: string): Promise<void> {
  const d: RawLabelled = await readLabelled(flags.data, {
    task: meta.task,
    ...(flags.labels !== undefined && { labels: flags.labels }),
    ...(flags.labelColumn !== undefined && { labelColumns: flags.labelColumn.split(",").map((c) => c.trim()) }),
    ...(flags.idColumn !== undefined && { idColumn: flags.idColumn }),
  });
  if (d.channels !== meta.channels) {
    throw new DataFormatError(d.file, d.format === "csv" ? 1 : undefined, `the model expects ${meta.channels} channels, the data has ${d.channels}`);
  }
  const name = basename(flags.data);
  const labelsFile = d.format === "npy" ? flags.labels ?? d.file : d.file;
  const z = modelInputs(d.series, meta);
  if (meta.task === "regression") {
    const t = meta.targets!;
    const k = t.names.length;
    const truth = d.targets!;
    if (truth[0]!.length !== k) throw new DataFormatError(labelsFile, undefined, `${truth[0]!.length} target value${truth[0]!.length === 1 ? "" : "s"} per case, the model predicts ${k} (${t.names.join(", ")})`);
    const reg = await loadCliModel(bytes, "regression", k, flags.model);
    const out = await probabilitiesForSeries(reg, z.series, z.width);
    reg.dispose();
    // The model predicts standardised targets; map back to the training targets' units.
    const pred = truth.map((_, i) => t.names.map((_, j) => out[i * k + j]! * t.std[j]! + t.mean[j]!));
    const m = regressionMetrics(truth, pred);
    if (flags.json) {
      process.stdout.write(JSON.stringify({ backend, data: flags.data, task: "regression", targets: t.names, ...m }, null, 2) + "\n");
    } else {
      const fmt = (v: number) => Number(v.toPrecision(6)).toString();
      process.stdout.write(`${name} (${m.count} cases)\nRMSE ${fmt(m.rmse)}, MAE ${fmt(m.mae)}\n`);
    }
    return;
  }
  const index = new Map(meta.classLabels.map((c, k) => [c, k] as const));
  const truth = d.classNames!.map((c, i) => {
    const k = index.get(c);
    if (k === undefined) throw new DataFormatError(labelsFile, undefined, `${d.where[i]}: class '${c}' is not one of the model's classes (${meta.classLabels.join(", ")})`);
    return k;
  });
  const K = meta.classLabels.length;
  const clf = await loadCliModel(bytes, "classification", K, flags.model);
  const pred = argmaxRows(await probabilitiesForSeries(clf, z.series, z.width), K);
  clf.dispose();
  const m = classificationMetrics(truth, pred, K);
  if (flags.json) {
    process.stdout.write(JSON.stringify({ backend, data: flags.data, classLabels: meta.classLabels, ...m }, null, 2) + "\n");
  } else {
    process.stdout.write(`${name} (${m.count} cases)\n${formatMetrics(m, meta.classLabels)}\n`);
  }
}
