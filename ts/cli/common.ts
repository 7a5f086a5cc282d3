/**
 * Shared pieces of the `gqa` subcommands: option parsers, the model and backend flags, backend
 * start-up, and the mapping of errors to messages and exit codes.
 *
 * Exit codes: 0 success; 2 bad input (malformed or missing file, bad option value, usage error);
 * 1 any other failure (backend or internal error).
 */
import { InvalidArgumentError, Option, type Command } from "commander";
import { GQA, GqaError, type GqaOptions } from "../index.js";
import { DataFormatError, DataNotFoundError } from "../data/errors.js";
import { INPUT_ERROR_CODES } from "../errors.js";
import { DEPRECATED_OPTION_NAMES, OPTION_DEFAULTS, OPTION_DESCRIPTIONS, OPTION_KEYS, type OptionKey } from "../generated/options.js";

/** Exit code for bad input: malformed/missing files, invalid options, usage errors. */
export const EXIT_BAD_INPUT = 2;
/** Exit code for any other failure. */
export const EXIT_FAILURE = 1;

/** Commander parser for an integer `>= min`. */
export function intArg(min: number): (v: string) => number {
  return (v: string) => {
    if (!/^[+-]?\d+$/.test(v.trim())) throw new InvalidArgumentError(`expected an integer, found '${v}'`);
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}, found ${v}`);
    return n;
  };
}

/** Commander parser for a finite number in `[min, max)` (or `[min, max]` when `inclusiveMax`). */
export function numArg(min: number, max = Infinity, inclusiveMax = false): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, found '${v}'`);
    if (n < min || (inclusiveMax ? n > max : n >= max)) {
      throw new InvalidArgumentError(`expected a number in [${min}, ${max}${inclusiveMax ? "]" : ")"}, found ${v}`);
    }
    return n;
  };
}

