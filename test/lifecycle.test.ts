/**
 * dispose() while async work of the same object is in flight, on one backend (GQA_BACKEND;
 * scripts/test.sh runs this file with `native` and with `wasm`): dispose never throws and marks
 * the object disposed at once, a call already started completes with the result it would have had
 * (or rejects with DISPOSED, if it had not reached the backend yet), a second dispose is a no-op,
 * and later calls reject with DISPOSED.
 */
import { beforeAll, describe, expect, it } from "vitest";

import { GQA, GqaError, type Tensor } from "gqa";
import { expectCode, BACKEND } from "./helpers/expect.js";
import { randomData } from "./helpers/safetensors.js";

const OPTS = { embedDim: 6, hiddenSize: 32, numHeads: 4, numKvHeads: 2, numLayers: 2, seed: 9 };
const B = 4;
const T = 48;

/** The in-flight call's outcome: its result, or DISPOSED (never another error). */
async function settle(p: Promise<Tensor>): Promise<Tensor | "DISPOSED"> {
  try {
    return await p;
  } catch (e) {
    expect(e).toBeInstanceOf(GqaError);
    expect((e as GqaError).code).toBe("DISPOSED");
    return "DISPOSED";
  }
}

function expectSame(got: Tensor | "DISPOSED", want: Tensor): void {
  if (got === "DISPOSED") return;
  expect(got.dims).toEqual(want.dims);
  expect(Array.from(got.data)).toEqual(Array.from(want.data));
}

describe(`dispose during async work (${BACKEND})`, () => {
  beforeAll(async () => {
    await GQA.init(BACKEND === "auto" ? {} : { backend: BACKEND });
  });

  const x = randomData(B * T * OPTS.embedDim, 21);

  it("model: forward and predict in flight", async () => {
    const m = await GQA.build({ ...OPTS, head: { type: "classification", numClasses: 3 } });
    const want = await m.forward(x, [B, T, OPTS.embedDim]);
    const wantP = await m.predict(x, [B, T, OPTS.embedDim]);
    const inFlight = [m.forward(x, [B, T, OPTS.embedDim]), m.forward(x, [B, T, OPTS.embedDim])];
    const inFlightP = m.predict(x, [B, T, OPTS.embedDim]);
    expect(() => m.dispose()).not.toThrow();
    expect(m.disposed).toBe(true);
    for (const p of inFlight) expectSame(await settle(p), want);
    expectSame(await settle(inFlightP), wantP);
    expect(() => m.dispose()).not.toThrow();
    await expectCode(() => m.forward(x, [B, T, OPTS.embedDim]), "DISPOSED");
  });

  it("session: push in flight", async () => {
    const m = await GQA.build(OPTS);
    const ref = await m.session({ batch: B, maxLen: T });
    const want = await ref.push(x, [B, T, OPTS.embedDim]);
    ref.dispose();
    const s = await m.session({ batch: B, maxLen: T });
    const p = s.push(x, [B, T, OPTS.embedDim]);
    expect(() => s.dispose()).not.toThrow();
    expect(s.disposed).toBe(true);
    expectSame(await settle(p), want);
    expect(() => s.dispose()).not.toThrow();
    await expectCode(() => s.push(x, [B, 1, OPTS.embedDim]), "DISPOSED");
    // The model outlives its disposed session.
    expect((await m.forward(x, [B, T, OPTS.embedDim])).dims).toEqual([B, 32]);
    m.dispose();
  });

  it("model disposed while its session pushes: the session keeps working", async () => {
    const m = await GQA.build(OPTS);
    const s = await m.session({ batch: B, maxLen: 2 * T });
    const p = s.push(x, [B, T, OPTS.embedDim]);
    expect(() => m.dispose()).not.toThrow();
    expect((await p).dims).toEqual([B, 32]);
    expect((await s.push(x, [B, T, OPTS.embedDim])).dims).toEqual([B, 32]);
    s.dispose();
  });

  it("attention layer: forward in flight", async () => {
    const layer = await GQA.buildGqaAttention({ hiddenSize: 32, numHeads: 4, numKvHeads: 2, seed: 2 });
    const a = randomData(B * T * 32, 5);
    const want = await layer.forward(a, [B, T, 32]);
    const p = layer.forward(a, [B, T, 32]);
    expect(() => layer.dispose()).not.toThrow();
    expect(layer.disposed).toBe(true);
    expectSame(await settle(p), want);
    expect(() => layer.dispose()).not.toThrow();
    await expectCode(() => layer.forward(a, [B, T, 32]), "DISPOSED");
  });

  it("fit in flight: dispose does not throw; the run ends or rejects with DISPOSED", async () => {
    const m = await GQA.build({ ...OPTS, head: { type: "classification", numClasses: 2 } });
    const n = 16;
    const data = { x: randomData(n * T * OPTS.embedDim, 3), dims: [n, T, OPTS.embedDim], labels: Array.from({ length: n }, (_, i) => i % 2) };
    const run = m.fit(data, { epochs: 3, batchSize: 4 });
    expect(() => m.dispose()).not.toThrow();
    expect(m.disposed).toBe(true);
    try {
      await run;
    } catch (e) {
      expect(e).toBeInstanceOf(GqaError);
      expect((e as GqaError).code).toBe("DISPOSED");
    }
    await expectCode(() => m.forward(x, [B, T, OPTS.embedDim]), "DISPOSED");
  });
});
