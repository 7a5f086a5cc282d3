// The input transform of `gqa train` models (ts/data/transform.ts) and the fold and patch rules of
// `--recipe auto` (ts/cli/recipe.ts), against hand-checked values and an independent nested-loop
// computation.
import { describe, expect, it } from "vitest";
import { applyTransform, instanceNormalize, patchSeries, tokenCount } from "../ts/data/transform.js";
import { baseCandidate, kFolds, patchCandidates } from "../ts/cli/recipe.js";
import { recipeOf } from "../ts/cli/train.js";
import { cliTransform, modelInputs, type CliMetadata } from "../ts/model-file.js";

/** Deterministic pseudo-random values in [-2, 2) (LCG), so the reference check needs no fixture file. */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 4 - 2;
  });
}

/** The transform written another way: [T][C] arrays, float64, the patch built token by token. */
function reference(x: Float32Array, C: number, mean: number[], std: number[], inorm: boolean, P: number): number[] {
  const T = x.length / C;
  const rows = Array.from({ length: T }, (_, t) => Array.from({ length: C }, (_, c) => (x[t * C + c]! - mean[c]!) / std[c]!));
  if (inorm) {
    for (let c = 0; c < C; c++) {
      const col = rows.map((r) => r[c]!);
      const m = col.reduce((a, v) => a + v, 0) / T;
      const sd = Math.sqrt(col.reduce((a, v) => a + (v - m) ** 2, 0) / T) || 1;
      rows.forEach((r) => {
        r[c] = (r[c]! - m) / sd;
      });
    }
  }
  const out: number[] = [];
  for (let j = 0; j < Math.ceil(T / P); j++) {
    for (let p = 0; p < P; p++) for (let c = 0; c < C; c++) out.push(j * P + p < T ? rows[j * P + p]![c]! : 0);
  }
  return out;
}

describe("input transform (ts/data/transform.ts)", () => {
  it("hand-checked: standardise, instance-normalise, patch 2 of a 3-step, 2-channel case", () => {
    const x = Float32Array.from([1, 10, 2, 20, 3, 30]);
    const z = applyTransform([x], { standardize: { mean: [2, 20], std: [1, 10] }, instanceNorm: false, patch: 1 });
    expect(Array.from(z[0]!)).toEqual([-1, -1, 0, 0, 1, 1]);
    const k = Math.sqrt(3 / 2); // 1 / population std of (-1, 0, 1)
    const w = applyTransform([x], { standardize: { mean: [2, 20], std: [1, 10] }, instanceNorm: true, patch: 2 });
    // ceil(3 / 2) = 2 tokens of 2 * 2 features; the fourth step is zero padding.
    expect(w[0]!.length).toBe(8);
    const want = [-k, -k, 0, 0, k, k, 0, 0];
    for (const [i, v] of Array.from(w[0]!).entries()) expect(v).toBeCloseTo(want[i]!, 6);
    expect(tokenCount(3, 2)).toBe(2);
  });

  it("matches a nested-loop computation on unequal-length cases for patch 1, 3, 7 with and without instance norm", () => {
    const C = 3;
    const mean = [0.5, -1, 2];
    const std = [2, 0.5, 1.5];
    const cases = [values(5 * C, 1), values(11 * C, 2), values(7 * C, 3)];
    for (const P of [1, 3, 7]) {
      for (const inorm of [false, true]) {
        const got = applyTransform(cases, { standardize: { mean, std }, instanceNorm: inorm, patch: P });
        cases.forEach((x, i) => {
          const want = reference(x, C, mean, std, inorm, P);
          expect(got[i]!.length).toBe(want.length);
          const err = Math.max(...want.map((v, j) => Math.abs(v - got[i]![j]!)));
          expect(err).toBeLessThan(1e-5);
        });
      }
    }
  });

  it("a constant channel keeps std 1 under instance norm; patch 1 returns the cases unchanged", () => {
    const z = instanceNormalize([Float32Array.from([4, 1, 4, 2, 4, 3])], 2);
    expect(Array.from(z[0]!.filter((_, j) => j % 2 === 0))).toEqual([0, 0, 0]);
    const s = Float32Array.from([1, 2, 3]);
    expect(patchSeries([s], 1, 1)[0]).toBe(s);
    expect(() => applyTransform([s], { standardize: { mean: [0], std: [1] }, instanceNorm: false, patch: 0 })).toThrow(/transform\.patch: expected an integer >= 1, found 0/);
  });

  it("model files: a record without transform means standardisation only; modelInputs gives the width C * P", () => {
    const meta: CliMetadata = { version: 1, task: "classification", dataset: "d", classLabels: ["a", "b"], channels: 2, standardize: { mean: [0, 0], std: [1, 1] } };
    expect(cliTransform(meta)).toEqual({ instanceNorm: false, patch: 1, standardize: meta.standardize });
    const r = modelInputs([Float32Array.from([1, 2, 3, 4, 5, 6])], { ...meta, transform: { instanceNorm: false, patch: 2 } });
    expect(r.width).toBe(4);
    expect(Array.from(r.series[0]!)).toEqual([1, 2, 3, 4, 5, 6, 0, 0]);
  });
});

