import { GQA } from "gqa";

const backend = await GQA.init(); // the native addon in Node (Deno with --allow-ffi), else wasm
const model = await GQA.build({ embedDim: 12, hiddenSize: 64, numHeads: 8, numKvHeads: 2, numLayers: 2 });
const y = await model.forward(new Float32Array(2 * 10 * 12), [2, 10, 12]); // x: [B, T, E] = [2, 10, 12]
console.log(backend, GQA.threads, GQA.simd, y.dims); // e.g. native 2 { gemm: 'avx2+fma', kernels: 'avx2+fma' } [ 2, 64 ]
model.dispose();
