/**
 * `gqa info`: the architecture summary of a model configuration, without building it: from the
 * model flags, or from the `gqa_config` metadata of a saved model file (`--model`).
 */
import type { Command } from "commander";
import { GQA, type GqaOptions } from "../index.js";
import { readFileOrThrow } from "../data/errors.js";
import { currentOptionNames } from "../gqa.js";
import { readModelSummary } from "../model-file.js";
import { derived, exactParamCount, flopsPerToken, kvBytesPerToken, withCounts, type ResolvedArch } from "./arch.js";
import { addBackendOption, addModelOptions, CORE_DEFAULTS, fmtBytes, fmtInt, intArg, modelOptions, startBackend, type ModelFlags } from "./common.js";

interface InfoFlags extends ModelFlags {
  embedDim?: number;
  model?: string;
  seqLen?: number;
  json?: boolean;
}

/** Registers `gqa info` on `program`. */
export function registerInfo(program: Command): void {
  const cmd = program
    .command("info")
    .summary("print the architecture summary of a model configuration")
    .description(
      [
        "Print the architecture of a GQA model configuration without building it: parameter tensors",
        "and their shapes per layer, the parameter counts (Edifice's approximate formula and the exact",
        "count), forward FLOPs per token, and KV-cache bytes per token for this model and for its",
        "MHA (num-kv-heads = num-heads) and MQA (num-kv-heads = 1) twins.",
        "\n\n",
        "FLOPs/token = 2 * N_matmul + num_layers * 4 * T * num_heads * head_dim, where N_matmul counts the",
        "weights of all matrix products (input projection, q/k/v/out projections, FFN up/down) and",
        "T = --seq-len; the second term is q k^T and softmax(s) v over all T keys (a causal mask",
        "halves it on average). KV bytes/token = 2 * num_layers * num_kv_heads * head_dim * 4 (F32).",
      ].join(" ").replace(/ ?\n ?/g, "\n"),
    )
    .option("--embed-dim <n>", "input features per time step E (required unless --model gives it)", intArg(1))
    .option("--model <file>", "read the configuration from a saved model file (its gqa_config metadata, as written by gqa train or model.save); model flags given as well override it")
    .option("--seq-len <n>", `sequence length T for the attention FLOPs; default: the sequence-length hint (--seq-len-hint, ${CORE_DEFAULTS.seqLenHint})`, intArg(1))
    .option("--json", "print the summary as JSON instead of text");
  addModelOptions(cmd);
  addBackendOption(cmd);
  cmd.action(async (flags: InfoFlags) => {
    if (flags.embedDim === undefined && flags.model === undefined) {
      cmd.error("error: required option '--embed-dim <n>' (or '--model <file>') not specified", { exitCode: 2 });
    }
    await runInfo(flags);
  });
}

/** `gqa info`: prints the architecture summary, as text or (`--json`) as JSON, on stdout. */
async function runInfo(flags: InfoFlags): Promise<void> {
  const info = await resolveInfo(flags);
  process.stdout.write(flags.json ? infoJson(flags, info) : infoText(flags, info));
}

/** What `gqa info` reports: the resolved architecture and the counts derived from it. */
interface ArchInfo {
  backend: string;
  /** The `--model` file's summary (members, head), when given. */
  file?: ReturnType<typeof readModelSummary>;
  /** The file's options overridden by the flags given. */
  opts: GqaOptions;
  defaults: ReturnType<typeof GQA.recommendedDefaults>;
  a: ResolvedArch;
  d: ReturnType<typeof derived>;
  /** `T` of the attention FLOPs: `--seq-len`, else the sequence-length hint. */
  seqLen: number;
  /** Parameter counts: Edifice's approximate formula, the core's exact count, the table's sum. */
  approx: number;
  exact: number;
  tableExact: number;
  rows: ReturnType<typeof withCounts>;
  flops: ReturnType<typeof flopsPerToken>;
  /** KV-cache bytes per token: this model, the core's figure, its MHA and MQA twins. */
  kv: { model: number; core: number; mha: number; mqa: number };
  /** `rope`, `yarn (Edifice)`, `<type> (Hugging Face)` or `none`, with a non-default theta. */
  rotary: string;
  outputMode: string;
}

