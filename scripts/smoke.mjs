// Checks the built package as a user sees it: `import { GQA } from "gqa"` resolves through
// package.json `exports` (self-reference) to dist/, loads the backend named by GQA_BACKEND and
// answers a call whose value is known (the approximate paramCount of SPEC section 3,
// computed independently below); then `gqa/data` feeds a shipped dataset to fit and evaluate.
import { GQA, GqaError } from "gqa";

const want = process.env.GQA_BACKEND ?? "auto";
await GQA.init();
if (want !== "auto" && GQA.backend !== want) throw new Error(`asked for ${want}, got ${GQA.backend}`);
const H = 256, NH = 8, NKV = 2, L = 4, E = 12, D = H / NH;
const expected = E * H + L * (2 * H * NH * D + 2 * H * NKV * D + 8 * H * H);
const got = GQA.paramCount({ embedDim: E });
if (got !== expected) throw new Error(`paramCount: expected ${expected}, got ${got}`);
try {
  GQA.validate({ embedDim: E, numHeads: 7 });
  throw new Error("numHeads=7 should be rejected");
} catch (e) {
  if (!(e instanceof GqaError) || e.code !== "INVALID_OPTION") throw e;
}

// `gqa/data` as docs/training.md's example uses it: a shipped dataset, standardised with the
// training split's statistics, padded, trained for two epochs and evaluated. The accuracy is
// recounted here from the predictions.
const { loadDataset, channelStats, standardize, trainingData } = await import("gqa/data");
const ds = await loadDataset("basic-motions");
const stats = channelStats(ds.train.series, ds.train.channels);
const split = (s) => trainingData(standardize(s.series, stats), s.channels, s.labels);
const model = await GQA.build({ embedDim: ds.train.channels, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1, outputMode: "mean_pool", head: { type: "classification", numClasses: ds.train.classLabels.length } });
await model.fit(split(ds.train), { epochs: 2, batchSize: 8 });
const test = split(ds.test);
const r = await model.evaluate(test);
model.dispose();
const right = r.predictions.filter((p, i) => p === test.labels[i]).length;
if (test.dims.join() !== `${ds.test.series.length},100,6` || r.count !== 40 || r.accuracy !== right / 40) {
  throw new Error(`gqa/data pipeline: dims ${test.dims}, count ${r.count}, accuracy ${r.accuracy} vs ${right}/40 recounted`);
}
console.log(`smoke ok: import "gqa" -> ${GQA.backend} (${GQA.backendFile}), paramCount=${got}; "gqa/data" -> basic-motions [${test.dims}], 2 epochs, test accuracy ${r.accuracy}`);
