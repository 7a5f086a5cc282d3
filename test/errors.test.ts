/**
 * Structured errors, per backend: the core's error codes and field names have one
 * source (`gqa_core::ERROR_CATALOG`, read through the binding) and the TypeScript table and types
 * must equal it; every error thrown by the binding carries `code` and its fields as properties,
 * which `GqaError` exposes typed.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, expectTypeOf, it } from "vitest";
import { GQA, GqaError, type GqaErrorCode, type GqaErrorFields, type GqaOptions } from "gqa";
import { errorCatalog } from "gqa/testing";
import { CORE_ERROR_FIELDS } from "../ts/errors.js";
import { BACKEND, expectCode } from "./helpers/expect.js";
import { readSafetensors } from "./helpers/safetensors.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SMALL: GqaOptions = { embedDim: 6, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1, dropout: 0, seed: 1 };

beforeAll(async () => {
  await GQA.init(BACKEND === "auto" ? {} : { backend: BACKEND });
});

/** Own enumerable properties of a GqaError other than the standard ones. */
function fieldsOf(e: GqaError): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) if (k !== "code" && k !== "name") out[k] = v;
  return out;
}

describe(`structured errors (${BACKEND})`, () => {
  it("the TypeScript code table equals the core's catalog (codes, order, field names)", () => {
    const catalog = errorCatalog();
    const ts = Object.entries(CORE_ERROR_FIELDS).map(([code, fields]) => ({ code, fields: [...fields] }));
    expect(ts).toEqual(catalog);
    // Every code the Rust enum has appears in the Rust source of `Error::code()` (a second, textual check
    // that the catalog itself lists every variant).
    const file = readFileSync(join(ROOT, "crates/gqa-core/src/error.rs"), "utf8");
    const src = file.slice(file.indexOf("pub fn code(&self)"), file.indexOf("pub fn fields(&self)"));
    const inCode = [...src.matchAll(/=> "([A-Z_]+)"/g)].map((m) => m[1]);
    expect(new Set(inCode)).toEqual(new Set(catalog.map((c) => c.code)));
  });

  it("INVALID_OPTION carries option, expected and found", async () => {
    const e = await expectCode(() => GQA.validate({ embedDim: 6, numHeads: 8, numKvHeads: 3 }), "INVALID_OPTION");
    expect(GqaError.is(e, "INVALID_OPTION")).toBe(true);
    expect(fieldsOf(e)).toEqual({ option: "numKvHeads", expected: expect.stringContaining("divisor of numHeads=8"), found: "3" });
    expect(e.message).toContain(`\`numKvHeads\``);
    expect(e.message).toContain(String(e.expected));
  });

  it("INVALID_INPUT carries what, expected and found", async () => {
    const m = await GQA.build(SMALL);
    try {
      const e = await expectCode(() => m.forward(new Float32Array(29), [1, 5, 6]), "INVALID_INPUT");
      expect(e.what).toBe("input");
      expect(e.expected).toMatch(/30/);
      expect(e.found).toMatch(/29/);
    } finally {
      m.dispose();
    }
  });

  it("MISSING_PARAMETER carries the canonical parameter name and the keys looked for", async () => {
    const dir = join(ROOT, "fixtures/hf_rope");
    const meta = JSON.parse(readFileSync(join(dir, "llama_default.json"), "utf8")) as { hfConfig: Record<string, unknown> };
    const bytes = readSafetensors(join(dir, "llama_default.safetensors")).bytes;
    const e = await expectCode(() => GQA.loadGqaAttention(bytes, { hfConfig: { ...meta.hfConfig, attention_bias: true }, layer: 1 }), "MISSING_PARAMETER");
    expect(e.parameter).toMatch(/bias/);
    expect(e.lookedFor).toMatch(/model\.layers\.1\.self_attn\.q_proj\.bias/);
  });

  it("OUT_OF_MEMORY carries what, requested, limit and inUse as numbers", async () => {
    // Each weight (at most 512 x 2048 x 4 bytes = 4 MiB) fits under 8 MiB; all of them do not.
    const limit = 8 << 20;
    GQA.setMemoryLimit(limit);
    try {
      const e = await expectCode(() => GQA.build({ ...SMALL, hiddenSize: 512, numHeads: 4, numLayers: 2 }), "OUT_OF_MEMORY");
      expect(e.what).toBe("parameters");
      expect(e.limit).toBe(limit);
      expect(typeof e.requested).toBe("number");
      expect(e.requested!).toBeGreaterThan(limit);
      expect(typeof e.inUse).toBe("number");
      expect(e.message).toContain(String(e.requested));
    } finally {
      GQA.setMemoryLimit(null);
    }
  });

  it("DISPOSED carries what, from the core on both backends", async () => {
    const m = await GQA.build(SMALL);
    m.dispose();
    const e = await expectCode(() => m.forward(new Float32Array(6), [1, 1, 6]), "DISPOSED");
    expect(e.what).toBe("model");
  });

  it("a GqaError narrowed with GqaError.is reads its fields typed", async () => {
    try {
      await GQA.validate({ embedDim: 0 });
      expect.unreachable();
    } catch (e) {
      if (!GqaError.is(e, "INVALID_OPTION")) throw e;
      const option: string = e.option;
      expect(option).toBe("embedDim");
    }
  });

  it("GqaError declares every field of every code, optional, readonly and typed as GqaErrorFields (checked by tsc)", () => {
    type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
    type Fields = UnionToIntersection<GqaErrorFields[GqaErrorCode]>;
    expectTypeOf<Pick<GqaError, keyof Fields>>().toEqualTypeOf<{ readonly [K in keyof Fields]?: Fields[K] }>();
  });
});
