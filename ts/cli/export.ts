/**
 * `gqa export --model <file> --onnx <out>`: a model file (from `gqa train` or `model.saveFile`) as
 * an ONNX graph for ONNX Runtime (`Model.exportOnnx`, `gqa_core::onnx::export`).
 */
import { writeFile } from "node:fs/promises";
import type { Command } from "commander";
import { readFileOrThrow } from "../data/errors.js";
import { GqaError } from "../errors.js";
import { GQA } from "../index.js";
import { addBackendOption, fmtBytes, intArg, startBackend, status, type ModelFlags } from "./common.js";
import { CLI_METADATA_KEY, cliTransform, ENSEMBLE_METADATA_KEY, readCliMetadata, readMetadata, unpackEnsemble } from "../model-file.js";
import type { OnnxExportOptions } from "../model.js";

interface ExportFlags {
  model: string;
  onnx: string;
  /** `--no-transform` sets it false: the graph then starts at the model's tokens. */
  transform: boolean;
  /** `--member j`: member `j` of an ensemble file. */
  member?: number;
  backend: ModelFlags["backend"];
}

/** Registers `gqa export` on `program`. */
export function registerExport(program: Command): void {
  const cmd = program
    .command("export")
    .summary("export a model file as ONNX (for ONNX Runtime)")
    .description(
      [
        "Write the model in --model (safetensors from `gqa train` or `model.saveFile`) and its head as",
        "one ONNX file (opset 17, standard operators, weights inlined). Graph inputs: `input` float32",
        "[batch, seq, channels] and `lengths` int64 [batch] (valid positions per row; pass seq when",
        "unpadded); outputs: `output` and, with a classification head, `probabilities` (a regression",
        "head: `values`). For a `gqa train` model file the graph starts with the file's input",
        "transform (per-channel standardisation, instance normalisation and patching when the model",
        "has them), so `input` is the raw series [batch, steps, channels] and `lengths` its raw steps;",
        "--no-transform leaves it out (inputs are then the model's tokens). An ensemble file (several",
        "members, e.g. from gqa train --recipe auto or --ensemble) needs --member j: one member per",
        "ONNX file (the ensemble's output is the mean of its members' outputs).",
      ].join(" "),
    )
    .requiredOption("--model <file>", "model.safetensors to export")
    .requiredOption("--onnx <file>", "the ONNX file to write")
    .option("--member <j>", "export member j (from 0) of an ensemble file", intArg(0))
    .option("--no-transform", "a gqa train model: leave its input transform out of the graph (inputs: the model's tokens)");
  addBackendOption(cmd);
  cmd.action(async (flags: ExportFlags) => {
    await runExport(flags);
  });
}

async function runExport(flags: ExportFlags): Promise<void> {
  await startBackend(flags);
  const bytes = new Uint8Array(await readFileOrThrow(flags.model));
  const members = readMetadata(bytes, flags.model)[ENSEMBLE_METADATA_KEY];
  if (members !== undefined && members !== "1" && flags.member === undefined) {
    throw new GqaError("INVALID_OPTION", `invalid option \`model\`: expected a single model, found an ensemble of ${members} members (export each member on its own: --member 0..${Number(members) - 1})`);
  }
  const all = unpackEnsemble(bytes, flags.model);
  const j = flags.member ?? 0;
  if (j >= all.length) throw new GqaError("INVALID_OPTION", `invalid option \`member\`: expected 0..${all.length - 1} (the file's members), found ${j}`, { fields: { option: "member", expected: `0..${all.length - 1}`, found: String(j) } });
  const inputTransform = exportTransform(bytes, flags.model, flags.transform);
  const model = await GQA.load(all[j]!);
  try {
    const onnx = model.exportOnnx(inputTransform ? { inputTransform } : {});
    await writeFile(flags.onnx, onnx);
    const what = inputTransform ? `; input: raw series [batch, steps, ${inputTransform.mean.length}], the model file's transform (standardisation${inputTransform.instanceNorm ? ", instance normalisation" : ""}${inputTransform.patch! > 1 ? `, patches of ${inputTransform.patch}` : ""}) in the graph` : "";
    status(`wrote ${flags.onnx} (${fmtBytes(onnx.length)}, opset 17${what})`);
  } finally {
    model.dispose();
  }
}

/**
 * The `inputTransform` export option of a `gqa train` model file (its `gqa_cli` record: the
 * standardisation, instance normalisation and patch length of ts/data/transform.ts); `undefined`
 * for a file without the record (from `model.saveFile`) or with `--no-transform`.
 */
function exportTransform(bytes: Uint8Array, file: string, withTransform: boolean): OnnxExportOptions["inputTransform"] {
  if (!withTransform || readMetadata(bytes, file)[CLI_METADATA_KEY] === undefined) return undefined;
  const t = cliTransform(readCliMetadata(bytes, file));
  return { mean: t.standardize.mean, std: t.standardize.std, instanceNorm: t.instanceNorm, patch: t.patch };
}
