/**
 * Training through the TypeScript API on one backend (GQA_BACKEND; scripts/test.sh runs this file
 * once per backend): a synthetic task whose answer is known (which of two channels has the larger
 * mean), determinism of the loss curve, save/load of the head, errors with codes, and agreement of
 * the first training steps with the other backend.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { GQA, type BuildOptions, type Model, type StepReport } from "gqa";
import { expectCode, BACKEND, NO_WASM, OTHER } from "./helpers/expect.js";
import { mulberry32 } from "./helpers/random.js";


/** mulberry32 (test/helpers/random.ts): the data is the same on every run. */
const rng = mulberry32;


/** Standard normal by Box-Muller. */
function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/**
 * `n` sequences `[T=16, E=2]` of unit Gaussian noise; the channel named by the label has mean +1,
 * the other -1. Lengths vary in 8..16 and padded steps hold large junk (masked by the model).
 * With >= 8 steps the two channel means differ by 2 with std <= 0.5: the Bayes error is < 1e-4.
 */
function twoChannelTask(n: number, seed: number) {
  const r = rng(seed);
  const T = 16, E = 2;
  const x = new Float32Array(n * T * E);
  const lengths: number[] = [];
  const labels: number[] = [];
  const truth: number[] = [];
  for (let i = 0; i < n; i++) {
    const y = r() < 0.5 ? 0 : 1;
    const L = 8 + Math.floor(r() * 9);
    labels.push(y);
    lengths.push(L);
    let m0 = 0, m1 = 0;
    for (let t = 0; t < T; t++) {
      const valid = t < L;
      const a = valid ? gauss(r) + (y === 0 ? 1 : -1) : 1e3;
      const b = valid ? gauss(r) + (y === 1 ? 1 : -1) : -1e3;
      x[(i * T + t) * E] = a;
      x[(i * T + t) * E + 1] = b;
      if (valid) {
        m0 += a / L;
        m1 += b / L;
      }
    }
    truth.push(m0 > m1 ? 0 : 1);
  }
  return { x, dims: [n, T, E] as [number, number, number], lengths, labels, truth };
}

const TINY: BuildOptions = {
  embedDim: 2,
  hiddenSize: 16,
  numHeads: 2,
  numKvHeads: 1,
  numLayers: 1,
  dropout: 0,
  outputMode: "mean_pool",
  seed: 3,
  head: { type: "classification", numClasses: 2 },
};
const FIT = { epochs: 12, batchSize: 16, lr: 1e-2, seed: 5 };


