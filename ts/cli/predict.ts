/**
 * `gqa predict`: class predictions of a trained model for series read from CSV, `.npy` or `.ts`.
 */
import type { Command } from "commander";
import { Option } from "commander";
import { DataFormatError, readFileOrThrow } from "../data/errors.js";
import { readSeriesInput } from "../data/input.js";
import { addBackendOption, startBackend, type ModelFlags } from "./common.js";
import { loadCliModel, modelArgs, probabilitiesForSeries } from "./model-api.js";
import { readCliMetadata } from "../model-file.js";
import { GqaError } from "../errors.js";
import { runStream } from "./stream.js";

interface PredictFlags {
  model: string;
  input?: string;
  stream?: boolean;
  idColumn?: string;
  labelColumn?: string;
  format: "json" | "csv";
  backend?: ModelFlags["backend"];
  threads?: number;
}

/** Registers `gqa predict` on `program`. */
export function registerPredict(program: Command): void {
  const cmd = program
    .command("predict")
    .summary("predict classes (or regression targets) for series in a CSV, .npy or .ts file")
    .description(
      [
        "Predict the class of each case in --input with a model written by `gqa train`.",
        "Input formats (by extension), those gqa train reads, labels optional and ignored: .csv",
        "whose header names an id or label column = gqa train's CSV (one row per time step; the id",
        "column groups rows into cases, each row is a case without it; every other column a",
        "channel); any other .csv = one series, rows are time steps, columns are channels, optional",
        "header; .npy = float32/float64 of shape [T, C] (one series) or [B, T, C]; .ts = a UEA file",
        "(every case). C must equal the model's channels. Inputs are standardised with the",
        "statistics stored in the model file. Output (stdout): one row per case (with its id when the",
        "CSV has an id column): the predicted label and the softmax probability of every class; for",
        "a regression model, the predicted value of every target, in the training targets' units.",
      ].join(" ").replace(/ ?\n ?/g, "\n"),
    )
    .requiredOption("--model <file>", "model.safetensors written by gqa train")
    .option("--input <file>", "cases to predict for: .csv, .npy or .ts")
    .option("--stream", "instead of an input file: one time step per stdin line (C values, comma or space separated) in, one prediction per line out as each arrives, at constant memory; the model needs a sliding window (gqa train's sliding-window flag)")
    .option("--id-column <name>", "CSV: the column whose value groups consecutive rows into one case; default id")
    .option("--label-column <name>", "CSV: label column(s), comma-separated, left out of the channels when present; default label")
    .addOption(new Option("--format <format>", "output format").choices(["json", "csv"]).default("json"));
  addBackendOption(cmd);
  cmd.action(async (flags: PredictFlags) => {
    await runPredict(flags);
  });
}

const csvField = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

async function runPredict(flags: PredictFlags): Promise<void> {
  if ((flags.input === undefined) === (flags.stream !== true)) {
    throw new GqaError("INVALID_INPUT", "predict: give exactly one of --input <file> and --stream");
  }
  const backend = await startBackend(flags);
  if (flags.stream === true) {
    const bytes = new Uint8Array(await readFileOrThrow(flags.model));
    const meta = readCliMetadata(bytes, flags.model);
    await runStream(bytes, flags.model, meta, flags.format, { input: process.stdin, write: (l) => process.stdout.write(l + "\n"), name: "<stdin>" });
    return;
  }
  const inputFile = flags.input!;
  const input = await readSeriesInput(inputFile, {
    ...(flags.idColumn !== undefined && { idColumn: flags.idColumn }),
    ...(flags.labelColumn !== undefined && { labelColumns: flags.labelColumn.split(",").map((c) => c.trim()) }),
  });
  // Per case: its index, its id (CSV with an id column) and its length.
  const ids = input.ids;
  const caseFields = (i: number) => ({ index: i, ...(ids && { id: ids[i]! }), length: input.lengths[i]! });
  const caseCsv = (i: number) => [String(i), ...(ids ? [csvField(ids[i]!)] : []), String(input.lengths[i]!)];
  const caseHead = ["index", ...(ids ? ["id"] : []), "length"];
  const bytes = new Uint8Array(await readFileOrThrow(flags.model));
  const meta = readCliMetadata(bytes, flags.model);
  const c = input.dims[2];
  if (c !== meta.channels) {
    throw new DataFormatError(
      inputFile,
      input.format === "npy" ? undefined : 1,
      `expected ${meta.channels} channels (the model's), found ${c}${input.format === "csv" ? " columns" : ""}`,
    );
  }
  if (meta.task === "regression") {
    const names = meta.targets!.names;
    const reg = await loadCliModel(bytes, "regression", names.length, flags.model);
    const out = await probabilitiesForSeries(reg, ...modelArgs(input.series, meta));
    reg.dispose();
    const k = names.length;
    // The model predicts standardised targets; map back to the training targets' units.
    const values = Array.from({ length: out.length / k }, (_, i) => names.map((_, j) => out[i * k + j]! * meta.targets!.std[j]! + meta.targets!.mean[j]!));
    if (flags.format === "csv") {
      const head = [...caseHead, ...names].map(csvField).join(",");
      process.stdout.write([head, ...values.map((v, i) => [...caseCsv(i), ...v.map((x) => x.toPrecision(8))].join(","))].join("\n") + "\n");
    } else {
      const predictions = values.map((v, i) => ({ ...caseFields(i), values: Object.fromEntries(names.map((n, j) => [n, v[j]!])) }));
      process.stdout.write(JSON.stringify({ backend, model: flags.model, input: inputFile, task: "regression", targets: names, predictions }, null, 2) + "\n");
    }
    return;
  }
  const K = meta.classLabels.length;
  const clf = await loadCliModel(bytes, "classification", K, flags.model);
  // model.predict returns class probabilities (the core's softmax); rows as float64 numbers.
  const flat = await probabilitiesForSeries(clf, ...modelArgs(input.series, meta));
  clf.dispose();
  const probs = Array.from({ length: flat.length / K }, (_, i) => Array.from(flat.subarray(i * K, (i + 1) * K)));
  const rows = probs.map((p, i) => {
    let best = 0;
    p.forEach((v, k) => {
      if (v > p[best]!) best = k;
    });
    return { ...caseFields(i), label: meta.classLabels[best]!, probabilities: Object.fromEntries(meta.classLabels.map((l, k) => [l, p[k]!])) };
  });
  if (flags.format === "csv") {
    const head = [...caseHead, "label", ...meta.classLabels.map((l) => `p_${l}`)].map(csvField).join(",");
    const lines = rows.map((r, i) => [...caseCsv(i), csvField(r.label), ...probs[i]!.map((v) => v.toPrecision(6))].join(","));
    process.stdout.write([head, ...lines].join("\n") + "\n");
  } else {
    process.stdout.write(JSON.stringify({ backend, model: flags.model, input: inputFile, classLabels: meta.classLabels, predictions: rows }, null, 2) + "\n");
  }
}
