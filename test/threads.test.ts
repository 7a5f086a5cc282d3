/**
 * Compute threads and SIMD paths (`GQA.init({ threads })`, `GQA.threads`, `GQA.simd`) on the
 * backend chosen by GQA_BACKEND: the count is applied and reported, bad counts are typed errors,
 * and outputs do not depend on the thread count (bitwise on native: no kernel splits a
 * reduction over threads; the single-threaded wasm module runs one thread whatever the count, the
 * threaded one up to its pool's size).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { GQA } from "gqa";
import { randomData } from "./helpers/safetensors.js";
import { expectCode, BACKEND } from "./helpers/expect.js";

describe(`threads and SIMD paths (${BACKEND})`, () => {
  beforeAll(async () => {
    GQA.reset();
    await GQA.init();
  });
  afterAll(async () => {
    await GQA.init({ threads: 2 });
  });

  it("reports the SIMD paths the backend runs", () => {
    const simd = GQA.simd!;
    expect(simd).not.toBeNull();
    const kernels = ["avx512f", "avx2+fma", "portable", "simd128", "neon"];
    const gemm = ["avx512f", "avx2+fma", "scalar", "simd128", "relaxed-simd", "neon"];
    expect(kernels).toContain(simd.kernels);
    expect(gemm).toContain(simd.gemm);
    if (GQA.backend === "wasm") expect(simd.kernels).toBe("simd128");
  });

  it("sets the thread count and rejects bad counts naming `threads`", async () => {
    await GQA.init({ threads: 1 });
    expect(GQA.threads).toBe(1);
    await GQA.init({ threads: 2 });
    expect(GQA.threads).toBe(GQA.variant === "wasm" ? 1 : 2);
    for (const bad of [0, -1, 1.5, 5000, Number.NaN, "2" as unknown as number]) {
      await expectCode(() => GQA.init({ threads: bad }), "INVALID_OPTION", /`threads`/);
    }
  });

  it("gives the same outputs at 1 and 2 threads (forward, all positions, session)", async () => {
    const model = await GQA.build({ embedDim: 19, hiddenSize: 64, numHeads: 8, numKvHeads: 2, numLayers: 2, rope: true, outputMode: "all", seed: 4 });
    const dims = [3, 37, 19];
    const x = randomData(3 * 37 * 19, 5);
    const outs: Float32Array[] = [];
    const pushes: Float32Array[] = [];
    for (const threads of [1, 2]) {
      await GQA.init({ threads });
      outs.push((await model.forward(x, dims, { lengths: [37, 5, 20] })).data);
      const s = await model.session({ maxLen: 64, batch: 3 });
      await s.push(x, dims);
      pushes.push((await s.push(x.subarray(0, 3 * 19), [3, 1, 19])).data);
      s.dispose();
    }
    const [one, two] = [outs[0]!, outs[1]!];
    expect(one.length).toBe(3 * 37 * 64);
    expect(one.every((v, i) => Object.is(v, two[i]))).toBe(true);
    expect(pushes[0]!.every((v, i) => Object.is(v, pushes[1]![i]))).toBe(true);
    expect(one.some((v) => v !== 0)).toBe(true);
    model.dispose();
  });
});
