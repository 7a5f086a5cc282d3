/**
 * Resolving dataset names and paths to train/test `.ts` files, and loading both splits (Node only).
 *
 * Shipped datasets (see `data/README.md` for sources and terms): `japanese-vowels` and
 * `basic-motions`. Names are matched case-insensitively, ignoring `-`, `_` and spaces, so
 * `JapaneseVowels`, `japanese_vowels` and `japanese-vowels` all work.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DataFormatError, DataNotFoundError } from "./errors.js";
import { readUea, type UeaDataset } from "./uea.js";

/** The shipped datasets: canonical CLI name -> directory and file stem under `data/`. */
export const SHIPPED_DATASETS: Readonly<Record<string, { dir: string; stem: string }>> = {
  "japanese-vowels": { dir: "JapaneseVowels", stem: "JapaneseVowels" },
  "basic-motions": { dir: "BasicMotions", stem: "BasicMotions" },
};

/** Train and test file paths of one dataset. */
export interface DatasetFiles {
  /** Display name (canonical name for shipped datasets, else the file stem). */
  name: string;
  /** Path of the `*_TRAIN.ts` file. */
  train: string;
  /** Path of the `*_TEST.ts` file. */
  test: string;
}

const normalise = (s: string) => s.toLowerCase().replace(/[-_\s]/g, "");

/**
 * The package root: the nearest ancestor of this module's directory that contains
 * `data/JapaneseVowels` (works from `ts/data/` in the source tree and from `dist/data/` when built).
 *
 * @throws {DataNotFoundError} when no ancestor has the shipped data.
 */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "data", "JapaneseVowels"))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new DataNotFoundError("data/", "shipped datasets not found above " + dirname(fileURLToPath(import.meta.url)));
    dir = up;
  }
}

/**
 * Resolves a dataset name or path to its train/test files.
 *
 * Accepted forms, in order:
 * 1. a shipped name (`japanese-vowels`, `JapaneseVowels`, `basic-motions`, ...);
 * 2. a directory holding exactly one `*_TRAIN.ts` and one `*_TEST.ts`;
 * 3. a path prefix `P` with `P_TRAIN.ts` and `P_TEST.ts` (e.g. `data/BasicMotions/BasicMotions`);
 * 4. one of the two files (`..._TRAIN.ts` or `..._TEST.ts`), the other found beside it.
 *
 * @throws {DataNotFoundError} naming what was looked for.
 */
export function resolveDataset(spec: string): DatasetFiles {
  const key = normalise(spec);
  for (const [name, d] of Object.entries(SHIPPED_DATASETS)) {
    if (normalise(name) === key) {
      const base = join(packageRoot(), "data", d.dir, d.stem);
      return { name, train: `${base}_TRAIN.ts`, test: `${base}_TEST.ts` };
    }
  }
  const p = resolve(spec);
  if (existsSync(p) && statSync(p).isDirectory()) {
    const files = readdirSync(p);
    const tr = files.filter((f) => /_TRAIN\.ts$/i.test(f));
    const te = files.filter((f) => /_TEST\.ts$/i.test(f));
    if (tr.length !== 1 || te.length !== 1) {
      throw new DataNotFoundError(spec, `expected one *_TRAIN.ts and one *_TEST.ts in the directory, found ${tr.length} and ${te.length}`);
    }
    return { name: tr[0]!.replace(/_TRAIN\.ts$/i, ""), train: join(p, tr[0]!), test: join(p, te[0]!) };
  }
  const m = /^(.*)_(TRAIN|TEST)\.ts$/i.exec(p);
  const base = m ? m[1]! : p;
  const train = `${base}_TRAIN.ts`;
  const test = `${base}_TEST.ts`;
  if (existsSync(train) && existsSync(test)) {
    return { name: base.replace(/^.*[\\/]/, ""), train, test };
  }
  const known = Object.keys(SHIPPED_DATASETS).join(", ");
  if (!existsSync(train) && !existsSync(test)) {
    throw new DataNotFoundError(spec, `not a shipped dataset (${known}), a directory, or a path prefix with _TRAIN.ts/_TEST.ts files`);
  }
  throw new DataNotFoundError(existsSync(train) ? test : train, "no such file (the other split exists)");
}

/** Both splits of a dataset, with the same channels and class labels. */
export interface LoadedDataset {
  name: string;
  files: DatasetFiles;
  train: UeaDataset;
  test: UeaDataset;
}

/**
 * Resolves and parses both splits, and checks that they agree.
 *
 * @throws {DataNotFoundError} see {@link resolveDataset}.
 * @throws {DataFormatError} for a malformed file, or a test split whose channels or class labels
 *   differ from the training split's (reported at line 1 of the test file).
 */
export async function loadDataset(spec: string): Promise<LoadedDataset> {
  const files = resolveDataset(spec);
  const [train, test] = await Promise.all([readUea(files.train), readUea(files.test)]);
  if (train.channels !== test.channels) {
    throw new DataFormatError(files.test, 1, `test split has ${test.channels} channels, training split has ${train.channels}`);
  }
  if (train.classLabels.join("\u0000") !== test.classLabels.join("\u0000")) {
    throw new DataFormatError(
      files.test,
      1,
      `test @classLabel (${test.classLabels.join(" ")}) differs from training @classLabel (${train.classLabels.join(" ")})`,
    );
  }
  return { name: files.name, files, train, test };
}
