/**
 * ts/backend.ts is typed by the declarations the binding generators write: napi-rs's
 * `bindings/node/index.d.ts` (committed; `scripts/setup.sh` fails when a build changes it) and a
 * committed copy of wasm-bindgen's `bindings/wasm/pkg/gqa_wasm.d.ts` (`bindings/wasm/gqa_wasm.d.ts`).
 * Here: the copy is the generated file, and each built module exports exactly what its
 * declarations name (where the module is built), so the types cannot drift from the binaries.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";

const root = new URL("../", import.meta.url);
const file = (p: string) => new URL(p, root);

/** The exported names a declaration file declares (functions, classes, constants; not types). */
function declared(dts: string): string[] {
  const names = [...dts.matchAll(/^export (?:declare )?(?:function|class|const) (\w+)/gm)].map((m) => m[1]!);
  return [...new Set(names)].sort();
}

const NATIVE_DTS = file("bindings/node/index.d.ts");
const NATIVE_JS = file("bindings/node/index.js");
const WASM_COPY = file("bindings/wasm/gqa_wasm.d.ts");
const WASM_DTS = file("bindings/wasm/pkg/gqa_wasm.d.ts");
const WASM_JS = file("bindings/wasm/pkg/gqa_wasm.js");

describe("generated binding declarations", () => {
  it("the committed wasm declarations are wasm-bindgen's, byte for byte", (ctx) => {
    if (!existsSync(WASM_DTS)) ctx.skip();
    expect(readFileSync(WASM_COPY, "utf8")).toBe(readFileSync(WASM_DTS, "utf8"));
  });

  it("the native addon exports exactly what bindings/node/index.d.ts declares", (ctx) => {
    if (!existsSync(NATIVE_JS)) ctx.skip();
    const addon = createRequire(import.meta.url)(NATIVE_JS.pathname) as Record<string, unknown>;
    expect(Object.keys(addon).sort()).toEqual(declared(readFileSync(NATIVE_DTS, "utf8")));
  });

  it("the wasm glue exports exactly what bindings/wasm/gqa_wasm.d.ts declares", async (ctx) => {
    if (!existsSync(WASM_JS)) ctx.skip();
    const glue = (await import(WASM_JS.href)) as Record<string, unknown>;
    const names = Object.keys(glue).filter((k) => k !== "default" && k !== "initSync");
    expect(names.sort()).toEqual(declared(readFileSync(WASM_COPY, "utf8")).filter((k) => k !== "initSync"));
  });

  it("both bindings declare the same functions and classes", () => {
    // Each generator's own: napi-rs's loader reports what it loaded; wasm-bindgen's `initSync` and
    // the `start` hook (which installs the panic hook) are run by the module's instantiation.
    const native = declared(readFileSync(NATIVE_DTS, "utf8")).filter((k) => k !== "__napiBindingTarget");
    const wasm = declared(readFileSync(WASM_COPY, "utf8")).filter((k) => k !== "initSync" && k !== "start");
    expect(wasm).toEqual(native);
  });
});
