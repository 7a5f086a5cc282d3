/**
 * Robustness probes at the JavaScript edge, per backend (GQA_BACKEND). Where today's outcome
 * would be a signal or the death of the heap, the probe runs in a child `node` importing the
 * built package (dist/) and must exit 0 printing the typed outcome.
 *
 * What each test covers:
 * - inputs owned by the call: a resizable input buffer shrunk right after forward / predict /
 *   attention forward / push / fit returns (child process); a queued push or fit whose caller
 *   rewrites its buffers at once;
 * - array arguments checked by count before they are read: `{ length: 1e9 }` as lengths, labels,
 *   dims (child process);
 * - options are own enumerable keys only: a polluted `Object.prototype` changes nothing;
 * - one mutating call per model at a time: concurrent fits queue in call order (four concurrent
 *   fits = four sequential ones, bitwise), dispose after queued fits frees after them, forwards
 *   during a fit see whole steps;
 * - counts that would wrap: epochs x steps per epoch past 2^32-1 refused naming epochs (API and
 *   `gqa train --epochs 4294967296`);
 * - `session.length` over 300,000 rows;
 * - user errors that were INTERNAL: a detached input, a Proxy around a Float32Array, a NaN
 *   regression target, a 1e30 regression target;
 * - CLI: a failed output write leaves no half-written run directory; `--ensemble 1001` refused up
 *   front with the file format's limit;
 * - wasm: `GQA.init({ threads: 1024 })` refused before any worker starts (child process).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { GQA, type BuildOptions, type GqaOptions } from "gqa";
import { BACKEND, expectCode } from "./helpers/expect.js";
import { randomData } from "./helpers/random.js";

const backend = BACKEND === "auto" ? "native" : BACKEND;
const root = fileURLToPath(new URL("..", import.meta.url));
const dist = pathToFileURL(join(root, "dist", "index.js")).href;
const cli = join(root, "dist", "cli", "index.js");
const tmp = mkdtempSync(join(tmpdir(), "gqa-probes-"));

const TINY: GqaOptions = { embedDim: 3, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1, dropout: 0, seed: 7 };
const CLASSIFIER: BuildOptions = { ...TINY, head: { type: "classification", numClasses: 2 } };
const REGRESSOR: BuildOptions = { ...TINY, head: { type: "regression", outDim: 1 } };

beforeAll(async () => {
  await GQA.init({ backend });
  if (!existsSync(join(root, "dist", "index.js")) || !existsSync(cli)) {
    spawnSync(join(root, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: root, encoding: "utf8" });
  }
});

/** Runs an ES module script in a child `node` with the built package as `gqa`; returns its status and output. */
function child(body: string, timeoutMs = 60_000, env: Record<string, string> = {}): { code: number | null; signal: string | null; out: string; err: string } {
  const script = `import { GQA, GqaError } from ${JSON.stringify(dist)};\nconst backend = ${JSON.stringify(backend)};\n${body}`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: timeoutMs, env: { ...process.env, GQA_THREADS: process.env.GQA_THREADS ?? "1", ...env } });
  return { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

/** The last line of a child's stdout as JSON, after asserting it exited 0 without a signal. */
function result(r: ReturnType<typeof child>): any {
  expect({ code: r.code, signal: r.signal }, r.err.slice(-2000)).toEqual({ code: 0, signal: null });
  return JSON.parse(r.out.trim().split("\n").pop()!);
}

function data(n: number, t: number, e: number, seed: number) {
  return { x: randomData(n * t * e, seed), dims: [n, t, e] };
}

describe(`inputs are owned by the call (${backend})`, () => {
  it("a resizable input buffer shrunk right after forward, predict, attention forward, push and fit returns: each call completes with the values it was given", () => {
    const r = child(`
      await GQA.init({ backend });
      const cfg = { embedDim: 8, hiddenSize: 64, numHeads: 4, numKvHeads: 2, numLayers: 2, dropout: 0, seed: 1 };
      const m = await GQA.build({ ...cfg, head: { type: "classification", numClasses: 2 } });
      const layer = await GQA.buildGqaAttention({ hiddenSize: 64, numHeads: 4, numKvHeads: 2 });
      const n = 4 * 64 * 8;
      const fill = (k) => { const ab = new ArrayBuffer(k * 4, { maxByteLength: k * 4 }); const x = new Float32Array(ab); for (let i = 0; i < k; i++) x[i] = Math.sin(i * 0.1); return [ab, x]; };
      const same = [];
      for (let round = 0; round < 20; round++) {
        const [ab1, x1] = fill(n); const ref = Array.from((await m.forward(Float32Array.from(x1), [4, 64, 8])).data);
        const p1 = m.forward(x1, [4, 64, 8]); ab1.resize(0);
        const [ab2, x2] = fill(n); const p2 = m.predict(x2, [4, 64, 8]); ab2.resize(0);
        const [ab3, x3] = fill(4 * 8 * 64); const p3 = layer.forward(x3, [4, 8, 64]); ab3.resize(0);
        const s = await m.session({ batch: 4, maxLen: 64 });
        const [ab4, x4] = fill(n); const p4 = s.push(x4, [4, 64, 8]); ab4.resize(0);
        const [ab5, x5] = fill(n); const p5 = s.push(x5, [4, 64, 8]).catch((e) => e.code); ab5.resize(0);
        const y = await p1; await p2; await p3; await p4; await p5; s.dispose();
        same.push(JSON.stringify(Array.from(y.data)) === JSON.stringify(ref));
      }
      const [ab6, x6] = fill(n);
      const fit = m.fit({ x: x6, dims: [4, 64, 8], labels: new Uint32Array([0, 1, 0, 1]) }, { epochs: 1, batchSize: 4 }); ab6.resize(0);
      const h = await fit;
      console.log(JSON.stringify({ same, steps: h.steps }));
    `);
    const out = result(r);
    expect(out.same).toEqual(Array(20).fill(true));
    expect(out.steps).toBe(1);
  });

  it("a queued push or fit keeps the values it was called with when the caller rewrites its buffers at once", async () => {
    const m = await GQA.build(CLASSIFIER);
    const x = randomData(2 * 4 * 3, 1);
    const ref = await (await m.session({ batch: 2, maxLen: 8 })).push(x.slice(), [2, 4, 3]);
    const s = await m.session({ batch: 2, maxLen: 16 });
    const buf = x.slice();
    const first = s.push(randomData(2 * 4 * 3, 2), [2, 4, 3]);
    const second = s.push(buf, [2, 4, 3]); // waits behind `first`
    buf.fill(Number.NaN);
    await first;
    const got = await second;
    expect(Array.from(got.data).every(Number.isFinite)).toBe(true);
    s.dispose();
    expect(ref.dims).toEqual(got.dims);

    // Two fits: the second, queued, trains on its data as given, not as rewritten afterwards.
    const d = data(4, 4, 3, 3);
    const labels = new Uint32Array([0, 1, 0, 1]);
    const a = await GQA.build(CLASSIFIER);
    await a.fit({ ...d, labels }, { epochs: 1, batchSize: 2 });
    await a.fit({ ...d, labels }, { epochs: 1, batchSize: 2 });
    const b = await GQA.build(CLASSIFIER);
    const x2 = d.x.slice();
    const f1 = b.fit({ ...d, labels }, { epochs: 1, batchSize: 2 });
    const f2 = b.fit({ x: x2, dims: d.dims, labels }, { epochs: 1, batchSize: 2 });
    x2.fill(Number.NaN);
    await f1;
    await f2;
    expect(b.weightsDigest()).toBe(a.weightsDigest());
    for (const z of [m, a, b]) z.dispose();
  });
});

describe(`array arguments are checked by count before they are read (${backend})`, () => {
  it("{ length: 1e9 } as lengths, labels or dims is refused with INVALID_INPUT naming it, without iterating", () => {
    const r = child(`
      await GQA.init({ backend });
      const m = await GQA.build({ embedDim: 3, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1, dropout: 0, head: { type: "classification", numClasses: 2 } });
      const reg = await GQA.build({ embedDim: 3, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1, dropout: 0, head: { type: "regression", outDim: 2 } });
      const x = new Float32Array(2 * 4 * 3);
      const huge = { length: 1e9 };
      const sparse = []; sparse.length = 1e9;
      const out = {};
      const probe = async (name, f) => { const t = Date.now(); try { await f(); out[name] = "resolved"; } catch (e) { out[name] = [e instanceof GqaError ? e.code : String(e), e.what, e.expected, e.found, Date.now() - t]; } };
      await probe("forward.lengths", () => m.forward(x, [2, 4, 3], { lengths: huge }));
      await probe("predict.lengths", () => m.predict(x, [2, 4, 3], { lengths: huge }));
      await probe("attentionMaps.lengths", () => m.attentionMaps(x, [2, 4, 3], { lengths: huge }));
      await probe("forward.dims", () => m.forward(x, sparse));
      const s = await m.session({ batch: 2, maxLen: 8 });
      await probe("push.lengths", () => s.push(x, [2, 4, 3], { lengths: sparse }));
      await probe("push.dims", () => s.push(x, sparse));
      await probe("fit.lengths", () => m.fit({ x, dims: [2, 4, 3], lengths: huge, labels: [0, 1] }, { epochs: 1 }));
      await probe("fit.labels", () => m.fit({ x, dims: [2, 4, 3], labels: huge }, { epochs: 1 }));
      await probe("fit.regressionLabels", () => reg.fit({ x, dims: [2, 4, 3], labels: huge }, { epochs: 1 }));
      await probe("fit.dims", () => m.fit({ x, dims: huge, labels: [0, 1] }, { epochs: 1 }));
      await probe("evaluate.labels", () => m.evaluate({ x, dims: [2, 4, 3], labels: huge }));
      await probe("validation.labels", () => m.fit({ x, dims: [2, 4, 3], labels: [0, 1] }, { epochs: 1, validation: { x, dims: [2, 4, 3], labels: huge } }));
      console.log(JSON.stringify(out));
    `);
    const out = result(r);
    const want: Record<string, [string, RegExp, RegExp]> = {
      "forward.lengths": ["lengths", /^2 lengths/, /^1000000000 lengths$/],
      "predict.lengths": ["lengths", /^2 lengths/, /^1000000000 lengths$/],
      "attentionMaps.lengths": ["lengths", /^2 lengths/, /^1000000000 lengths$/],
      "forward.dims": ["dims", /3 dims/, /^1000000000 dims$/],
      "push.lengths": ["row_lengths", /^2 values/, /^1000000000 values$/],
      "push.dims": ["dims", /3 dims/, /^1000000000 dims$/],
      "fit.lengths": ["data.lengths", /^2 lengths/, /^1000000000 lengths$/],
      "fit.labels": ["data.labels", /^2 class labels/, /^1000000000 class labels$/],
      "fit.regressionLabels": ["data.labels", /^4 regression targets/, /^1000000000 regression targets$/],
      "fit.dims": ["data.dims", /\[N, T, E\]/, /1000000000/],
      "evaluate.labels": ["data.labels", /^2 class labels/, /^1000000000 class labels$/],
      "validation.labels": ["validation.labels", /^2 class labels/, /^1000000000 class labels$/],
    };
    for (const [name, [what, expected, found]] of Object.entries(want)) {
      const [code, w, e, f, ms] = out[name];
      expect([name, code, w]).toEqual([name, "INVALID_INPUT", what]);
      expect(e, name).toMatch(expected);
      expect(f, name).toMatch(found);
      expect(ms, `${name} took ${ms} ms`).toBeLessThan(1000);
    }
  });

  it("a lengths array of the wrong count names the expected and found counts, as the core words it", async () => {
    const m = await GQA.build(TINY);
    const x = randomData(2 * 4 * 3, 1);
    const e = await expectCode(() => m.forward(x, [2, 4, 3], { lengths: [4, 4, 4] }), "INVALID_INPUT");
    expect([e.what, e.expected, e.found]).toEqual(["lengths", "2 lengths (one per sequence)", "3 lengths"]);
    m.dispose();
  });
});

describe(`options are read from own enumerable keys only (${backend})`, () => {
  const proto = Object.prototype as Record<string, unknown>;
  afterEach(() => {
    for (const k of ["hiddenSize", "numLayers", "epochs", "lengths", "head", "strict"]) delete proto[k];
  });

  it("a polluted Object.prototype changes no model, head, fit or forward option", async () => {
    const clean = await GQA.build(CLASSIFIER);
    const x = randomData(2 * 4 * 3, 5);
    const d = { x: randomData(4 * 4 * 3, 6), dims: [4, 4, 3], labels: new Uint32Array([0, 1, 1, 0]) };
    const yClean = await clean.forward(x, [2, 4, 3]);
    const hClean = await clean.fit(d, { epochs: 2, batchSize: 2 });
    const bytes = await clean.save();
    clean.dispose();
    try {
      proto.hiddenSize = 8;
      proto.numLayers = 3;
      proto.epochs = 5;
      proto.lengths = [1, 1];
      const m = await GQA.build(CLASSIFIER);
      expect(m.config.hiddenSize).toBe(16);
      expect(m.config.numLayers).toBe(1);
      expect(GQA.paramCount(TINY, { exact: true })).toBe(m.paramCount - (16 * 2 + 2));
      const y = await m.forward(x, [2, 4, 3]);
      expect(Array.from(y.data)).toEqual(Array.from(yClean.data));
      const h = await m.fit(d, { batchSize: 2, epochs: 2 });
      expect(h.epochs.map((e) => e.loss)).toEqual(hClean.epochs.map((e) => e.loss));
      const loaded = await GQA.load(bytes);
      expect(loaded.config.hiddenSize).toBe(16);
      loaded.dispose();
      m.dispose();
    } finally {
      for (const k of ["hiddenSize", "numLayers", "epochs", "lengths"]) delete proto[k];
    }
  });
});

describe(`one mutating call per model at a time (${backend})`, () => {
  const d = { x: randomData(8 * 6 * 3, 11), dims: [8, 6, 3], labels: new Uint32Array([0, 1, 1, 0, 1, 0, 0, 1]) };
  const opts = { epochs: 2, batchSize: 2, seed: 3 };

  it("four concurrent fits with the same data and seed give the weights of four sequential fits, bitwise", async () => {
    const seq = await GQA.build(CLASSIFIER);
    for (let i = 0; i < 4; i++) await seq.fit(d, opts);
    const par = await GQA.build(CLASSIFIER);
    const order: number[] = [];
    const hs = await Promise.all([0, 1, 2, 3].map((i) => par.fit(d, { ...opts, onStep: () => void order.push(i) })));
    expect(hs.map((h) => h.steps)).toEqual([8, 8, 8, 8]);
    expect(order).toEqual([0, 1, 2, 3].flatMap((i) => Array(8).fill(i))); // whole fits, in call order
    expect(par.weightsDigest()).toBe(seq.weightsDigest());
    seq.dispose();
    par.dispose();
  });

  it("forwards started during concurrent fits see the weights before or after a step, never a mix", async () => {
    const m = await GQA.build(CLASSIFIER);
    const x = randomData(2 * 6 * 3, 12);
    const snapshots: Uint8Array[] = [await m.save()];
    const snap = async () => void snapshots.push(await m.save());
    const fits = [m.fit(d, { ...opts, onStep: snap }), m.fit(d, { ...opts, onStep: snap })];
    const seen: Promise<string>[] = [];
    for (let i = 0; i < 24; i++) {
      seen.push(m.forward(x, [2, 6, 3]).then((y) => JSON.stringify(Array.from(y.data))));
      await new Promise((r) => setTimeout(r, 0));
    }
    await Promise.all(fits);
    const outs = await Promise.all(seen);
    expect(snapshots.length).toBe(17);
    const whole = new Set<string>();
    for (const bytes of snapshots) {
      const s = await GQA.load(bytes);
      whole.add(JSON.stringify(Array.from((await s.forward(x, [2, 6, 3])).data)));
      s.dispose();
    }
    for (const o of outs) expect(whole.has(o)).toBe(true);
    m.dispose();
  });

  it("dispose after queued fits lets them finish in order and then frees; a fit after dispose is DISPOSED", async () => {
    const start = GQA.memory!.inUse;
    const m = await GQA.build(CLASSIFIER);
    const fits = [m.fit(d, opts), m.fit(d, opts)];
    m.dispose();
    expect(m.disposed).toBe(true);
    await expectCode(() => m.fit(d, opts), "DISPOSED");
    await expectCode(() => m.forward(d.x, d.dims), "DISPOSED");
    const hs = await Promise.all(fits);
    expect(hs.map((h) => h.steps)).toEqual([8, 8]);
    await new Promise((r) => setTimeout(r, 0));
    expect(GQA.memory!.inUse).toBe(start);
  });
});

describe(`counts that would wrap are refused (${backend})`, () => {
  it("fit with epochs x steps per epoch past 2^32-1 is INVALID_OPTION naming epochs and the limit, and trains nothing", async () => {
    const m = await GQA.build(CLASSIFIER);
    const d = { x: randomData(16 * 2 * 3, 1), dims: [16, 2, 3], labels: new Uint32Array(16).map((_, i) => i % 2) };
    const digest = m.weightsDigest();
    const e = await expectCode(() => m.fit(d, { epochs: 2 ** 28, batchSize: 1 }), "INVALID_OPTION");
    expect(e.option).toBe("epochs");
    expect(e.expected).toBe("at most 268435455 epochs (16 steps per epoch; a run takes at most 4294967295 steps)");
    expect(e.found).toMatch(/268435456/);
    // Past 2^32-1 epochs (which wasm32's usize cannot hold): the same message.
    const big = await expectCode(() => m.fit(d, { epochs: 2 ** 32, batchSize: 1 }), "INVALID_OPTION");
    expect([big.option, big.expected, big.found]).toEqual(["epochs", e.expected, "4294967296"]);
    expect(m.weightsDigest()).toBe(digest);
    // Just under the limit is accepted (one step taken, then stopped by a failing callback).
    const last = await m
      .fit(d, {
        epochs: 268435455,
        batchSize: 1,
        onStep: () => {
          throw new Error("stop");
        },
      })
      .catch((err: Error) => err.message);
    expect(last).toBe("stop");
    m.dispose();
  });

  it("gqa train --epochs 4294967296 fails with the epochs limit instead of reporting success", () => {
    const out = join(tmp, "epochs");
    const r = spawnSync(process.execPath, [cli, "train", "--data", join(root, "test", "fixtures-data", "good_small.ts"), "--hidden-size", "8", "--num-heads", "2", "--num-kv-heads", "1", "--num-layers", "1", "--batch-size", "1", "--epochs", "4294967296", "--no-progress", "--out", out], {
      encoding: "utf8",
      cwd: root,
      env: { ...process.env, GQA_BACKEND: backend },
      timeout: 120_000,
    });
    expect(r.stdout).not.toMatch(/trained/);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/error: INVALID_OPTION: .*epochs.*at most 1431655765 epochs \(3 steps per epoch; a run takes at most 4294967295 steps\)/);
    expect(existsSync(join(out, "model.safetensors"))).toBe(false);
  });
});

