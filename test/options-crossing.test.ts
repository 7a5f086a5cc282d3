/**
 * Options, configs and reports cross the binding boundary as plain objects: TS
 * `coreOptions` copies the options, the binding converts the object field by field (napi-rs
 * `serde-json`, serde-wasm-bindgen) and the core reads it; configs and reports come back as
 * plain objects. These are the cases where JS values and JSON text differ, checked on each backend.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { GQA, type BuildOptions, type GqaOptions } from "gqa";
import { BACKEND, expectCode } from "./helpers/expect.js";

beforeAll(async () => {
  await GQA.init(BACKEND === "auto" ? {} : { backend: BACKEND });
});

const SMALL: GqaOptions = { embedDim: 3, hiddenSize: 8, numHeads: 2, numKvHeads: 1, numLayers: 1, dropout: 0 };

describe(`options crossing into the core on backend=${BACKEND}`, () => {
  it("a key whose value is undefined takes the option's default", async () => {
    const [a, b] = [await GQA.build({ ...SMALL, seed: undefined, outputMode: undefined } as GqaOptions), await GQA.build(SMALL)];
    try {
      expect(a.config).toEqual(b.config);
      expect(a.config.outputMode).toBe("last_timestep");
      expect(a.weightsDigest()).toBe(b.weightsDigest());
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it("configs and reports come back as plain objects with the values passed", async () => {
    // 5e9 is above u32::MAX: napi-rs hands it over as a float, which the core reads as the integer.
    const opts: BuildOptions = { ...SMALL, seed: 5e9, head: { type: "classification", numClasses: 3, classWeights: new Float32Array([0.1, 1, 2.5]) as unknown as number[] } };
    const m = await GQA.build(opts);
    try {
      expect(Object.getPrototypeOf(m.config)).toBe(Object.prototype);
      expect(m.config.seed).toBe(5e9);
      // f32 weights read back as the decimals passed (0.1, not 0.10000000149011612).
      expect(m.head).toEqual({ type: "classification", numClasses: 3, classWeights: [0.1, 1, 2.5] });
      const layout = GQA.parameterLayout(SMALL);
      expect(Array.isArray(layout) && Object.getPrototypeOf(layout[0])).toBe(Object.prototype);
      const x = new Float32Array(2 * 4 * 3).map((_, i) => Math.sin(i));
      const r = await m.evaluate({ x, dims: [2, 4, 3], labels: [0, 2] });
      expect(Object.getPrototypeOf(r)).toBe(Object.prototype);
      expect(r.count).toBe(2);
      expect(r.predictions).toHaveLength(2);
    } finally {
      m.dispose();
    }
    // A seed with a fractional part is no integer: refused, naming it.
    const e = await expectCode(() => GQA.build({ ...SMALL, seed: 2.5 }), "INVALID_OPTION");
    expect(e.option).toBe("seed");
    expect(e.found).toContain("2.5");
  });

  it("what JSON cannot hold is refused naming its path", async () => {
    const cases: [unknown, string, string][] = [
      [{ ...SMALL, dropout: Number.NaN }, "dropout", "NaN"],
      [{ ...SMALL, head: { type: "classification", numClasses: 2, classWeights: [1, Infinity] } }, "head.classWeights[1]", "Infinity"],
      [{ ...SMALL, seed: 7n }, "seed", "bigint"],
      [{ ...SMALL, rope: () => true }, "rope", "function"],
      [{ ...SMALL, head: { type: "classification", numClasses: 2, classWeights: [1, undefined] } }, "head.classWeights[1]", "undefined"],
    ];
    for (const [opts, option, found] of cases) {
      const e = await expectCode(() => GQA.build(opts as BuildOptions), "INVALID_OPTION");
      expect([e.option, e.found], String(option)).toEqual([option, found]);
    }
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 70; i++) deep = { inner: deep };
    const e = await expectCode(() => GQA.loadGqaAttention(new Uint8Array(8), { hfConfig: deep, layer: 0 }), "INVALID_OPTION");
    expect(e.option).toMatch(/^hfConfig(\.inner)+$/);
    expect(e.found).toBe("deeper nesting");
  });

  it("the core's errors still name nested fields and unknown options", async () => {
    const e1 = await expectCode(() => GQA.build({ ...SMALL, head: { type: "classification", numClases: 3 } } as unknown as BuildOptions), "INVALID_OPTION");
    expect(e1.option).toBe("head.numClases");
    // Inside the tagged head and ropeScaling objects too (serde gives no path there).
    const e4 = await expectCode(() => GQA.build({ ...SMALL, head: { type: "classification", numClasses: "3" } } as unknown as BuildOptions), "INVALID_OPTION");
    expect([e4.option, e4.expected, e4.found]).toEqual(["head.numClasses", "a non-negative integer", 'string "3"']);
    const e5 = await expectCode(() => GQA.build({ ...SMALL, head: { type: "regression", outDim: 2, loss: "l1" } } as unknown as BuildOptions), "INVALID_OPTION");
    expect(e5.option).toBe("head.loss");
    const e6 = await expectCode(() => GQA.build({ ...SMALL, rope: true, ropeScaling: { type: "linear", factor: "2" } } as unknown as BuildOptions), "INVALID_OPTION");
    expect(e6.option).toBe("ropeScaling.factor");
    const e2 = await expectCode(() => GQA.build({ ...SMALL, numKVHeads: 1 } as unknown as BuildOptions), "INVALID_OPTION");
    expect(e2.option).toBe("numKVHeads");
    const e3 = await expectCode(() => GQA.build({ ...SMALL, ropeScaling: { type: "sideways", factor: 2 } } as unknown as BuildOptions), "INVALID_OPTION");
    expect(e3.option).toBe("ropeScaling.type");
  });
});
