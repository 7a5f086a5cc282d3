/**
 * `gqa eval`: accuracy, per-class accuracy and confusion matrix of a trained model on a dataset split.
 */
import type { Command } from "commander";
import { Option } from "commander";
import { loadDataset } from "../data/datasets.js";
import { DataFormatError, readFileOrThrow } from "../data/errors.js";
import { standardize } from "../data/standardize.js";
import { addBackendOption, startBackend, type ModelFlags } from "./common.js";
import { argmaxRows, classificationMetrics, formatMetrics } from "./metrics.js";
import { loadCliModel, probabilitiesForSeries } from "./model-api.js";
import { readCliMetadata } from "../model-file.js";

interface EvalFlags {
  model: string;
  data: string;
  split: "train" | "test";
  json?: boolean;
  backend?: ModelFlags["backend"];
}

/** Registers `gqa eval` on `program`. */
export function registerEval(program: Command): void {
  const cmd = program
    .command("eval")
    .summary("evaluate a trained model on a dataset split")
    .description(
      "Evaluate a model written by `gqa train` on a UEA dataset split: accuracy, per-class accuracy " +
        "(recall) and the confusion matrix (rows: true class, columns: predicted). Inputs are " +
        "standardised with the training statistics stored in the model file.",
    )
    .requiredOption("--model <file>", "model.safetensors written by gqa train")
    .requiredOption("--data <name|path>", "dataset: japanese-vowels, basic-motions, a directory or a path prefix")
    .addOption(new Option("--split <split>", "which split to evaluate").choices(["train", "test"]).default("test"))
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
  if (meta.task === "regression") {
    throw new DataFormatError(flags.model, undefined, "a regression model: gqa eval scores classifiers on UEA datasets; use gqa predict (values) or the RMSE/MAE that gqa train reports");
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
  const pred = argmaxRows(await probabilitiesForSeries(clf, standardize(split.series, meta.standardize), meta.channels), K);
  clf.dispose();
  const m = classificationMetrics(split.labels, pred, K);
  if (flags.json) {
    process.stdout.write(JSON.stringify({ backend, dataset: ds.name, split: flags.split, classLabels: meta.classLabels, ...m }, null, 2) + "\n");
  } else {
    process.stdout.write(`${ds.name} (${flags.split} split, ${m.count} cases)\n${formatMetrics(m, meta.classLabels)}\n`);
  }
}