describe(`session.length over many rows (${backend})`, () => {
  it("a session of 300,000 rows reports its length and lengths after pushes in chunks", async () => {
    const m = await GQA.build({ embedDim: 2, hiddenSize: 8, numHeads: 2, numKvHeads: 1, numLayers: 1, dropout: 0 });
    const B = 300_000;
    const s = await m.session({ batch: B, maxLen: 4 });
    expect(s.length).toBe(0);
    const chunk = randomData(B * 1 * 2, 3);
    await s.push(chunk, [B, 1, 2]);
    const lengths = Array.from({ length: B }, (_, i) => i % 2);
    await s.push(chunk, [B, 1, 2], { lengths });
    expect(s.length).toBe(2);
    const ls = s.lengths;
    expect(ls.length).toBe(B);
    expect([ls[0], ls[1], ls[B - 1]]).toEqual([1, 2, 2]);
    s.dispose();
    m.dispose();
  }, 60_000);
});

describe(`user errors are INVALID_INPUT, not INTERNAL (${backend})`, () => {
  it("a detached input is refused naming the argument on forward, predict, push, fit and evaluate", async () => {
    const m = await GQA.build(CLASSIFIER);
    const detached = () => {
      const x = randomData(2 * 4 * 3, 1);
      structuredClone(x.buffer, { transfer: [x.buffer] });
      return x;
    };
    const re = /detached/;
    for (const [name, f] of [
      ["forward", () => m.forward(detached(), [2, 4, 3])],
      ["forwardSync", () => m.forwardSync(detached(), [2, 4, 3])],
      ["predict", () => m.predict(detached(), [2, 4, 3])],
      ["attentionMaps", () => m.attentionMaps(detached(), [2, 4, 3])],
    ] as const) {
      const e = await expectCode(f, "INVALID_INPUT", re);
      expect([name, e.what]).toEqual([name, "input"]);
    }
    const s = await m.session({ batch: 2, maxLen: 8 });
    expect((await expectCode(() => s.push(detached(), [2, 4, 3]), "INVALID_INPUT", re)).what).toBe("input");
    s.dispose();
    const labels = new Uint32Array([0, 1]);
    expect((await expectCode(() => m.fit({ x: detached(), dims: [2, 4, 3], labels }, { epochs: 1 }), "INVALID_INPUT", re)).what).toBe("data.x");
    expect((await expectCode(() => m.evaluate({ x: detached(), dims: [2, 4, 3], labels }), "INVALID_INPUT", re)).what).toBe("data.x");
    m.dispose();
  });

  it("a Proxy around a Float32Array is refused naming the argument", async () => {
    const m = await GQA.build(CLASSIFIER);
    const p = new Proxy(randomData(2 * 4 * 3, 1), {});
    expect(p instanceof Float32Array).toBe(true);
    for (const f of [() => m.forward(p, [2, 4, 3]), () => m.predict(p, [2, 4, 3]), () => m.forwardSync(p, [2, 4, 3])]) {
      const e = await expectCode(f, "INVALID_INPUT", /Proxy/);
      expect(e.what).toBe("input");
    }
    const s = await m.session({ batch: 2, maxLen: 8 });
    await expectCode(() => s.push(p, [2, 4, 3]), "INVALID_INPUT", /Proxy/);
    s.dispose();
    expect((await expectCode(() => m.fit({ x: p, dims: [2, 4, 3], labels: [0, 1] }, { epochs: 1 }), "INVALID_INPUT", /Proxy/)).what).toBe("data.x");
    m.dispose();
  });

  it("a NaN, infinite or 1e30 regression target is refused naming the label, for fit and evaluate", async () => {
    const m = await GQA.build(REGRESSOR);
    const x = randomData(4 * 3 * 3, 2);
    for (const [bad, shown] of [
      [Number.NaN, /NaN/],
      [Number.POSITIVE_INFINITY, /inf/],
      [1e30, /1e\+?30|1000000000000000000000000000000|1\.0000000150474662e30/],
      [-1e30, /-/],
    ] as const) {
      const labels = new Float32Array([0.5, -0.5, bad, 1]);
      const e = await expectCode(() => m.fit({ x, dims: [4, 3, 3], labels }, { epochs: 1 }), "INVALID_INPUT");
      expect(e.what).toBe("labels[2]");
      expect(e.expected).toMatch(/finite regression target with magnitude <= 1e15/);
      expect(e.found).toMatch(shown);
      expect((await expectCode(() => m.evaluate({ x, dims: [4, 3, 3], labels }), "INVALID_INPUT")).what).toBe("labels[2]");
    }
    // 1e15 itself is accepted and trains to a finite loss.
    const h = await m.fit({ x, dims: [4, 3, 3], labels: new Float32Array([1e15, -1e15, 0, 1]) }, { epochs: 1 });
    expect(Number.isFinite(h.epochs[0]!.loss)).toBe(true);
    m.dispose();
  });
});

