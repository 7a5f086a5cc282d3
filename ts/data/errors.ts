/**
 * Errors raised by the dataset and input readers in `ts/data/`.
 *
 * Every malformed input names the file, the 1-based line (for text formats) and the problem,
 * so that the CLI can print `error: <file>:<line>: <problem>` and exit with code 2.
 */

/**
 * A data file (UEA `.ts`, CSV, `.npy`) that does not follow its format.
 *
 * `message` is `"<file>:<line>: <problem>"` (or `"<file>: <problem>"` for binary files, where
 * `line` is `undefined`). `code` is always `"MALFORMED_FILE"`, the same code the core uses for
 * malformed safetensors files.
 */
export class DataFormatError extends Error {
  /** Stable error code, `"MALFORMED_FILE"`. */
  readonly code = "MALFORMED_FILE";
  /** The file name as given by the caller (or `"<input>"` when parsing a string). */
  readonly file: string;
  /** 1-based line number of the offending line; `undefined` for binary formats (`.npy`). */
  readonly line: number | undefined;
  /** The problem alone, without file and line, e.g. `"expected 12 channels, found 11"`. */
  readonly problem: string;

  constructor(file: string, line: number | undefined, problem: string) {
    super(line === undefined ? `${file}: ${problem}` : `${file}:${line}: ${problem}`);
    this.name = "DataFormatError";
    this.file = file;
    this.line = line;
    this.problem = problem;
  }
}

/**
 * A data file or dataset name that could not be found (missing file, unknown dataset name,
 * directory without `*_TRAIN.ts` / `*_TEST.ts`). `code` is `"NOT_FOUND"`.
 */
export class DataNotFoundError extends Error {
  /** Stable error code, `"NOT_FOUND"`. */
  readonly code = "NOT_FOUND";
  /** The path or name that was asked for. */
  readonly file: string;

  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = "DataNotFoundError";
    this.file = file;
  }
}

/**
 * Reads a whole file (Node), turning a missing file (ENOENT/ENOTDIR/EISDIR) into a
 * {@link DataNotFoundError}. Returns a plain Uint8Array view of the bytes (so the declared type
 * needs no Node typings, and `slice` copies as for any Uint8Array).
 */
export async function readFileOrThrow(path: string): Promise<Uint8Array> {
  const { readFile } = await import("node:fs/promises");
  try {
    const b = await readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new DataNotFoundError(path, "no such file");
    if (code === "EISDIR") throw new DataNotFoundError(path, "is a directory, expected a file");
    if (code === "EACCES") throw new DataNotFoundError(path, "permission denied");
    throw e;
  }
}

/** Reads a whole text file as UTF-8, with the errors of {@link readFileOrThrow}. */
export async function readTextOrThrow(path: string): Promise<string> {
  return new TextDecoder("utf-8", { ignoreBOM: true }).decode(await readFileOrThrow(path));
}
