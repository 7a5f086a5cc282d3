/**
 * Test hooks (`import { setPanicSite } from "gqa/testing"`), for this project's test suites and
 * for users who want to check their own error handling: not needed to use gqa.
 */
import { callBinding } from "./errors.js";
import { loadedBinding } from "./gqa.js";

/** A site where {@link setPanicSite} can force a Rust panic. */
export type PanicSite = "forward" | "push" | "step";

/**
 * Arms a forced Rust panic (`gqa_core::testing`) at `site` on the loaded backend: every later
 * model forward (`forward`), session push (`push`) or training step (`step`) panics inside the
 * core until disarmed with `null`. The call rejects with `GqaError` code `INTERNAL`; native and
 * wasm keep working afterwards (wasm: the trap is reported and the module instance goes on).
 * @throws GqaError `NOT_INITIALIZED`
 */
export function setPanicSite(site: PanicSite | null): void {
  const b = loadedBinding();
  if (!b.testPanicSite) throw new Error("this backend build has no test hooks; rebuild with `bash scripts/setup.sh`");
  callBinding(() => b.testPanicSite!(site ?? undefined));
}

/** One entry of {@link errorCatalog}: a core error code and the names of the fields it carries. */
export interface ErrorCatalogEntry {
  /** The code, e.g. `"INVALID_OPTION"`. */
  code: string;
  /** The field names set as properties on the thrown error, e.g. `["option", "expected", "found"]`. */
  fields: string[];
}

/**
 * The loaded backend's error catalog: every error code of the Rust core (`gqa_core::ERROR_CATALOG`,
 * one entry per variant of `gqa_core::Error`) with its field names, in the enum's order. The
 * TypeScript types (`CoreErrorFields`) are checked against it by test/errors.test.ts.
 * @throws GqaError `NOT_INITIALIZED`
 */
export function errorCatalog(): ErrorCatalogEntry[] {
  const b = loadedBinding();
  return b.errorCatalog();
}

/**
 * The JSON field names of each options, config and report struct of the Rust core that crosses
 * the binding boundary (`gqa_core::schema::api_fields`), keyed by Rust type name
 * (`GqaConfig`, `FitOptions`, `StepReport`, `HeadConfig::Classification`, ...), names sorted.
 * test/schema.test.ts checks the TypeScript interfaces against it.
 * @throws GqaError `NOT_INITIALIZED`
 */
export function apiFields(): Record<string, string[]> {
  return loadedBinding().apiFields();
}
