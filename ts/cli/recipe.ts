/**
 * `gqa train --recipe auto`: picks the input transform and training settings by k-fold
 * cross-validation on the training split alone, within a time budget, and keeps the k fold models
 * of the winner as the final model (an ensemble whose outputs are averaged).
 *
 * Search: a greedy coordinate search. The base candidate is derived from the data's shape
 * ({@link baseCandidate}); each stage ({@link STAGES}) tries one change at a time from the best
 * candidate so far, and a change is kept only when it scores strictly better (accuracy up, or
 * RMSE down), so ties keep the earlier, simpler choice. A candidate whose estimated cost no longer
 * fits the budget is skipped (the base always runs; its epochs are lowered when one timed epoch
 * says it would take more than {@link BASE_SHARE} of the budget). The test split is not an input
 * here.
 *
 * Cross-validation: stratified folds for classification (each class's cases shuffled with the
 * seed and dealt round-robin), plain shuffled folds for regression. Per-channel standardisation
 * statistics (and regression target statistics) come from the whole training split, labels
 * unused for the inputs, so that the k fold models share one transform and can be saved as one
 * ensemble; the fold models score only the cases they did not train on.
 */
import { SingleBar } from "cli-progress";
import { augmentSeries } from "../data/augment.js";
import { padBatch } from "../data/batch.js";
import { xorshift32 } from "../data/random.js";
import type { ChannelStats } from "../data/standardize.js";
import { instanceNormalize, patchSeries, tokenCount, type TransformSpec } from "../data/transform.js";
import { standardize } from "../data/standardize.js";
import type { GqaOptions, HeadOptions } from "../index.js";
import { status } from "./common.js";
import { argmaxRows } from "./metrics.js";
import { buildTaskModel, probabilitiesForSeries, type StepReport, type TaskModel } from "./model-api.js";
import type { CurvePoint } from "./plot.js";

/** One point of the search: the transform and the training settings of one model. */
export interface Candidate extends TransformSpec {
  /** Short description of what differs from the base (`base` for the base). */
  name: string;
  outputMode: "last_timestep" | "mean_pool";
  hiddenSize: number;
  numLayers: number;
  epochs: number;
  batchSize: number;
  lr: number;
  /** Classification only (0 for regression). */
  labelSmoothing: number;
  /** Augmented copies per case (ts/data/augment.ts: scaling 0.1, jitter 0.05); 0: none. */
  augment: number;
}

/** What the search needs to know about the training split. */
export interface RecipeData {
  task: "classification" | "regression";
  /** Raw training cases, each `[T_i * C]`. */
  series: Float32Array[];
  channels: number;
  /** Class index per case, or target rows already standardised with {@link RecipeData.tstats}. */
  y: number[] | number[][];
  /** Classes `K`, or targets. */
  outputs: number;
  /** Per-channel statistics of the whole training split. */
  stats: ChannelStats;
  /** Regression: target statistics (RMSE is reported in the targets' units). */
  tstats?: { mean: number[]; std: number[] };
}

/** Settings of the search (flags of `gqa train`). */
export interface RecipeSettings {
  /** Seconds for the whole search (the base candidate always runs). */
  budget: number;
  folds: number;
  seed: number;
  /** Largest number of candidates tried (base included). */
  maxCandidates: number;
  /** Fixed epochs (`--epochs` given), else from the data's size. */
  epochs?: number;
  /** Model options other than the searched ones (heads, KV heads, dropout, rope, ...). */
  opts: GqaOptions;
  head: HeadOptions;
  weightDecay: number;
  progress: boolean;
}

/** One row of the table: a candidate and its cross-validated score. */
export interface CandidateResult {
  candidate: Candidate;
  /** `ran`, `chosen` (the final model), or `skipped: ...` (not trained). */
  status: string;
  /** Mean over folds of each fold's held-out accuracy (or RMSE in the targets' units). */
  score?: number;
  /** The per-fold scores. */
  foldScores?: number[];
  /** Out-of-fold score over all cases at once (accuracy, or RMSE). */
  oof?: number;
  seconds: number;
}

