/**
 * The TypeScript types of options, configs and reports against the Rust definitions (issue 14):
 * the field names of each interface in ts/ (read with the TypeScript compiler API from the source)
 * must equal the JSON field names serde gives the matching Rust struct (`gqa_core::schema`, read
 * through the loaded binding). A field added, renamed or removed on one side fails here.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { beforeAll, describe, expect, it } from "vitest";
import { GQA } from "gqa";
import { apiFields } from "gqa/testing";
import { CORE_DEFAULTS } from "../ts/cli/common.js";
import { BACKEND } from "./helpers/expect.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

beforeAll(async () => {
  await GQA.init(BACKEND === "auto" ? {} : { backend: BACKEND });
});

/**
 * Property names and type texts of an interface declared in a ts/ source file, with the members of
 * the interfaces it extends (declared in the same file, else in the generated ts/generated/options.ts)
 * first and its own members overriding them. An interface the file only imports and re-exports is
 * looked up in ts/generated/options.ts.
 */
function members(file: string, name: string): Map<string, string> {
  const path = join(ROOT, "ts", file);
  const src = ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, true);
  for (const st of src.statements) {
    if (ts.isInterfaceDeclaration(st) && st.name.text === name) {
      const out = new Map<string, string>();
      for (const clause of st.heritageClauses ?? []) {
        for (const t of clause.types) {
          const base = t.expression.getText(src);
          const home = declares(src, base) ? file : GENERATED;
          for (const [k, v] of members(home, base)) out.set(k, v);
        }
      }
      for (const m of st.members) {
        if (ts.isPropertySignature(m) && m.name && ts.isIdentifier(m.name)) out.set(m.name.text, m.type?.getText(src) ?? "");
      }
      return out;
    }
  }
  if (file !== GENERATED) return members(GENERATED, name);
  throw new Error(`interface ${name} not found in ts/${file}`);
}

/** The generated option types (scripts/gen-ts.mjs, from schema/options.schema.json). */
const GENERATED = "generated/options.ts";

/** Whether `src` declares interface `name` itself. */
function declares(src: ts.SourceFile, name: string): boolean {
  return src.statements.some((st) => ts.isInterfaceDeclaration(st) && st.name.text === name);
}

/** Rust type -> [TS file, TS interface, members the TS layer adds itself (callbacks, data)]. */
const PAIRS: Array<[string, string, string, string[]]> = [
  // windowSize: the deprecated name of seqLenHint (a serde alias in the core, not a field).
  ["GqaConfig", "gqa.ts", "GqaOptions", ["windowSize"]],
  ["AttentionConfig", "gqa.ts", "AttentionOptions", []],
  ["LoadOptions", "gqa.ts", "LoadOptions", []],
  ["RecommendedDefaults", "gqa.ts", "RecommendedDefaults", []],
  ["ParamSpec", "gqa.ts", "ParamSpec", []],
  ["FitOptions", "train.ts", "FitOptions", ["onStep", "onEpochEnd", "validation"]],
  ["StepReport", "train.ts", "StepReport", []],
  ["EvalReport", "train.ts", "EvalResult", []],
  ["HeadConfig::Classification", "train.ts", "ClassificationHead", []],
  ["HeadConfig::Regression", "train.ts", "RegressionHead", []],
];

describe(`TypeScript types against the Rust definitions (${BACKEND})`, () => {
  it("the core lists every boundary struct this test pairs", () => {
    expect(Object.keys(apiFields()).sort()).toEqual(PAIRS.map((p) => p[0]).sort());
  });

  for (const [rust, file, iface, tsOnly] of PAIRS) {
    it(`${iface} (ts/${file}) has the fields of ${rust}`, () => {
      const want = apiFields()[rust]!;
      const got = [...members(file, iface).keys()].filter((k) => !tsOnly.includes(k)).sort();
      expect(got).toEqual(want);
    });
  }

  it("fields the core sends as null when absent are typed `| null`", () => {
    expect(members("train.ts", "StepReport").get("gradNorm")).toMatch(/\| null/);
    expect(members("train.ts", "EvalResult").get("accuracy")).toMatch(/\| null/);
    expect(members("train.ts", "FitOptions").get("clipNorm")).toMatch(/\| null/);
  });

  it("ts/generated is what scripts/gen-ts.mjs writes from the committed schema files", () => {
    const r = spawnSync(process.execPath, [join(ROOT, "scripts/gen-ts.mjs"), "--check"], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("the CLI's defaults (generated: flag help, gqa info) equal what the core fills in", async () => {
    const m = await GQA.build({ embedDim: 4 });
    try {
      const cfg = m.config as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(CORE_DEFAULTS)) expect([k, cfg[k]]).toEqual([k, v]);
    } finally {
      m.dispose();
    }
  });
});
