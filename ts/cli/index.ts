#!/usr/bin/env node
/**
 * The `gqa` command (package.json `bin`): `gqa info | train | eval | predict | export | export-data`.
 *
 * Exit codes: 0 success; 2 bad input (malformed or missing file, invalid option, usage error), with
 * `error: <file>:<line>: <problem>` for malformed data; 1 any other failure.
 */
import { readFileSync } from "node:fs";

// One compute thread unless the user says otherwise (GQA_THREADS sizes the native backend's own
// thread pool; RAYON_NUM_THREADS, read by candle inside it, follows). The CLI's models are small:
// on 2 shared cores one thread trained JapaneseVowels 2.7x faster (wall) and with 6x less CPU
// time than two threads. Set here, before any backend is loaded.
process.env.GQA_THREADS ??= process.env.RAYON_NUM_THREADS ?? "1";
process.env.RAYON_NUM_THREADS ??= process.env.GQA_THREADS;
import { Command, CommanderError } from "commander";
import { describeError, EXIT_BAD_INPUT } from "./common.js";
import { registerEval } from "./eval.js";
import { registerExport } from "./export.js";
import { registerExportData } from "./export-data.js";
import { registerInfo } from "./info.js";
import { registerPredict } from "./predict.js";
import { registerTrain } from "./train.js";

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: string };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/** Builds the command tree. */
function buildProgram(): Command {
  const program = new Command("gqa")
    .description("Grouped-query-attention transformers for multichannel time series: inspect, train, evaluate, predict, export data for PyTorch.")
    .version(packageVersion(), "-V, --version", "print the gqa version")
    .helpOption("-h, --help", "show help for a command")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  registerInfo(program);
  registerTrain(program);
  registerEval(program);
  registerPredict(program);
  registerExport(program);
  registerExportData(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT_BAD_INPUT;
    const { message, exitCode } = describeError(e);
    process.stderr.write(message + "\n");
    if (process.env.GQA_DEBUG && e instanceof Error && e.stack) process.stderr.write(e.stack + "\n");
    return exitCode;
  }
}

process.exitCode = await main(process.argv);
