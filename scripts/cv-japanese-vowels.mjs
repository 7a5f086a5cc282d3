// Chooses the main job's recipe by cross-validation on the JapaneseVowels TRAIN split only
// (issue 17): stratified k-fold (default 5), each fold standardised with its own training part's
// channel statistics, every configuration trained with the same seeds on the same folds; the
// test split is never read here. Prints mean CV accuracy per configuration and writes the table
// to scripts/cv-japanese-vowels.json.
//
// Run after `npm run build`: node scripts/cv-japanese-vowels.mjs [--folds 5] [--seeds 0,1]
//                                 [--only name,name]
// Uses the native backend with GQA_THREADS (default 1: folds are small).
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { GQA } from "../dist/index.js";
import { padBatch } from "../dist/data/batch.js";
import { loadDataset } from "../dist/data/datasets.js";
import { channelStats, standardize } from "../dist/data/standardize.js";

const { values: args } = parseArgs({
  options: { folds: { type: "string", default: "5" }, seeds: { type: "string", default: "0,1" }, only: { type: "string" } },
});
const FOLDS = Number(args.folds);
const SEEDS = args.seeds.split(",").map(Number);

/** The main job's defaults (ts/cli/train.ts TRAIN_DEFAULTS, 30 epochs, batch 32, lr 3e-3). */
const BASE = {
  model: { hiddenSize: 64, numHeads: 4, numKvHeads: 2, numLayers: 2, dropout: 0.1, rope: true, outputMode: "last_timestep" },
  fit: { epochs: 30, batchSize: 32, lr: 3e-3, weightDecay: 0.01 },
};
const CONFIGS = {
  base: {},
  "epochs 60": { fit: { epochs: 60 } },
  "epochs 100": { fit: { epochs: 100 } },
  "dropout 0.2": { model: { dropout: 0.2 } },
  "dropout 0.3, epochs 60": { model: { dropout: 0.3 }, fit: { epochs: 60 } },
  "mean_pool": { model: { outputMode: "mean_pool" } },
  "mean_pool, epochs 60": { model: { outputMode: "mean_pool" }, fit: { epochs: 60 } },
  "batch 16": { fit: { batchSize: 16 } },
  "batch 16, epochs 60": { fit: { batchSize: 16, epochs: 60 } },
  "lr 1e-3, epochs 60": { fit: { lr: 1e-3, epochs: 60 } },
  "hidden 128": { model: { hiddenSize: 128 } },
  "hidden 128, epochs 60": { model: { hiddenSize: 128 }, fit: { epochs: 60 } },
  "3 layers": { model: { numLayers: 3 } },
  "weight decay 0.05": { fit: { weightDecay: 0.05 } },
  "no rope": { model: { rope: false } },
};

const merge = (c) => ({ model: { ...BASE.model, ...c.model }, fit: { ...BASE.fit, ...c.fit } });

/** Stratified folds: the indices of each class dealt round-robin (deterministic). */
function folds(labels, k) {
  const out = Array.from({ length: k }, () => []);
  const byClass = new Map();
  labels.forEach((y, i) => byClass.set(y, [...(byClass.get(y) ?? []), i]));
  let next = 0;
  for (const y of [...byClass.keys()].sort((a, b) => a - b)) for (const i of byClass.get(y)) out[next++ % k].push(i);
  return out;
}

async function runFold(cfg, train, C, K, trainIdx, valIdx, seed) {
  const raw = trainIdx.map((i) => train.series[i]);
  const stats = channelStats(raw, C);
  const zt = standardize(raw, stats);
  const zv = standardize(valIdx.map((i) => train.series[i]), stats);
  const batch = padBatch(zt, C);
  const model = await GQA.build({ embedDim: C, ...cfg.model, seed, head: { type: "classification", numClasses: K } });
  try {
    await model.fit({ x: batch.data, dims: batch.dims, lengths: batch.lengths, labels: trainIdx.map((i) => train.labels[i]) }, { ...cfg.fit, seed });
    const vb = padBatch(zv, C);
    const ev = await model.evaluate({ x: vb.data, dims: vb.dims, lengths: vb.lengths, labels: valIdx.map((i) => train.labels[i]) });
    return ev.accuracy;
  } finally {
    model.dispose();
  }
}

await GQA.init({ backend: "native", threads: Number(process.env.GQA_THREADS ?? 1) });
const { train } = await loadDataset("japanese-vowels");
const C = train.channels;
const K = train.classLabels.length;
const fs = folds(train.labels, FOLDS);
const names = args.only ? args.only.split(",") : Object.keys(CONFIGS);
const rows = [];
console.log(`JapaneseVowels train split: ${train.series.length} cases, ${FOLDS}-fold stratified CV, seeds ${SEEDS.join(",")}`);
for (const name of names) {
  const cfg = merge(CONFIGS[name]);
  const t0 = performance.now();
  const accs = [];
  for (const seed of SEEDS) {
    for (let f = 0; f < FOLDS; f++) {
      const valIdx = fs[f];
      const trainIdx = fs.flatMap((x, j) => (j === f ? [] : x));
      accs.push(await runFold(cfg, train, C, K, trainIdx, valIdx, seed));
    }
  }
  const mean = accs.reduce((a, b) => a + b, 0) / accs.length;
  const row = { name, config: cfg, meanAccuracy: mean, min: Math.min(...accs), max: Math.max(...accs), runs: accs.length, seconds: (performance.now() - t0) / 1000 };
  rows.push(row);
  console.log(`${name.padEnd(26)} CV accuracy ${mean.toFixed(4)} (min ${row.min.toFixed(3)}, max ${row.max.toFixed(3)}, ${accs.length} runs, ${row.seconds.toFixed(0)} s)`);
}
const source = "written by scripts/cv-japanese-vowels.mjs (this project's own measurements) from the UEA JapaneseVowels TRAIN split shipped in data/ (source and licence: see data/README.md); the test split is not read";
writeFileSync(new URL("./cv-japanese-vowels.json", import.meta.url), JSON.stringify({ source, folds: FOLDS, seeds: SEEDS, date: new Date().toISOString(), rows }, null, 2) + "\n");
