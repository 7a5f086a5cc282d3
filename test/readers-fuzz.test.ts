/**
 * The data readers' property tests and fuzz targets (test/fuzz/readers.ts).
 *
 * In `npm test`: a smoke run of 300 generated cases per property with a fixed seed, so that a
 * failure reproduces (fast-check prints the seed and the shrunk counterexample).
 *
 * Long run: `GQA_FUZZ_MINUTES=10 GQA_BACKEND=native npx vitest run test/readers-fuzz.test.ts`
 * fuzzes each target (UEA `.ts`, CSV, `.npy`) for that many minutes, split evenly over its three
 * properties, from a time-based seed, and prints the cases run per property (figures in the
 * docs/building-and-testing.md, "Tests"). Runs in the native pass only (the readers are plain TypeScript, the same on
 * every backend).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import { BACKEND } from "./helpers/expect.js";
import { properties, TARGETS } from "./fuzz/readers.js";

const MINUTES = Number(process.env.GQA_FUZZ_MINUTES ?? 0);

describe.skipIf(BACKEND === "wasm")("data readers: fuzz and property tests", () => {
  for (const [target, names] of Object.entries(TARGETS)) {
    for (const name of names) {
      const budgetMs = (MINUTES * 60_000) / names.length;
      // One concrete property type for fast-check's overloads (each entry is a synchronous property).
      const prop = properties[name] as unknown as fc.IProperty<[unknown]>;
      it(name, { timeout: Math.max(120_000, budgetMs * 1.5 + 60_000) }, () => {
        if (!(MINUTES > 0)) {
          fc.assert(prop, { numRuns: 300, seed: 20261201 });
          return;
        }
        const seed = Date.now() & 0x7fffffff;
        const t0 = performance.now();
        const out = fc.check(prop, { numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: budgetMs, markInterruptAsFailure: false, seed });
        const secs = (performance.now() - t0) / 1e3;
        console.log(`[fuzz ${target}] ${name}: ${out.numRuns} cases in ${secs.toFixed(0)} s (seed ${seed})${out.failed ? " FAILED" : ", no failure"}`);
        expect(out.failed, out.failed ? fc.defaultReportMessage(out) : "").toBe(false);
      });
    }
  }
});
