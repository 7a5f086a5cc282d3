import { GQA } from "gqa";

const model = await GQA.build({ embedDim: 12, rope: true }); // default sizes: H 256, 8 / 2 heads, 4 layers
const session = await model.session({ maxLen: 2048 }); // batch 1; the cache is allocated now
const x = Float32Array.from({ length: 101 * 12 }, (_, i) => Math.sin(i / 7)); // 101 steps of 12 features

await session.push(x.subarray(0, 100 * 12), [1, 100, 12]); // prefill 100 positions -> [1, 256]
const y = await session.push(x.subarray(100 * 12), [1, 1, 12]); // decode one position -> [1, 256]
const full = await model.forward(x, [1, 101, 12]); // the same output, recomputing all 101 positions
const diff = y.data.reduce((m, v, i) => Math.max(m, Math.abs(v - (full.data[i] ?? Number.NaN))), 0);
console.log(`positions ${session.length}, KV cache ${session.kvCacheBytes / 2 ** 20} MiB, max |decode - forward| ${diff.toExponential(1)}`);
session.dispose();
model.dispose();