/**
 * Reads `--model` (when given), starts the backend and resolves the architecture: the file's
 * options, then the flags given; the core's defaults for the rest.
 * @throws GqaError `INVALID_OPTION` from `GQA.validate`; DataNotFoundError / DataFormatError for the model file.
 */
async function resolveInfo(flags: InfoFlags): Promise<ArchInfo> {
  const file = flags.model === undefined ? undefined : readModelSummary(new Uint8Array(await readFileOrThrow(flags.model)), flags.model);
  // A file may carry an option under its former name (windowSize): read it as the current one.
  const fileOptions = currentOptionNames(file?.options, false) as GqaOptions | undefined;
  const backend = await startBackend(flags);
  const embedDim = flags.embedDim ?? fileOptions!.embedDim;
  // The file's options, then the flags given on the command line (modelOptions sets only those).
  const opts: GqaOptions = { ...fileOptions, ...modelOptions(flags, embedDim) };
  GQA.validate(opts);
  const defaults = GQA.recommendedDefaults();
  const a: ResolvedArch = {
    embedDim,
    hiddenSize: opts.hiddenSize ?? defaults.hiddenSize,
    numHeads: opts.numHeads ?? defaults.numHeads,
    numKvHeads: opts.numKvHeads ?? defaults.numKvHeads,
    numLayers: opts.numLayers ?? defaults.numLayers,
    ...(opts.headDim !== undefined && { headDim: opts.headDim }),
  };
  const seqLen = flags.seqLen ?? opts.seqLenHint ?? defaults.seqLenHint;
  const d = derived(a);
  const approx = GQA.paramCount(opts);
  const exact = GQA.paramCount(opts, { exact: true });
  const rows = withCounts(GQA.parameterLayout(opts));
  const tableExact = exactParamCount(rows);
  const flops = flopsPerToken(a, rows, seqLen);
  const kv = {
    model: kvBytesPerToken(a),
    core: GQA.kvCacheBytesPerToken(opts),
    mha: kvBytesPerToken(a, a.numHeads),
    mqa: kvBytesPerToken(a, 1),
  };
  const theta = opts.ropeTheta !== undefined && opts.ropeTheta !== CORE_DEFAULTS.ropeTheta ? `, theta ${opts.ropeTheta}` : "";
  const rotary = (opts.yarn ? "yarn (Edifice)" : opts.ropeScaling ? `${opts.ropeScaling.type} (Hugging Face)` : opts.rope ? "rope" : "none") + (opts.yarn || opts.ropeScaling || opts.rope ? theta : "");
  const outputMode = opts.outputMode ?? CORE_DEFAULTS.outputMode;
  return { backend, ...(file && { file }), opts, defaults, a, d, seqLen, approx, exact, tableExact, rows, flops, kv, rotary, outputMode };
}

/** The `--json` summary: backend, file, config, parameter table and counts, FLOPs and KV bytes per token. */
function infoJson(flags: InfoFlags, info: ArchInfo): string {
  const { backend, file, opts, defaults, a, d, seqLen, approx, exact, tableExact, rows, flops, kv, rotary, outputMode } = info;
  const summary = {
    backend,
    ...(file && { file: { path: flags.model, members: file.members, head: file.head } }),
    config: { ...a, ...d, dropout: opts.dropout ?? defaults.dropout, rotary, outputMode, seed: opts.seed ?? CORE_DEFAULTS.seed },
    params: rows.map(({ name, shape, count, init, axonName }) => ({ name, shape, count, init, axonName })),
    paramCount: { approximate: approx, exact, table: tableExact },
    flopsPerToken: { seqLen, ...flops },
    kvCacheBytesPerToken: kv,
  };
  return JSON.stringify(summary, null, 2) + "\n";
}

