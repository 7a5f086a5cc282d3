#!/usr/bin/env node
/**
 * The `gqa` command (package.json `bin`): `gqa info | train | eval | predict | export | export-data`.
 *
 * Exit codes: 0 success; 2 bad input (malformed or missing file, invalid option, usage error), with
 * `error: <file>:<line>: <problem>` for malformed data; 1 any other failure.
 */
import { readFileSync } from "node:fs";

// Compute threads: --threads, else env GQA_THREADS, else every available core (GQA.init's
// default). RAYON_NUM_THREADS, read by candle inside the native backend, follows GQA_THREADS when
// only that is set; set here, before any backend is loaded.
if (process.env.GQA_THREADS !== undefined) process.env.RAYON_NUM_THREADS ??= process.env.GQA_THREADS;
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

/** Whether commander has written an error of its own to stderr (it does for parse errors). */
let commanderSpoke = false;

/** Builds the command tree. */
function buildProgram(): Command {
  const program = new Command("gqa")
    .configureOutput({
      writeErr: (s) => {
        commanderSpoke = true;
        process.stderr.write(s);
      },
    })
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
    if (e instanceof CommanderError) {
      // Commander prints the errors it finds while parsing; an InvalidArgumentError thrown by a
      // command's own checks (flags that only conflict once the data is read) is printed here.
      if (e.exitCode !== 0 && !commanderSpoke) process.stderr.write(`error: ${e.message}\n`);
      return e.exitCode === 0 ? 0 : EXIT_BAD_INPUT;
    }
    const { message, exitCode } = describeError(e);
    process.stderr.write(message + "\n");
    if (process.env.GQA_DEBUG && e instanceof Error && e.stack) process.stderr.write(e.stack + "\n");
    return exitCode;
  }
}

process.exitCode = await main(process.argv);