/** Commander parser for a JSON object (`--rope-scaling`); the core validates its fields. */
export function jsonArg(v: string): Record<string, unknown> {
  let x: unknown;
  try {
    x = JSON.parse(v);
  } catch (e) {
    throw new InvalidArgumentError(`expected a JSON object, found '${v}' (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof x !== "object" || x === null || Array.isArray(x)) throw new InvalidArgumentError(`expected a JSON object, found '${v}'`);
  return x as Record<string, unknown>;
}

/**
 * Adds `--backend auto|native|wasm` (default: env `GQA_BACKEND`, else `auto`) and `--threads <n>`
 * (default: env `GQA_THREADS`, else every available core, as `GQA.init`).
 */
export function addBackendOption(cmd: Command): Command {
  return cmd
    .addOption(
      new Option("--backend <backend>", "compute backend: native (napi addon), wasm (WebAssembly), cuda (the CUDA addon, npm run build:cuda), or auto (native, else wasm); default: env GQA_BACKEND, else auto")
        .choices(["auto", "native", "wasm", "cuda"]),
    )
    .option("--threads <n>", "compute threads (results are bitwise the same for any count); default: env GQA_THREADS, else all available cores", intArg(1));
}

/** Defaults shown in the model flags' help (and applied by the command that passes them). */
export type ModelDefaults = Pick<Required<GqaOptions>, "hiddenSize" | "numHeads" | "numKvHeads" | "numLayers" | "dropout" | "rope">;

/**
 * The core's defaults (SPEC section 1, `gqa_core::GqaConfig`), used by `gqa info` and in the flags'
 * help: generated from the core's serde defaults (ts/generated/options.ts), not restated here.
 * test/schema.test.ts also checks every value against the defaults the core fills in (`model.config`).
 */
export const CORE_DEFAULTS = OPTION_DEFAULTS satisfies ModelDefaults & Required<Omit<GqaOptions, "embedDim" | "headDim" | "ropeScaling" | "slidingWindow" | keyof typeof DEPRECATED_OPTION_NAMES>>;

/**
 * The help text of the flag of model option `key`, from the option's doc comment in the core
 * (`OPTION_DESCRIPTIONS`): its first sentence without Markdown, Edifice name or default, starting
 * in lower case (unless it starts with an acronym), then `extra` (CLI-specific wording), then
 * `; default <value>` (from `defaults` when it has `key`, else the core's default; none for
 * switches or options without a default).
 */
export function optionHelp(key: OptionKey, extra = "", defaults: Partial<Record<OptionKey, unknown>> = {}): string {
  const first = OPTION_DESCRIPTIONS[key].replace(/\s+/g, " ").split(/\.(?:\s|$)/)[0]!;
  const value = key in defaults ? defaults[key] : (OPTION_DEFAULTS as Partial<Record<OptionKey, unknown>>)[key];
  const text = first
    .replace(/`/g, "")
    .replace(/ \(:\w+\)/g, "")
    .replace(value === undefined ? /$^/ : /[,;]? default [^,;]+/g, "")
    .replace(/^[A-Z](?=[a-z])/, (c) => c.toLowerCase());
  return `${text}${extra}${value === undefined || typeof value === "boolean" ? "" : `; default ${value}`}`;
}

/**
 * Adds the model-architecture flags shared by `info` and `train`. Values not given are left to
 * `defaults` (the core's defaults, {@link CORE_DEFAULTS}, unless the command bakes in others, as
 * `train` does). Each flag's help is the option's doc comment in the core ({@link optionHelp}). When
 * `defaults.rope` is true, `--no-rope` turns rotary embeddings off. `training`: the command trains
 * (the seed then also drives dropout and the batch order).
 */
export function addModelOptions(cmd: Command, defaults: ModelDefaults = CORE_DEFAULTS, training = false): Command {
  cmd
    .option("--hidden-size <n>", optionHelp("hiddenSize", "", defaults), intArg(1))
    .option("--num-heads <n>", optionHelp("numHeads", "", defaults), intArg(1))
    .option("--head-dim <n>", optionHelp("headDim"), intArg(1))
    .option("--num-kv-heads <n>", optionHelp("numKvHeads", "", defaults), intArg(1))
    .option("--num-layers <n>", optionHelp("numLayers", "", defaults), intArg(1))
    .option("--dropout <p>", optionHelp("dropout", "", defaults), numArg(0, 1))
    .option("--rope", optionHelp("rope", defaults.rope ? "; on by default" : ""));
  if (defaults.rope) cmd.option("--no-rope", "no rotary position embedding");
  return cmd
    .option("--rope-theta <x>", optionHelp("ropeTheta"), numArg(Number.MIN_VALUE))
    .option("--rope-scaling <json>", optionHelp("ropeScaling", '; as JSON, e.g. \'{"type":"yarn","factor":4,"originalMaxPositionEmbeddings":2048}\''), jsonArg)
    .option("--yarn", optionHelp("yarn"))
    .option("--yarn-scale <s>", optionHelp("yarnScale"), numArg(Number.MIN_VALUE))
    .option("--sliding-window <n>", optionHelp("slidingWindow"), intArg(1))
    .option("--seq-len-hint <n>", optionHelp("seqLenHint"), intArg(1))
    // Deprecated spelling of --seq-len-hint (the option's former name, windowSize): still read, not shown.
    .addOption(new Option("--window-size <n>").argParser(intArg(1)).hideHelp())
    .addOption(
      new Option("--output-mode <mode>", optionHelp("outputMode", ": last_timestep or mean_pool (all is for the API only)"))
        .choices(["last_timestep", "mean_pool"]),
    )
    .option("--seed <n>", optionHelp("seed", training ? ", dropout and batch order" : ""), intArg(0));
}

/**
 * The raw commander values of {@link addModelOptions}: the model options the CLI exposes (typed by
 * `GqaOptions`; `embedDim` comes from the data or `--embed-dim`), plus the backend.
 */
export type ModelFlags = Omit<Partial<GqaOptions>, "embedDim" | "outputMode"> & {
  /** A head needs `[B, H]`, so the CLI offers only these two modes. */
  outputMode?: "last_timestep" | "mean_pool";
  backend?: "auto" | "native" | "wasm" | "cuda";
  /** `--threads`: compute threads; undefined = `GQA.init`'s default (env `GQA_THREADS`, else all cores). */
  threads?: number;
};

/**
 * Turns the flags into `GqaOptions`: the given ones (every model option of the core,
 * `OPTION_KEYS`, that has a value among the flags), else `defaults` when a command bakes some in,
 * else nothing (the core fills in its defaults).
 */
export function modelOptions(flags: ModelFlags, embedDim: number, defaults?: ModelDefaults): GqaOptions {
  const o: GqaOptions = { embedDim, ...defaults };
  const given = flags as Record<string, unknown>;
  for (const k of OPTION_KEYS) {
    if (k !== "embedDim" && given[k] !== undefined) (o as unknown as Record<string, unknown>)[k] = given[k];
  }
  // A deprecated flag (--window-size) sets its option's current name unless that flag is given too.
  for (const [old, now] of Object.entries(DEPRECATED_OPTION_NAMES)) {
    if (given[old] === undefined) continue;
    status(`warning: ${flagOf(old)} is deprecated: use ${flagOf(now)} (same meaning)`);
    if (given[now] === undefined) (o as unknown as Record<string, unknown>)[now] = given[old];
  }
  return o;
}

/** Where progress and status lines go (stderr, so that stdout stays machine-readable). */
export function status(line: string): void {
  process.stderr.write(line + "\n");
}

/**
 * Starts the requested backend with `threads` compute threads (undefined: `GQA.init`'s default,
 * env `GQA_THREADS`, else all available cores) and prints `backend: <name> (<file>), <n>
 * thread(s)` to stderr. `--threads` also sets `RAYON_NUM_THREADS`, so candle's own pool inside the
 * native backend follows it.
 * @returns the backend that runs.
 */
export async function startBackend(flags: Pick<ModelFlags, "backend" | "threads">): Promise<string> {
  if (flags.threads !== undefined) process.env.RAYON_NUM_THREADS = String(flags.threads);
  const name = await GQA.init({ ...(flags.backend !== undefined && { backend: flags.backend }), ...(flags.threads !== undefined && { threads: flags.threads }) });
  const n = GQA.threads;
  status(`backend: ${name}${GQA.backendFile ? ` (${GQA.backendFile})` : ""}${n === null ? "" : `, ${n} thread${n === 1 ? "" : "s"}`}`);
  return name;
}

/**
 * API options the CLI sets from a flag of the same name in kebab case (`numKvHeads` <-
 * `--num-kv-heads`): every model option (generated from the core's `GqaConfig`), plus the fit
 * options the CLI exposes.
 */
const FLAG_OPTIONS = new Set<string>([...OPTION_KEYS, ...Object.keys(DEPRECATED_OPTION_NAMES), "epochs", "batchSize", "lr", "weightDecay", "huberDelta", "labelSmoothing"]);

/** `numKvHeads` -> `--num-kv-heads`. */
function flagOf(option: string): string {
  return "--" + option.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/**
 * An option error from the core in the CLI's terms: each option the CLI sets from a flag, quoted
 * (`` `numKvHeads` ``) or as `name=value`, is named by its flag (`` `--num-kv-heads` ``,
 * `--num-heads=8`).
 */
export function withFlagNames(message: string): string {
  return message
    .replace(/`(\w+)`/g, (m, n: string) => (FLAG_OPTIONS.has(n) ? `\`${flagOf(n)}\`` : m))
    .replace(/\b(\w+)=/g, (m, n: string) => (FLAG_OPTIONS.has(n) ? `${flagOf(n)}=` : m));
}

/**
 * Formats an error for the terminal and picks the exit code:
 * `error: <file>:<line>: <problem>` for malformed data (exit 2), `error: <file>: <problem>` for a
 * missing file (exit 2), `error: <CODE>: <message>` for gqa errors (exit 2 for input/option
 * codes, 1 otherwise).
 */
export function describeError(e: unknown): { message: string; exitCode: number } {
  if (e instanceof DataFormatError) return { message: `error: ${e.message}`, exitCode: EXIT_BAD_INPUT };
  if (e instanceof DataNotFoundError) return { message: `error: ${e.message}`, exitCode: EXIT_BAD_INPUT };
  if (e instanceof GqaError) {
    const text = e.code === "INVALID_OPTION" ? withFlagNames(e.message) : e.message;
    return { message: `error: ${e.code}: ${text}`, exitCode: INPUT_ERROR_CODES.has(e.code) ? EXIT_BAD_INPUT : EXIT_FAILURE };
  }
  if (e instanceof Error) return { message: `error: ${e.message}`, exitCode: EXIT_FAILURE };
  return { message: `error: ${String(e)}`, exitCode: EXIT_FAILURE };
}

/** Formats a number with thousands separators (`1,234,567`). */
export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Formats a byte count as `N B (x KiB/MiB)`. */
export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${fmtInt(n)} B (${(n / 1024).toFixed(1)} KiB)`;
  return `${fmtInt(n)} B (${(n / 1024 / 1024).toFixed(1)} MiB)`;
}