/** The text summary: the model line, the parameter table per layer, counts, FLOPs and KV bytes per token. */
function infoText(flags: InfoFlags, info: ArchInfo): string {
  const { file, opts, defaults, a, d, seqLen, approx, exact, tableExact, rows, flops, kv, rotary, outputMode } = info;
  const out: string[] = [];
  if (file) {
    const head = file.head as { type?: string; numClasses?: number; outDim?: number } | null;
    const headText = !head ? "no head" : head.type === "classification" ? `classification head, ${head.numClasses} classes` : `${head.type} head${head.outDim ? `, ${head.outDim} outputs` : ""}`;
    out.push(`model file: ${flags.model} (${file.members > 1 ? `ensemble of ${file.members} members of this architecture` : "one model"}; ${headText})`);
  }
  const row = (name: string, shape: number[] | string, count?: number) =>
    out.push(`  ${name.padEnd(34)} ${(Array.isArray(shape) ? `[${shape.join(", ")}]` : shape).padEnd(16)} ${count === undefined ? "" : fmtInt(count).padStart(12)}`);
  out.push(
    `GQA model: embed_dim ${a.embedDim}, hidden_size ${a.hiddenSize}, num_heads ${a.numHeads}, num_kv_heads ${a.numKvHeads} ` +
      `(group ${d.group}${a.numKvHeads === 1 ? ", MQA" : a.numKvHeads === a.numHeads ? ", MHA" : ""}), head_dim ${d.headDim}, ` +
      `num_layers ${a.numLayers}, ffn ${d.ffnDim}, rotary ${rotary}, dropout ${opts.dropout ?? defaults.dropout}, output ${outputMode}`,
  );
  out.push("");
  out.push(`  ${"layer / parameter".padEnd(34)} ${"shape".padEnd(16)} ${"params".padStart(12)}`);
  row("input", "[B, T, " + a.embedDim + "]");
  const ip = rows.filter((r) => r.name.startsWith("input_projection."));
  if (ip.length) for (const r of ip) row(r.name, r.shape, r.count);
  else row("input_projection", "identity (E = H)");
  const b0 = rows.filter((r) => r.name.startsWith("blocks.0."));
  const perBlock = b0.reduce((s, r) => s + r.count, 0);
  out.push(`  blocks.0 .. blocks.${a.numLayers - 1} (${a.numLayers} x ${fmtInt(perBlock)} params; shapes of each block:)`);
  for (const r of b0) row(r.name.replace(/^blocks\.0\./, "  "), r.shape, r.count);
  row("  attention (per block)", `Q [B, ${a.numHeads}, T, ${d.headDim}]`);
  row("", `K,V [B, ${a.numKvHeads}, T, ${d.headDim}]`);
  row("final_norm.weight / .bias", [a.hiddenSize], 2 * a.hiddenSize);
  row("output", outputMode === "last_timestep" || outputMode === "mean_pool" ? `[B, ${a.hiddenSize}]` : `[B, T, ${a.hiddenSize}]`);
  out.push("");
  out.push(`parameters (exact, core):                ${fmtInt(exact)}${exact === tableExact ? "" : `  (table above sums to ${fmtInt(tableExact)}: MISMATCH)`}`);
  out.push(`parameters (Edifice approximate formula: projection matrices only): ${fmtInt(approx)}`);
  out.push(
    `FLOPs per token (forward, T = ${seqLen}):  ${fmtInt(flops.total)}  = 2 * ${fmtInt(flops.matmul / 2)} matmul weights + ${a.numLayers} * 4 * ${seqLen} * ${d.qDim} attention`,
  );
  out.push(`KV cache per token (F32, 2 * layers * kv_heads * head_dim * 4):`);
  out.push(`  this model (${a.numKvHeads} KV heads):  ${fmtBytes(kv.model)}`);
  out.push(`  MHA twin (${a.numHeads} KV heads):   ${fmtBytes(kv.mha)}  (${(kv.mha / kv.model).toFixed(2)}x)`);
  out.push(`  MQA twin (1 KV head):     ${fmtBytes(kv.mqa)}  (${(kv.mqa / kv.model).toFixed(2)}x)`);
  if (kv.core !== kv.model) out.push(`  (core reports ${fmtInt(kv.core)} B: MISMATCH)`);
  return out.join("\n") + "\n";
}
