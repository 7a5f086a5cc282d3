/**
 * `gqa export-data`: writes a UEA dataset, read and standardised exactly as `gqa train` reads and
 * standardises it, to `.npy` arrays for other engines (the PyTorch twin in `python/`:
 * `torchrun -m gqa_torch.train --data DIR`).
 *
 * Output directory:
 * - `train_x.npy` float32 `[N, T, C]`: standardised `(x - mean[c]) / std[c]` with the training
 *   split's per-channel statistics (ts/data/standardize.ts), left-aligned, zero after each case's
 *   end (`T` = the split's longest case);
 * - `train_lengths.npy` int64 `[N]`: valid steps per case (`1..T`);
 * - `train_labels.npy` int64 `[N]`: class index per case into `classLabels`;
 * - `test_x.npy`, `test_lengths.npy`, `test_labels.npy`: the test split, standardised with the
 *   training statistics;
 * - `meta.json`: `{format: "gqa-export-data", version: 1, dataset, files, channels, classLabels,
 *   standardize: {mean, std}, train: {cases, maxLength}, test: {cases, maxLength}}`.
 *
 * No compute backend is started.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { padBatch } from "../data/batch.js";
import { loadDataset } from "../data/datasets.js";
import { DataFormatError } from "../data/errors.js";
import { encodeNpy } from "../data/npy.js";
import { channelStats, standardize } from "../data/standardize.js";
import type { UeaDataset } from "../data/uea.js";
import { status } from "./common.js";

interface ExportFlags {
  data: string;
  out: string;
}

/** `meta.json`'s `format` value. */
export const EXPORT_FORMAT = "gqa-export-data";

/** What `meta.json` holds. */
export interface ExportMeta {
  format: typeof EXPORT_FORMAT;
  version: 1;
  /** Dataset name (`japanese-vowels`, or the file stem). */
  dataset: string;
  /** The `.ts` files read. */
  files: { train: string; test: string };
  /** Channels `C`. */
  channels: number;
  /** Class names; label `k` is `classLabels[k]`. */
  classLabels: string[];
  /** The training split's per-channel mean and population std, applied to both splits. */
  standardize: { mean: number[]; std: number[] };
  train: { cases: number; maxLength: number };
  test: { cases: number; maxLength: number };
}

/** Registers `gqa export-data` on `program`. */
export function registerExportData(program: Command): void {
  program
    .command("export-data")
    .summary("write a UEA dataset, standardised as gqa train does, to .npy arrays (for the PyTorch twin)")
    .description(
      [
        "Read a UEA dataset (both splits) with the loaders of `gqa train`, standardise every channel",
        "with the training split's mean and std, and write to --out: train_x.npy / test_x.npy",
        "(float32 [N, T, C], zero-padded after each case), train_lengths.npy / test_lengths.npy",
        "(int64 [N]), train_labels.npy / test_labels.npy (int64 [N], indices into the class labels)",
        "and meta.json (class labels, channels, the standardisation statistics). python/ trains on",
        "them: torchrun --nproc_per_node 2 -m gqa_torch.train --data DIR --out model.safetensors.",
      ].join(" ").replace(/ ?\n ?/g, "\n"),
    )
    .requiredOption("--data <name|path>", "dataset: japanese-vowels, basic-motions, a directory with *_TRAIN.ts/*_TEST.ts, or a path prefix")
    .requiredOption("--out <dir>", "output directory (created if missing)")
    .action(async (flags: ExportFlags) => {
      await runExport(flags);
    });
}

/** The arrays of one split: padded standardised inputs, lengths and labels as `.npy` bytes. */
function splitFiles(series: Float32Array[], split: UeaDataset, channels: number): { x: Uint8Array; lengths: Uint8Array; labels: Uint8Array; maxLength: number } {
  const b = padBatch(series, channels);
  return {
    x: encodeNpy(b.data, b.dims),
    lengths: encodeNpy(BigInt64Array.from(b.lengths, (l) => BigInt(l)), [b.lengths.length]),
    labels: encodeNpy(BigInt64Array.from(split.labels, (l) => BigInt(l)), [split.labels.length]),
    maxLength: b.dims[1],
  };
}

async function runExport(flags: ExportFlags): Promise<void> {
  const ds = await loadDataset(flags.data);
  const C = ds.train.channels;
  for (const [split, file] of [[ds.train, ds.files.train], [ds.test, ds.files.test]] as const) {
    if (split.labels.length !== split.series.length) throw new DataFormatError(file, undefined, `${split.series.length} cases but ${split.labels.length} class labels (export-data needs labelled cases)`);
  }
  // The same statistics as `gqa train` (no --val-split): every training case.
  const stats = channelStats(ds.train.series, C);
  const train = splitFiles(standardize(ds.train.series, stats), ds.train, C);
  const test = splitFiles(standardize(ds.test.series, stats), ds.test, C);
  await mkdir(flags.out, { recursive: true });
  const meta: ExportMeta = {
    format: EXPORT_FORMAT,
    version: 1,
    dataset: ds.name,
    files: { train: ds.files.train, test: ds.files.test },
    channels: C,
    classLabels: ds.train.classLabels,
    standardize: stats,
    train: { cases: ds.train.series.length, maxLength: train.maxLength },
    test: { cases: ds.test.series.length, maxLength: test.maxLength },
  };
  const written: string[] = [];
  for (const [split, f] of [["train", train], ["test", test]] as const) {
    for (const k of ["x", "lengths", "labels"] as const) {
      const path = join(flags.out, `${split}_${k}.npy`);
      await writeFile(path, f[k]);
      written.push(path);
    }
  }
  await writeFile(join(flags.out, "meta.json"), JSON.stringify(meta, null, 2) + "\n");
  status(`data: ${ds.name}: ${meta.train.cases} train / ${meta.test.cases} test cases, ${C} channels, ${meta.classLabels.length} classes, T <= ${meta.train.maxLength} / ${meta.test.maxLength}`);
  process.stdout.write(`wrote ${written.length + 1} files to ${flags.out}: ${[...written.map((p) => p.slice(flags.out.length).replace(/^[\\/]/, "")), "meta.json"].join(", ")}\n`);
}
