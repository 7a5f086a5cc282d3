import { GQA } from "gqa";
import { channelStats, loadDataset, standardize, trainingData } from "gqa/data";

// Data: JapaneseVowels, shipped with gqa (12 channels per step, 9 speakers), standardised per channel.
const ds = await loadDataset("japanese-vowels");
const stats = channelStats(ds.train.series, ds.train.channels);
const train = trainingData(standardize(ds.train.series, stats), ds.train.channels, ds.train.labels);
const test = trainingData(standardize(ds.test.series, stats), ds.test.channels, ds.test.labels);

const model = await GQA.build({ embedDim: 12, hiddenSize: 64, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true,
                                head: { type: "classification", numClasses: ds.train.classLabels.length } });
await model.fit(train, { epochs: 30, batchSize: 32, lr: 3e-3, labelSmoothing: 0.1 });
const { accuracy } = await model.evaluate(test);
const probs = await model.predict(test.x, test.dims, { lengths: test.lengths }); // [370, 9], rows sum to 1
await model.saveFile("quickstart.safetensors");
const loaded = await GQA.load("quickstart.safetensors");
const again = await loaded.predict(test.x, test.dims, { lengths: test.lengths });
console.log(`test accuracy ${accuracy?.toFixed(4)}; reloaded model predicts the same: ${again.data.every((p, i) => p === probs.data[i])}`);