/** The search's result: the table, the chosen candidate and its k fold models. */
export interface RecipeResult {
  results: CandidateResult[];
  chosen: Candidate;
  /** The winner's fold models (disposed by whoever saves them). */
  models: TaskModel[];
  /** Per fold model of the winner: its training loss (and accuracy) per epoch. */
  curves: CurvePoint[][];
  /** Why the chosen one won, in words. */
  reason: string;
  folds: number[][];
  seconds: number;
  /** `accuracy` (higher is better) or `rmse` (lower is better). */
  metric: "accuracy" | "rmse";
}

/** Median of `xs` (not modified). */
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * Patch lengths to try for cases of median length `tMed` and longest `tMax` steps, in order: the
 * patch length giving about 64 tokens (PatchTST's 64 patches of a 512-step input), or 1 when the
 * series are too short for it; then 1 (no patching) when `tMax <= 256` (attention over single
 * steps is still affordable); then the length giving about 16 tokens. The first is the base's:
 * the cheaper one first, so that the base, which always runs, fits the budget.
 */
export function patchCandidates(tMed: number, tMax: number): number[] {
  const p64 = Math.round(tMed / 64);
  const out: number[] = [p64 >= 2 ? p64 : 1];
  if (tMax <= 256 && !out.includes(1)) out.push(1);
  const p16 = Math.round(tMed / 16);
  if (p16 >= 2 && !out.includes(p16)) out.push(p16);
  return out;
}

/**
 * The base candidate from the data's shape: the first of {@link patchCandidates}, no instance
 * normalisation, mean pooling, hidden 64 and 2 layers (`gqa train`'s defaults), batch
 * `clamp(round(N_fit / 8), 8, 32)`, and enough epochs for about 300 optimisation steps
 * (`clamp(ceil(300 / stepsPerEpoch), 30, 150)`) unless `epochs` is given; lr 3e-3; label
 * smoothing 0.1 for classification (the main job's CV: docs/training.md).
 */
export function baseCandidate(data: RecipeData, folds: number, epochs?: number): Candidate {
  const steps = data.series.map((s) => s.length / data.channels);
  const nFit = Math.round((data.series.length * (folds - 1)) / folds);
  const batchSize = Math.min(32, Math.max(8, Math.round(nFit / 8)));
  const perEpoch = Math.ceil(nFit / batchSize);
  return {
    name: "base",
    patch: patchCandidates(median(steps), Math.max(...steps))[0]!,
    instanceNorm: false,
    outputMode: "mean_pool",
    hiddenSize: 64,
    numLayers: 2,
    epochs: epochs ?? Math.min(150, Math.max(30, Math.ceil(300 / perEpoch))),
    batchSize,
    lr: 3e-3,
    labelSmoothing: data.task === "classification" ? 0.1 : 0,
    augment: 0,
  };
}

/** A stage of the search: the variants of the best candidate so far that it tries. */
type Stage = (best: Candidate, data: RecipeData) => Candidate[];

/** The search's stages, in order (each variant named by its change). */
export const STAGES: readonly Stage[] = [
  // Instance normalisation first: as cheap as the base, and the largest change on the
  // development suite (PLAID CV 0.27-0.29 -> 0.62-0.64, Tecator CV RMSE 9.9 -> 2.1-4.4).
  (b) => [{ ...b, name: b.instanceNorm ? "no instance norm" : "instance norm", instanceNorm: !b.instanceNorm }],
  (b, d) => {
    const steps = d.series.map((s) => s.length / d.channels);
    return patchCandidates(median(steps), Math.max(...steps)).filter((p) => p !== b.patch).map((p) => ({ ...b, name: `patch ${p}`, patch: p }));
  },
  (b) => [{ ...b, name: b.outputMode === "mean_pool" ? "last timestep" : "mean pool", outputMode: b.outputMode === "mean_pool" ? "last_timestep" : "mean_pool" }],
  (b, d) => (d.task === "classification" ? [{ ...b, name: b.labelSmoothing > 0 ? "no label smoothing" : "label smoothing 0.1", labelSmoothing: b.labelSmoothing > 0 ? 0 : 0.1 }] : []),
  (b) => [{ ...b, name: "hidden 128", hiddenSize: 128 }, { ...b, name: "hidden 32", hiddenSize: 32 }],
  (b) => [{ ...b, name: "1 layer", numLayers: 1 }, { ...b, name: "3 layers", numLayers: 3 }],
  (b) => [{ ...b, name: "lr 1e-3", lr: 1e-3 }],
  (b) => [{ ...b, name: "2x epochs", epochs: b.epochs * 2 }],
  (b) => [{ ...b, name: "augment x1", augment: 1 }],
];

/** A candidate's description for the table: every setting, compactly. */
export function describe(c: Candidate): string {
  return `P=${c.patch}${c.instanceNorm ? " inorm" : ""} ${c.outputMode === "mean_pool" ? "mean" : "last"} h${c.hiddenSize}x${c.numLayers} ep${c.epochs} b${c.batchSize} lr${c.lr}${c.labelSmoothing ? ` ls${c.labelSmoothing}` : ""}${c.augment ? ` aug${c.augment}` : ""}`;
}

/**
 * Fold assignment: `k` lists of indices (ascending). Classification: each class's cases in a
 * seeded shuffle dealt round-robin, continuing where the previous class stopped, so every fold
 * gets `floor` or `ceil` of each class's share. Regression (`labels` null): all cases shuffled.
 * @throws {RangeError} when `k < 2` or there are fewer cases than folds.
 */
export function kFolds(n: number, labels: readonly number[] | null, k: number, seed: number): number[][] {
  if (!Number.isInteger(k) || k < 2) throw new RangeError(`folds: expected an integer >= 2, found ${k}`);
  if (n < k) throw new RangeError(`folds: expected at most as many folds as training cases (${n}), found ${k}`);
  const rand = xorshift32(seed, 0x2545f491);
  const groups = labels ? [...new Set(labels)].sort((a, b) => a - b).map((c) => labels.flatMap((l, i) => (l === c ? [i] : []))) : [Array.from({ length: n }, (_, i) => i)];
  const folds: number[][] = Array.from({ length: k }, () => []);
  let next = 0;
  for (const idx of groups) {
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    for (const i of idx) folds[next++ % k]!.push(i);
  }
  return folds.map((f) => f.sort((a, b) => a - b));
}

/** Normalised (not yet patched) training cases for a candidate: standardised, then instance-normalised when asked. */
function normalised(data: RecipeData, instanceNorm: boolean, cache: Map<boolean, Float32Array[]>): Float32Array[] {
  let z = cache.get(instanceNorm);
  if (!z) {
    z = standardize(data.series, data.stats);
    if (instanceNorm) z = instanceNormalize(z, data.channels);
    cache.set(instanceNorm, z);
  }
  return z;
}

/** Relative cost of a candidate: tokens processed times a width/depth factor (for the budget estimate). */
function costOf(c: Candidate, data: RecipeData): number {
  const tokens = data.series.reduce((a, s) => a + tokenCount(s.length / data.channels, c.patch), 0);
  return c.epochs * tokens * (1 + c.augment) * (c.hiddenSize / 64) ** 1.5 * (c.numLayers / 2);
}

/** Score of fold predictions: accuracy, or RMSE in the targets' units. */
function scoreOf(data: RecipeData, idx: readonly number[], out: Float32Array): number {
  const K = data.outputs;
  if (data.task === "classification") {
    const pred = argmaxRows(out, K);
    return pred.reduce((a, p, i) => a + (p === (data.y as number[])[idx[i]!] ? 1 : 0), 0) / idx.length;
  }
  let se = 0;
  idx.forEach((i, r) => {
    for (let j = 0; j < K; j++) se += ((out[r * K + j]! - (data.y as number[][])[i]![j]!) * data.tstats!.std[j]!) ** 2;
  });
  return Math.sqrt(se / (idx.length * K));
}

/** An `onStep` callback that appends each epoch's mean training loss (and accuracy) to `curve`. */
function curveRecorder(curve: CurvePoint[], classification: boolean): (r: StepReport) => void {
  let loss = 0, correct = 0, count = 0;
  return (r) => {
    loss += r.loss * r.count;
    correct += r.correct;
    count += r.count;
    if (r.stepInEpoch !== r.stepsPerEpoch - 1) return;
    curve.push({ epoch: r.epoch + 1, trainLoss: loss / count, ...(classification && { trainAccuracy: correct / count }) });
    loss = correct = count = 0;
  };
}

/**
 * Trains one fold model of candidate `c` on `fitIdx` (seed `seed * k + fold`, as member `fold` of
 * `gqa train --ensemble k`) and returns it with its outputs on `valIdx` and its training curve.
 */
async function trainFold(c: Candidate, data: RecipeData, s: RecipeSettings, z: Float32Array[], fitIdx: number[], valIdx: number[], fold: number): Promise<{ model: TaskModel; out: Float32Array; curve: CurvePoint[] }> {
  const C = data.channels;
  const y = fitIdx.map((i) => data.y[i]!) as number[] | number[][];
  const aug = c.augment > 0 ? augmentSeries<number | number[]>(fitIdx.map((i) => z[i]!), y, C, { copies: c.augment, scale: 0.1, jitter: 0.05 }, s.seed * 101 + fold) : { series: fitIdx.map((i) => z[i]!), labels: y };
  const b = padBatch(patchSeries(aug.series, C, c.patch), C * c.patch);
  const opts: GqaOptions = { ...s.opts, embedDim: C * c.patch, hiddenSize: c.hiddenSize, numLayers: c.numLayers, outputMode: c.outputMode, seed: s.seed * s.folds + fold };
  const model = await buildTaskModel(opts, s.head);
  const curve: CurvePoint[] = [];
  try {
    await model.fit(
      { data: b.data, dims: b.dims, lengths: b.lengths, labels: aug.labels as number[] | number[][] },
      { epochs: c.epochs, batchSize: c.batchSize, lr: c.lr, weightDecay: s.weightDecay, seed: s.seed * s.folds + fold, onStep: curveRecorder(curve, data.task === "classification"), ...(c.labelSmoothing > 0 && { labelSmoothing: c.labelSmoothing }) },
    );
    const out = await probabilitiesForSeries(model, patchSeries(valIdx.map((i) => z[i]!), C, c.patch), C * c.patch);
    return { model, out, curve };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** Progress of the search: the bar (absent: status lines) and what it counts. */
interface SearchProgress {
  bar?: SingleBar;
  done: number;
  t0: number;
  budget: number;
}

/**
 * Cross-validates candidate `c`: one model per fold, each scored on its held-out fold.
 * @returns the result row and the fold models (the caller keeps or disposes them).
 */
async function crossValidate(c: Candidate, data: RecipeData, s: RecipeSettings, folds: number[][], cache: Map<boolean, Float32Array[]>, p: SearchProgress): Promise<Trained> {
  const t = performance.now();
  const z = normalised(data, c.instanceNorm, cache);
  const models: TaskModel[] = [];
  const curves: CurvePoint[][] = [];
  const foldScores: number[] = [];
  const oofOut = new Float32Array(data.series.length * data.outputs);
  try {
    for (const [f, valIdx] of folds.entries()) {
      p.bar?.update(p.done, { cand: c.name, fold: `${f + 1}/${folds.length}` });
      const fitIdx = folds.flatMap((g, j) => (j === f ? [] : g)).sort((a, b) => a - b);
      const { model, out, curve } = await trainFold(c, data, s, z, fitIdx, valIdx, f);
      models.push(model);
      curves.push(curve);
      foldScores.push(scoreOf(data, valIdx, out));
      valIdx.forEach((i, r) => {
        oofOut.set(out.subarray(r * data.outputs, (r + 1) * data.outputs), i * data.outputs);
      });
      p.done++;
      p.bar?.update(p.done);
    }
  } catch (e) {
    for (const m of models) m.dispose();
    throw e;
  }
  const all = data.series.map((_, i) => i);
  const score = foldScores.reduce((a, v) => a + v, 0) / foldScores.length;
  return { row: { candidate: c, status: "ran", score, foldScores, oof: scoreOf(data, all, oofOut), seconds: (performance.now() - t) / 1000 }, models, curves };
}

/** A cross-validated candidate: its row and its fold models with their curves. */
interface Trained {
  row: CandidateResult;
  models: TaskModel[];
  curves: CurvePoint[][];
}

/** Share of `--budget` the base candidate may take (the rest is for the variants). */
const BASE_SHARE = 0.4;

/**
 * Times one epoch of the base on fold 0's training part (a probe model, disposed) and, unless
 * `--epochs` fixed the epochs, lowers the base's epochs (to at least 5) so that its k fold models
 * are estimated to take at most {@link BASE_SHARE} of the budget. The probe's time counts against
 * the budget; the result depends on the machine's speed only when the base would not fit.
 * @returns the base and the measured seconds per unit of {@link costOf} (for the estimates).
 */
async function fitBaseToBudget(base: Candidate, data: RecipeData, s: RecipeSettings, folds: number[][], cache: Map<boolean, Float32Array[]>): Promise<{ base: Candidate; secPerCost: number }> {
  const one = { ...base, epochs: 1 };
  const fitIdx = folds.slice(1).flat().sort((a, b) => a - b);
  const t = performance.now();
  const probe = await trainFold(one, data, s, normalised(data, base.instanceNorm, cache), fitIdx, folds[0]!, 0);
  probe.model.dispose();
  // The probe trained (k-1)/k of the cases once; a candidate trains them k times over its epochs.
  const secPerCost = (((performance.now() - t) / 1000) * s.folds) / costOf(one, data);
  const estimate = secPerCost * costOf(base, data);
  if (s.epochs !== undefined || estimate <= BASE_SHARE * s.budget) return { base, secPerCost };
  const epochs = Math.max(5, Math.floor((base.epochs * BASE_SHARE * s.budget) / estimate));
  status(`recipe: the base's ${base.epochs} epochs would take about ${estimate.toFixed(0)} s of the ${s.budget} s budget: ${epochs} epochs`);
  return { base: { ...base, epochs }, secPerCost };
}

/** Whether score `a` beats `b` strictly (accuracy: higher; RMSE: lower). */
function better(a: number, b: number, metric: "accuracy" | "rmse"): boolean {
  return metric === "accuracy" ? a > b + 1e-12 : a < b - 1e-12;
}

/**
 * Runs the search (see the module comment) on the training split and returns the table, the
 * chosen candidate and its fold models.
 * @throws {RangeError} for fewer training cases than folds.
 */
export async function searchRecipe(data: RecipeData, s: RecipeSettings): Promise<RecipeResult> {
  const metric = data.task === "classification" ? "accuracy" : "rmse";
  const folds = kFolds(data.series.length, data.task === "classification" ? (data.y as number[]) : null, s.folds, s.seed);
  const cache = new Map<boolean, Float32Array[]>();
  const useBar = s.progress && process.stderr.isTTY === true;
  const p: SearchProgress = { done: 0, t0: performance.now(), budget: s.budget, ...(useBar && { bar: progressBar() }) };
  p.bar?.start(s.folds * s.maxCandidates, 0, { cand: "base", fold: "", best: "-" });
  const { base, secPerCost: probed } = await fitBaseToBudget(baseCandidate(data, s.folds, s.epochs), data, s, folds, cache);
  const results: CandidateResult[] = [];
  let best: Trained | undefined;
  let secPerCost = probed;
  try {
    const queue: Candidate[] = [base];
    for (let stage = 0; stage <= STAGES.length; stage++) {
      for (const c of queue) {
        const elapsed = (performance.now() - p.t0) / 1000;
        const estimate = secPerCost * costOf(c, data);
        if (best && results.filter((r) => r.status === "ran").length >= s.maxCandidates) {
          results.push({ candidate: c, status: "skipped: --max-candidates", seconds: 0 });
          continue;
        }
        if (best && elapsed + estimate > s.budget) {
          results.push({ candidate: c, status: `skipped: budget (estimated ${estimate.toFixed(1)} s, ${Math.max(0, s.budget - elapsed).toFixed(1)} s left)`, seconds: 0 });
          continue;
        }
        const r = await crossValidate(c, data, s, folds, cache, p);
        results.push(r.row);
        secPerCost = Math.max(secPerCost, r.row.seconds / costOf(c, data));
        if (!best || better(r.row.score!, best.row.score!, metric)) {
          for (const m of best?.models ?? []) m.dispose();
          best = r;
        } else {
          for (const m of r.models) m.dispose();
        }
        p.bar?.update({ best: `${best.row.candidate.name} ${fmtScore(best.row.score!, metric)}` });
        if (!useBar) status(`recipe: ${c.name} (${describe(c)}): CV ${metric} ${fmtScore(r.row.score!, metric)} in ${r.row.seconds.toFixed(1)} s; best so far: ${best.row.candidate.name}`);
      }
      queue.length = 0;
      if (stage < STAGES.length) queue.push(...STAGES[stage]!(best!.row.candidate, data));
    }
  } catch (e) {
    for (const m of best?.models ?? []) m.dispose();
    throw e;
  } finally {
    p.bar?.stop();
  }
  best!.row.status = "chosen";
  return { results, chosen: best!.row.candidate, models: best!.models, curves: best!.curves, reason: reasonFor(best!.row, results, metric, s.folds), folds, seconds: (performance.now() - p.t0) / 1000, metric };
}

/** Why the chosen candidate won, in one sentence. */
function reasonFor(best: CandidateResult, results: readonly CandidateResult[], metric: "accuracy" | "rmse", k: number): string {
  const ran = results.filter((r) => r.score !== undefined).length;
  const skipped = results.length - ran;
  return `the ${metric === "accuracy" ? "highest" : "lowest"} mean ${k}-fold CV ${metric} (${fmtScore(best.score!, metric)}) of ${ran} candidates tried${skipped ? ` (${skipped} skipped)` : ""}; a change was kept only when it scored strictly better; the final model is the ${k} fold models of '${best.candidate.name}', outputs averaged`;
}

/** A score for the table: accuracy with 4 decimals, RMSE with 4 significant digits. */
export function fmtScore(v: number, metric: "accuracy" | "rmse"): string {
  return metric === "accuracy" ? v.toFixed(4) : Number(v.toPrecision(4)).toString();
}

/** The search's progress bar on stderr: fits done over fits planned, candidate, fold, best so far. */
function progressBar(): SingleBar {
  return new SingleBar({ format: "recipe |{bar}| {value}/{total} fits | {cand} fold {fold} | best {best} | {duration}s", stream: process.stderr, hideCursor: true });
}

/** The table printed at the end of the search: one row per candidate (change, settings, CV score, per-fold spread, seconds, status). */
export function recipeTable(r: RecipeResult): string {
  const rows = r.results.map((x) => {
    const spread = x.foldScores ? `${fmtScore(Math.min(...x.foldScores), r.metric)}-${fmtScore(Math.max(...x.foldScores), r.metric)}` : "";
    return [x.candidate.name, describe(x.candidate), x.score === undefined ? "-" : fmtScore(x.score, r.metric), spread, x.seconds ? x.seconds.toFixed(1) : "-", x.status];
  });
  const head = ["candidate", "settings", `CV ${r.metric}`, "folds", "s", "status"];
  const w = head.map((h, j) => Math.max(h.length, ...rows.map((row) => row[j]!.length)));
  return [head, ...rows].map((row) => row.map((v, j) => v.padEnd(w[j]!)).join("  ").trimEnd()).join("\n");
}
