import { GQA } from "gqa";

// A model whose every position reads its last 64 positions (Mistral's sliding window): its session
// needs no maxLen and keeps the same cache however long the stream runs.
const model = await GQA.build({ embedDim: 4, hiddenSize: 32, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, slidingWindow: 64 });
const session = await model.session({}); // unbounded: session.maxLen === null
const frame = (p: number) => Float32Array.from({ length: 4 }, (_, k) => Math.sin(p / 9 + k));
const bytes = session.kvCacheBytes;
let y: ArrayLike<number> = [];
for (let p = 0; p < 3000; p++) y = (await session.push(frame(p), [1, 1, 4])).data; // one frame per step

// The last output equals a forward over the last 2 * 63 + 1 frames (the receptive field of two
// layers) at their absolute positions.
const field = 2 * 63 + 1;
const x = new Float32Array(field * 4);
for (let i = 0; i < field; i++) x.set(frame(3000 - field + i), i * 4);
const ref = await model.forward(x, [1, field, 4], { positionOffset: 3000 - field });
const diff = Array.from(y).reduce((m, v, i) => Math.max(m, Math.abs(v - (ref.data[i] ?? Number.NaN))), 0);
console.log(`positions ${session.length}, KV cache ${session.kvCacheBytes / 1024} KiB (${session.kvCacheBytes === bytes ? "constant" : "grew"}), max |stream - forward| ${diff.toExponential(1)}`);
session.dispose();
model.dispose();