describe("auto recipe rules (ts/cli/recipe.ts)", () => {
  it("stratified folds: disjoint, cover every case, each class split floor/ceil over the folds", () => {
    const labels = [...Array(7).fill(0), ...Array(5).fill(1), ...Array(2).fill(2)];
    const folds = kFolds(labels.length, labels, 3, 4);
    expect(folds.flat().sort((a, b) => a - b)).toEqual(labels.map((_, i) => i));
    for (const c of [0, 1, 2]) {
      const n = labels.filter((l) => l === c).length;
      for (const f of folds) {
        const k = f.filter((i) => labels[i] === c).length;
        expect(k === Math.floor(n / 3) || k === Math.ceil(n / 3)).toBe(true);
      }
    }
    expect(kFolds(labels.length, labels, 3, 4)).toEqual(folds);
    expect(() => kFolds(2, null, 3, 0)).toThrow(/folds: expected at most as many folds as training cases \(2\), found 3/);
  });

  it("patch lengths from the series length: ~64 tokens first, no patching up to 256 steps, then ~16 tokens", () => {
    expect(patchCandidates(24, 24)).toEqual([1, 2]);
    expect(patchCandidates(100, 100)).toEqual([2, 1, 6]);
    expect(patchCandidates(286, 286)).toEqual([4, 18]);
    expect(patchCandidates(2000, 2000)).toEqual([31, 125]);
    expect(patchCandidates(90, 300)).toEqual([1, 6]);
  });

  it("the base candidate's batch and epochs follow the training size", () => {
    const data = { task: "classification" as const, series: Array.from({ length: 20 }, () => new Float32Array(24)), channels: 1, y: Array(20).fill(0), outputs: 2, stats: { mean: [0], std: [1] } };
    const b = baseCandidate(data, 5);
    // 16 cases per fold fit: batch clamp(round(16 / 8), 8, 32) = 8, 2 steps an epoch, epochs clamp(150, 30, 150).
    expect([b.patch, b.batchSize, b.epochs, b.labelSmoothing, b.outputMode]).toEqual([1, 8, 150, 0.1, "mean_pool"]);
    expect(baseCandidate(data, 5, 7).epochs).toBe(7);
  });

  it("--recipe: auto by default, fixed when a fixed-only flag is given, auto with one refused", () => {
    expect(recipeOf(undefined, [])).toBe("auto");
    expect(recipeOf(undefined, ["lr"])).toBe("fixed");
    expect(recipeOf("fixed", [])).toBe("fixed");
    expect(() => recipeOf("auto", ["batchSize"])).toThrow(/--recipe auto chooses --batch-size itself/);
  });
});
