/**
 * The core's parameter table (`GQA.parameterLayout`, `gqa_core::layout`) against what a built model
 * really holds, on the backend GQA_BACKEND selects: a saved model's tensors (read with the tests'
 * own safetensors reader) have the table's names and shapes; each initial value is what
 * the row's `init` says (Glorot rows inside `sqrt(6 / (in + out))` and spread over it, zeros,
 * ones); streams are the canonical indices; the Axon names follow SPEC section 3's rule, written
 * out here by hand; the sum is the exact parameter count.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { GQA, type GqaOptions } from "gqa";
import { readSafetensors } from "./helpers/safetensors.js";
import { BACKEND, expectCode } from "./helpers/expect.js";

const DIR = mkdtempSync(join(tmpdir(), "gqa-layout-"));

beforeAll(async () => {
  await GQA.init(BACKEND === "auto" ? {} : { backend: BACKEND });
});
afterAll(() => rmSync(DIR, { recursive: true, force: true }));

/** SPEC section 3's Axon names, by hand: `gqa_block_{l+1}_{module with . -> _}.{kernel|bias|gamma|beta}`. */
function axonByHand(name: string): string {
  const m = /^(?:blocks\.(\d+)\.)?(.+)\.(weight|bias)$/.exec(name)!;
  const [, layer, module, param] = m;
  const norm = module!.endsWith("_norm");
  const suffix = norm ? (param === "weight" ? "gamma" : "beta") : param === "weight" ? "kernel" : "bias";
  const stem = layer === undefined ? module! : `gqa_block_${Number(layer) + 1}_${module!.replace(/\./g, "_")}`;
  return `${stem}.${suffix}`;
}

describe("GQA.parameterLayout", () => {
  for (const [label, opts] of [
    ["input projection, rope", { embedDim: 5, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, seed: 3 }],
    ["E = H, headDim 6, MQA", { embedDim: 12, hiddenSize: 12, numHeads: 4, numKvHeads: 1, headDim: 6, numLayers: 1, seed: 9 }],
  ] as Array<[string, GqaOptions]>) {
    it(`matches a built model's saved tensors and initial values (${label})`, async () => {
      const rows = GQA.parameterLayout(opts);
      const H = opts.hiddenSize!, D = opts.headDim ?? H / opts.numHeads!, q = opts.numHeads! * D, kv = opts.numKvHeads! * D;
      const hasInput = opts.embedDim !== H;
      expect(rows.length).toBe((hasInput ? 2 : 0) + 16 * opts.numLayers! + 2);
      const count = rows.reduce((s, r) => s + r.shape.reduce((a, d) => a * d, 1), 0);
      expect(count).toBe(GQA.paramCount(opts, { exact: true }));
      const byName = new Map(rows.map((r) => [r.name, r]));
      expect(byName.get("blocks.0.attn.q_proj.weight")!.shape).toEqual([q, H]);
      expect(byName.get("blocks.0.attn.k_proj.weight")!.shape).toEqual([kv, H]);
      expect(byName.get("blocks.0.attn.out_proj.weight")!.shape).toEqual([H, q]);
      expect(byName.get("blocks.0.ffn_up.weight")!.shape).toEqual([4 * H, H]);
      expect(byName.has("input_projection.weight")).toBe(hasInput);

      const model = await GQA.build(opts);
      const path = join(DIR, `${label.replace(/\W+/g, "_")}.safetensors`);
      writeFileSync(path, await model.save());
      model.dispose();
      const st = readSafetensors(path);
      expect([...st.tensors.keys()].sort()).toEqual(rows.map((r) => r.name).sort());
      rows.forEach((r, i) => {
        expect(r.stream, r.name).toBe(i);
        expect(r.axonName, r.name).toBe(axonByHand(r.name));
        const t = st.tensors.get(r.name)!;
        expect(t.shape, r.name).toEqual(r.shape);
        const v = t.data as Float32Array;
        if (r.init === "glorot_uniform") {
          expect(r.matmul).toBe(true);
          const b = Math.sqrt(6 / (r.shape[0]! + r.shape[1]!));
          let lo = Infinity, hi = -Infinity;
          for (const x of v) {
            lo = Math.min(lo, x);
            hi = Math.max(hi, x);
          }
          expect(lo, r.name).toBeGreaterThanOrEqual(-b * (1 + 1e-6));
          expect(hi, r.name).toBeLessThan(b * (1 + 1e-6));
          // Spread over the interval (not all zero, not a constant): 48+ draws reach both outer quarters.
          expect(lo, r.name).toBeLessThan(-b / 2);
          expect(hi, r.name).toBeGreaterThan(b / 2);
        } else {
          expect(r.matmul).toBe(false);
          const want = r.init === "ones" ? 1 : 0;
          expect(r.init === "ones", r.name).toBe(r.name.endsWith("_norm.weight"));
          expect(v.every((x) => x === want), r.name).toBe(true);
        }
      });
    });
  }

  it("refuses invalid options with the core's error", () => {
    expectCode(() => GQA.parameterLayout({ embedDim: 4, hiddenSize: 30, numHeads: 8 }), "INVALID_OPTION");
    expectCode(() => GQA.parameterLayout({ embedDim: 4, ropeTheta: Infinity }), "INVALID_OPTION", /`ropeTheta`: expected a finite number, found Infinity/);
  });
});

describe("ensemble files (gqa train --ensemble)", () => {
  it("GQA.load refuses one naming GQA.loadEnsemble, which returns the members bitwise", async () => {
    const { packEnsemble } = await import("../ts/model-file.js");
    const opts: GqaOptions = { embedDim: 3, hiddenSize: 8, numHeads: 2, numKvHeads: 1, numLayers: 1 };
    const a = await GQA.build({ ...opts, seed: 1, head: { type: "classification", numClasses: 3 } });
    const b = await GQA.build({ ...opts, seed: 2, head: { type: "classification", numClasses: 3 } });
    const digests = [a.weightsDigest(), b.weightsDigest()];
    expect(digests[0]).not.toBe(digests[1]);
    const file = packEnsemble([await a.save(), await b.save()]);
    const single = await a.save();
    a.dispose();
    b.dispose();
    await expectCode(() => GQA.load(file), "INVALID_INPUT", /GQA\.loadEnsemble.*ensemble of 2 models/);
    const members = await GQA.loadEnsemble(file);
    expect(members.map((m) => m.weightsDigest())).toEqual(digests);
    expect(members.map((m) => m.config.seed)).toEqual([1, 2]);
    expect(members.every((m) => m.head !== null)).toBe(true);
    for (const m of members) m.dispose();
    const one = await GQA.loadEnsemble(single);
    expect(one.map((m) => m.weightsDigest())).toEqual([digests[0]]);
    for (const m of one) m.dispose();
    // A broken layout: the count says 3, member 2 has no tensors.
    const broken = new Uint8Array(file);
    const text = new TextDecoder().decode(broken.subarray(8, 8 + Number(new DataView(broken.buffer).getBigUint64(0, true))));
    const patched = text.replace('"gqa_ensemble":"2"', '"gqa_ensemble":"3"');
    expect(patched).not.toBe(text);
    broken.set(new TextEncoder().encode(patched), 8);
    await expectCode(() => GQA.loadEnsemble(broken), "MALFORMED_FILE", /member 2 of 3/);
  });
});
