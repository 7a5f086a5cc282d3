/** Shared assertions of the per-backend vitest suites. */
import { expect } from "vitest";
import { GqaError } from "gqa";

/** The backend this run of the suite is for (`GQA_BACKEND`, set by scripts/test.sh). */
export const BACKEND = (process.env.GQA_BACKEND ?? "auto") as "native" | "wasm" | "auto";
/** The other backend, for cross-backend comparisons. */
export const OTHER = BACKEND === "wasm" ? "native" : "wasm";
/**
 * `GQA_NO_WASM=1`, set by scripts/test-fast.sh on a checkout without the wasm modules (built by
 * `bash scripts/setup.sh` alone): the tests that need the wasm backend beside native skip, by
 * name. `npm test` builds the modules and never sets it, so there they always run.
 */
export const NO_WASM = process.env.GQA_NO_WASM === "1";

/** Expects `f` to throw (or reject with) a GqaError with `code` whose message matches `re`. */
export async function expectCode(f: () => unknown, code: string, re?: RegExp): Promise<GqaError> {
  let err: unknown;
  try {
    await f();
  } catch (e) {
    err = e;
  }
  expect(err, `expected GqaError ${code}`).toBeInstanceOf(GqaError);
  const g = err as GqaError;
  expect(g.code, g.message).toBe(code);
  if (re) expect(g.message).toMatch(re);
  return g;
}
