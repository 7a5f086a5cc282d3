import * as ort from "onnxruntime-node"; // or "onnxruntime-web"
import { GQA } from "gqa";

const model = await GQA.build({ embedDim: 12, hiddenSize: 64, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true,
                                head: { type: "classification", numClasses: 3 } });
const session = await ort.InferenceSession.create(model.exportOnnx()); // one standard ONNX graph, opset 17
const x = Float32Array.from({ length: 2 * 50 * 12 }, (_, i) => Math.sin(i / 5)); // [2, 50, 12]
const lengths = [50, 31]; // row 1 is padded after 31 steps
const out = await session.run({
  input: new ort.Tensor("float32", x, [2, 50, 12]),
  lengths: new ort.Tensor("int64", BigInt64Array.from(lengths, BigInt), [2]),
});
const probs = await model.predict(x, [2, 50, 12], { lengths });
const ortProbs = out.probabilities?.data as Float32Array;
const diff = probs.data.reduce((m, v, i) => Math.max(m, Math.abs(v - (ortProbs[i] ?? Number.NaN))), 0);
console.log(`probabilities ${out.probabilities?.dims}, max |onnxruntime - gqa| ${diff.toExponential(1)}`);
model.dispose();