describe(`training on backend=${BACKEND}`, () => {
  const train = twoChannelTask(192, 1);
  const test = twoChannelTask(256, 2);
  let model: Model;
  let history: Awaited<ReturnType<Model["fit"]>>;
  const steps: StepReport[] = [];
  const epochEnds: number[] = [];
  let ticks = 0;
  let fitSeconds = 0;

  beforeAll(async () => {
    await GQA.init();
    model = await GQA.build(TINY);
    const timer = setInterval(() => ticks++, 0);
    const t0 = performance.now();
    try {
      history = await model.fit(train, {
        ...FIT,
        onStep: (r) => void steps.push(r),
        onEpochEnd: (s) => void epochEnds.push(s.epoch),
        validation: test,
      });
    } finally {
      clearInterval(timer);
    }
    fitSeconds = (performance.now() - t0) / 1000;
  });
  afterAll(() => model?.dispose());

  it("learns which channel has the larger mean: >= 99% held-out accuracy, loss decreasing", async () => {
    expect(GQA.backend).toBe(BACKEND === "auto" ? GQA.backend : BACKEND);
    // The labels are the true answer of the task (means computed here agree with them).
    expect(test.truth).toEqual(test.labels);
    const ev = await model.evaluate(test, { batchSize: 50 });
    expect(ev.count).toBe(256);
    expect(ev.accuracy).toBeGreaterThanOrEqual(0.99);
    const e = history.epochs;
    expect(e.length).toBe(FIT.epochs);
    expect(e[e.length - 1]!.loss).toBeLessThan(0.25 * e[0]!.loss);
    expect(e[e.length - 1]!.valAccuracy).toBe(ev.accuracy);
    expect(e[e.length - 1]!.valLoss).toBeCloseTo(ev.loss, 6);
    // Mean loss over the last three epochs is below that of the first three.
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(e.slice(-3).map((x) => x.loss))).toBeLessThan(mean(e.slice(0, 3).map((x) => x.loss)));
    console.log(`[${BACKEND}] fit ${FIT.epochs} epochs in ${fitSeconds.toFixed(2)} s; held-out accuracy ${ev.accuracy}; loss ${e[0]!.loss.toFixed(4)} -> ${e[e.length - 1]!.loss.toFixed(4)}`);
  });

  it("reports every step in order and one summary per epoch; the event loop keeps running", () => {
    const spe = Math.ceil(192 / FIT.batchSize);
    expect(history.steps).toBe(spe * FIT.epochs);
    expect(steps.map((s) => s.globalStep)).toEqual(Array.from({ length: spe * FIT.epochs }, (_, i) => i));
    expect(steps.every((s) => s.stepsPerEpoch === spe && s.count === 16)).toBe(true);
    // Tokens of a step = sum of the batch's lengths; the epoch's batches cover all 192 sequences once.
    expect(steps.slice(0, spe).reduce((a, s) => a + s.tokens, 0)).toBe(train.lengths.reduce((a, b) => a + b, 0));
    expect(epochEnds).toEqual(Array.from({ length: FIT.epochs }, (_, i) => i + 1));
    const e0 = history.epochs[0]!;
    const first = steps.slice(0, spe);
    expect(e0.loss).toBeCloseTo(first.reduce((a, s) => a + s.loss * s.count, 0) / 192, 10);
    expect(e0.accuracy).toBeCloseTo(first.reduce((a, s) => a + s.correct, 0) / 192, 12);
    expect(e0.tokensPerSecond).toBeGreaterThan(0);
    // Warmup (10% of steps) then cosine decay to 0: the lr peaks at FIT.lr.
    expect(Math.max(...steps.map((s) => s.lr))).toBeCloseTo(FIT.lr, 12);
    // Timers ran while training (native: steps run off the main thread; wasm: the loop yields).
    expect(ticks).toBeGreaterThan(FIT.epochs);
  });

  it("predict returns class probabilities [B, 2] whose argmax is evaluate's prediction", async () => {
    const p = await model.predict(test.x, test.dims, { lengths: test.lengths });
    expect(p.dims).toEqual([256, 2]);
    const ev = await model.evaluate(test);
    for (let i = 0; i < 256; i++) {
      const [a, b] = [p.data[2 * i]!, p.data[2 * i + 1]!];
      expect(a).toBeGreaterThanOrEqual(0);
      expect(Math.abs(a + b - 1)).toBeLessThan(1e-6);
      expect(b > a ? 1 : 0).toBe(ev.predictions[i]);
    }
    // evaluate's loss is the mean cross-entropy -log p[label] of these probabilities.
    const ce = test.labels.reduce((s, y, i) => s - Math.log(p.data[2 * i + y]!), 0) / 256;
    expect(ev.loss).toBeCloseTo(ce, 4);
  });

  it("same seed: identical loss curve; another fit seed: a different one", async () => {
    const curve = async (seed: number) => {
      const m = await GQA.build({ ...TINY, dropout: 0.1 });
      const losses: number[] = [];
      await m.fit(train, { ...FIT, epochs: 2, seed, onStep: (r) => void losses.push(r.loss) });
      const digest = m.weightsDigest();
      m.dispose();
      return { losses, digest };
    };
    const a = await curve(11);
    const b = await curve(11);
    const c = await curve(12);
    expect(a.losses.length).toBe(24);
    expect(b.losses).toEqual(a.losses);
    expect(b.digest).toBe(a.digest);
    expect(c.losses).not.toEqual(a.losses);
  });

  it("save/load keeps the head and the predictions (bitwise)", async () => {
    const bytes = await model.save();
    const back = await GQA.load(bytes);
    try {
      expect(back.head).toEqual({ type: "classification", numClasses: 2 });
      expect(back.hasHead).toBe(true);
      expect(back.paramCount).toBe(model.paramCount);
      // Head parameters counted: W [2, 16] + b [2].
      const plain = await GQA.build({ ...TINY, head: undefined });
      expect(model.paramCount - plain.paramCount).toBe(2 * 16 + 2);
      plain.dispose();
      const x = test.x.subarray(0, 10 * 16 * 2);
      const a = await model.predict(x, [10, 16, 2], { lengths: test.lengths.slice(0, 10) });
      const b = await back.predict(x, [10, 16, 2], { lengths: test.lengths.slice(0, 10) });
      expect(Array.from(b.data)).toEqual(Array.from(a.data));
    } finally {
      back.dispose();
    }
  });

  it("a regression head learns the difference of the channel means (MSE and Huber)", async () => {
    const target = (d: ReturnType<typeof twoChannelTask>) =>
      d.lengths.map((L, i) => {
        let s = 0;
        for (let t = 0; t < L; t++) s += d.x[(i * 16 + t) * 2]! - d.x[(i * 16 + t) * 2 + 1]!;
        return [s / L];
      });
    for (const head of [{ type: "regression", outDim: 1 } as const, { type: "regression", outDim: 1, loss: "huber", huberDelta: 0.5 } as const]) {
      const m = await GQA.build({ ...TINY, head });
      const h = await m.fit({ ...train, labels: target(train) }, { ...FIT, epochs: 15 });
      expect(h.epochs[0]!.accuracy).toBeNull();
      const ev = await m.evaluate({ ...test, labels: target(test) });
      expect(ev.accuracy).toBeNull();
      expect(ev.predictions).toEqual([]);
      // Targets have variance ~4.3; the trained model explains most of it.
      expect(ev.loss).toBeLessThan(head.loss === "huber" ? 0.1 : 0.25);
      expect(ev.loss).toBeLessThan(h.epochs[0]!.loss);
      const p = await m.predict(test.x.subarray(0, 3 * 32), [3, 16, 2], { lengths: test.lengths.slice(0, 3) });
      expect(p.dims).toEqual([3, 1]);
      m.dispose();
    }
  });

  it("errors carry codes and name the problem", async () => {
    const small = twoChannelTask(8, 9);
    // Labels out of range for the head.
    await expectCode(() => model.fit({ ...small, labels: [0, 1, 2, 0, 1, 0, 1, 0] }, FIT), "INVALID_INPUT", /labels\[2\].*a class index in \[0, 2\)/);
    await expectCode(() => model.fit({ ...small, labels: [0, 1, -1, 0, 1, 0, 1, 0] }, FIT), "INVALID_INPUT", /labels\[2\]/);
    await expectCode(() => model.fit({ ...small, labels: [0, 1] }, FIT), "INVALID_INPUT", /labels/);
    await expectCode(() => model.fit({ ...small, lengths: [0, 1, 1, 1, 1, 1, 1, 1] }, FIT), "INVALID_INPUT", /lengths\[0\]/);
    await expectCode(() => model.fit({ ...small, dims: [8, 16, 3] }, FIT), "INVALID_INPUT", /data/);
    // Fit options are validated by the core.
    await expectCode(() => model.fit(small, { ...FIT, lr: -1 }), "INVALID_OPTION", /lr/);
    await expectCode(() => model.fit(small, { ...FIT, epochs: 0 }), "INVALID_OPTION", /epochs/);
    await expectCode(() => model.fit(small, { ...FIT, learningRate: 1 } as never), "INVALID_OPTION", /learningRate/);
    await expectCode(() => model.evaluate(small, { batchSize: 0 }), "INVALID_OPTION", /batchSize/);
    // No head: fit, evaluate and predict say so.
    const plain = await GQA.build({ ...TINY, head: undefined });
    expect(plain.head).toBeNull();
    await expectCode(() => plain.fit(small, FIT), "INVALID_OPTION", /head/);
    await expectCode(() => plain.evaluate(small), "INVALID_OPTION", /head/);
    await expectCode(() => plain.predict(small.x, small.dims), "INVALID_OPTION", /head/);
    plain.dispose();
    // Bad heads.
    await expectCode(() => GQA.build({ ...TINY, head: { type: "classification", numClasses: 1 } }), "INVALID_OPTION", /numClasses/);
    await expectCode(() => GQA.build({ ...TINY, head: { type: "regression", outDim: 0 } }), "INVALID_OPTION", /outDim/);
    await expectCode(() => GQA.build({ ...TINY, head: { type: "ranking" } as never }), "INVALID_OPTION", /head/);
    await expectCode(() => GQA.build({ ...TINY, outputMode: "all" }), "INVALID_OPTION", /outputMode/);
    // Class labels for a regression head are refused by kind (the core gets targets of the wrong size).
    const reg = await GQA.build({ ...TINY, head: { type: "regression", outDim: 2 } });
    await expectCode(() => reg.fit(small, FIT), "INVALID_INPUT", /labels/);
    reg.dispose();
    // A disposed model.
    const gone = await GQA.build(TINY);
    gone.dispose();
    await expectCode(() => gone.fit(small, FIT), "DISPOSED");
  });

  it("labelSmoothing: the first step's loss is PyTorch's smoothed cross-entropy of the model's own predictions", async () => {
    // One batch of all 24 sequences, no dropout, no shuffle: step 0 scores the initial weights, whose
    // class probabilities predict() returns. PyTorch's definition (mean reduction, C classes):
    // loss = mean_b [(1 - eps) (-log p_b,y) + eps/C sum_j (-log p_b,j)], computed here in f64.
    const d = twoChannelTask(24, 77);
    for (const eps of [0, 0.1, 0.3]) {
      const m = await GQA.build(TINY);
      try {
        const p = (await m.predict(d.x, d.dims, { lengths: d.lengths })).data;
        let want = 0;
        for (let b = 0; b < 24; b++) {
          const lp = [Math.log(p[2 * b]!), Math.log(p[2 * b + 1]!)];
          want += -(1 - eps) * lp[d.labels[b]!]! - (eps / 2) * (lp[0]! + lp[1]!);
        }
        want /= 24;
        const losses: number[] = [];
        await m.fit(d, { epochs: 1, batchSize: 24, lr: 1e-3, shuffle: false, ...(eps > 0 && { labelSmoothing: eps }), onStep: (r) => void losses.push(r.loss) });
        expect(losses.length).toBe(1);
        expect(Math.abs(losses[0]! - want), `eps ${eps}: step loss ${losses[0]} vs ${want}`).toBeLessThan(2e-6);
      } finally {
        m.dispose();
      }
    }
    const m = await GQA.build(TINY);
    await expectCode(() => m.fit(d, { ...FIT, labelSmoothing: 1 }), "INVALID_OPTION", /labelSmoothing/);
    await expectCode(() => m.fit(d, { ...FIT, labelSmoothing: -0.1 }), "INVALID_OPTION", /labelSmoothing/);
    // NaN and infinities are named before JSON would turn them into null.
    await expectCode(() => m.fit(d, { ...FIT, labelSmoothing: NaN }), "INVALID_OPTION", /`labelSmoothing`: expected a finite number, found NaN/);
    m.dispose();
    const reg = await GQA.build({ ...TINY, head: { type: "regression", outDim: 1 } });
    const targets = new Float32Array(d.labels.map((y) => y));
    await expectCode(() => reg.fit({ ...d, labels: targets }, { ...FIT, labelSmoothing: 0.1 }), "INVALID_OPTION", /labelSmoothing/);
    reg.dispose();
  });

  it.skipIf(NO_WASM)(`the first steps agree with the ${OTHER} backend (same seed: same weights, same batches)`, async () => {
    const run = async () => {
      const m = await GQA.build(TINY);
      const losses: number[] = [];
      await m.fit(train, { ...FIT, epochs: 1, onStep: (r) => void losses.push(r.loss) });
      const p = await m.predict(test.x, test.dims, { lengths: test.lengths });
      m.dispose();
      return { losses, p };
    };
    const mine = await run();
    try {
      await GQA.init({ backend: OTHER });
      expect(GQA.backend).toBe(OTHER);
      const other = await run();
      // Step 0 sees identical weights and batch: the losses agree to float rounding.
      expect(Math.abs(other.losses[0]! - mine.losses[0]!)).toBeLessThan(1e-5);
      for (let i = 0; i < mine.losses.length; i++) expect(Math.abs(other.losses[i]! - mine.losses[i]!)).toBeLessThan(1e-3);
      let maxDiff = 0;
      for (let i = 0; i < mine.p.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(mine.p.data[i]! - other.p.data[i]!));
      expect(maxDiff).toBeLessThan(1e-3);
    } finally {
      GQA.reset();
      await GQA.init();
    }
  });
});