describe(`gqa train outputs (${backend})`, () => {
  const train = (...args: string[]) =>
    spawnSync(process.execPath, [cli, "train", "--data", join(root, "test", "fixtures-data", "good_small.ts"), "--hidden-size", "8", "--num-heads", "2", "--num-kv-heads", "1", "--num-layers", "1", "--epochs", "1", "--no-progress", ...args], {
      encoding: "utf8",
      cwd: root,
      env: { ...process.env, GQA_BACKEND: backend },
      timeout: 120_000,
    });

  it("a write error (metrics.json is a directory) leaves no model, no metrics and no temporary file", () => {
    const out = join(tmp, "blocked");
    mkdirSync(join(out, "metrics.json"), { recursive: true });
    const r = train("--out", out);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/error: cannot write .*metrics\.json: it exists and is a directory; no output was written/);
    expect(readdirSync(out).sort()).toEqual(["metrics.json"]);
    // The same run into a free directory writes all three.
    const ok = join(tmp, "free");
    const r2 = train("--out", ok);
    expect(r2.status, r2.stderr).toBe(0);
    expect(readdirSync(ok).sort()).toEqual(["metrics.json", "model.safetensors", "training-curve.svg"]);
  });

  it("--ensemble 1001 is refused before training with the model file's limit of 1000 members", () => {
    const out = join(tmp, "ensemble");
    const t = Date.now();
    const r = train("--ensemble", "1001", "--out", out);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--ensemble.*expected at most 1000 members \(the model file's limit/);
    expect(existsSync(out)).toBe(false);
    expect(Date.now() - t).toBeLessThan(30_000);
  });
});

describe(`wasm thread count (${backend})`, () => {
  it("GQA.init({ backend: 'wasm', threads: 1024 }) is refused before any worker starts; 256 too, naming the 255 limit", (ctx) => {
    if (!existsSync(join(root, "bindings", "wasm", "pkg-threads", "gqa_wasm_bg.wasm"))) ctx.skip("the threaded wasm module is not built");
    const r = child(
      `
      const out = [];
      for (const threads of [1024, 256]) {
        const t = Date.now();
        try { await GQA.init({ backend: "wasm", threads }); out.push("loaded"); } catch (e) { out.push([e.code, e.option, e.expected, e.found, Date.now() - t]); }
      }
      console.log(JSON.stringify(out));
      process.exit(0);
    `,
      30_000,
    );
    const out = result(r);
    for (const [i, n] of [1024, 256].entries()) {
      const [code, option, expected, found, ms] = out[i];
      expect([code, option, found]).toEqual(["INVALID_OPTION", "threads", String(n)]);
      expect(expected).toMatch(/\[1, 255\]/);
      expect(ms).toBeLessThan(5000);
    }
  });
});
