/**
 * `gqa export --model <file> --onnx <out>`: a model file (from `gqa train` or `model.saveFile`) as
 * an ONNX graph for ONNX Runtime (`Model.exportOnnx`, `gqa_core::onnx::export`).
 */
import { writeFile } from "node:fs/promises";
import type { Command } from "commander";
import { readFileOrThrow } from "../data/errors.js";
import { GqaError } from "../errors.js";
import { GQA } from "../index.js";
import { addBackendOption, fmtBytes, startBackend, status, type ModelFlags } from "./common.js";
import { ENSEMBLE_METADATA_KEY, readMetadata } from "../model-file.js";

interface ExportFlags {
  model: string;
  onnx: string;
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
        "head: `values`). A `gqa train` model expects its inputs standardised per channel as",
        "(x - mean) / std with the statistics in the file's `gqa_cli` metadata (not part of the graph).",
        "Ensembles (several members in one file) are refused.",
      ].join(" "),
    )
    .requiredOption("--model <file>", "model.safetensors to export")
    .requiredOption("--onnx <file>", "the ONNX file to write");
  addBackendOption(cmd);
  cmd.action(async (flags: ExportFlags) => {
    await runExport(flags);
  });
}

async function runExport(flags: ExportFlags): Promise<void> {
  await startBackend(flags);
  const bytes = new Uint8Array(await readFileOrThrow(flags.model));
  const members = readMetadata(bytes, flags.model)[ENSEMBLE_METADATA_KEY];
  if (members !== undefined && members !== "1") {
    throw new GqaError("INVALID_OPTION", `invalid option \`model\`: expected a single model, found an ensemble of ${members} members (export each member on its own)`);
  }
  const model = await GQA.load(bytes);
  try {
    const onnx = model.exportOnnx();
    await writeFile(flags.onnx, onnx);
    status(`wrote ${flags.onnx} (${fmtBytes(onnx.length)}, opset 17)`);
  } finally {
    model.dispose();
  }
}
