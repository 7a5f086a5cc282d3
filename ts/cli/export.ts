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
import { CLI_METADATA_KEY, ENSEMBLE_METADATA_KEY, readCliMetadata, readMetadata } from "../model-file.js";

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
        "Ensembles (several members in one file) and models trained with patching or instance",
        "normalisation (`gqa train --recipe auto` may choose them; their transform is not in the graph)",
        "are refused.",
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
  refuseTransform(bytes, flags.model);
  const model = await GQA.load(bytes);
  try {
    const onnx = model.exportOnnx();
    await writeFile(flags.onnx, onnx);
    status(`wrote ${flags.onnx} (${fmtBytes(onnx.length)}, opset 17)`);
  } finally {
    model.dispose();
  }
}

/**
 * Refuses a `gqa train` model whose inputs are patched or instance-normalised: the exported graph
 * starts at the model's tokens, so it would silently expect transformed inputs.
 * @throws {GqaError} `INVALID_OPTION` naming `transform`, expected none, found the recorded one.
 */
function refuseTransform(bytes: Uint8Array, file: string): void {
  if (readMetadata(bytes, file)[CLI_METADATA_KEY] === undefined) return;
  const t = readCliMetadata(bytes, file).transform;
  if (t && (t.patch > 1 || t.instanceNorm)) {
    const found = `patch ${t.patch}${t.instanceNorm ? ", instance normalisation" : ""}`;
    throw new GqaError("INVALID_OPTION", `invalid option \`transform\`: expected a model without patching or instance normalisation (ONNX export does not include the input transform), found ${found} in ${file}; train with --recipe fixed, or --recipe auto --patch 1 --no-instance-norm`, {
      fields: { option: "transform", expected: "patch 1, no instance normalisation", found },
    });
  }
}
