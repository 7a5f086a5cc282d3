/**
 * The two wasm modules (`bindings/wasm/pkg`, single-threaded; `bindings/wasm/pkg-threads`,
 * shared memory and a rayon pool on worker_threads): which one `GQA.init` loads, the thread
 * counts each accepts, and bitwise-equal results between them (forward, all positions, padded
 * lengths, KV-cache session, predict, training steps), and a Node process that used the threaded
 * module exiting on its own. Runs in the wasm pass of the suite.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

import { GQA, type BuildOptions } from "gqa";
import { randomData } from "./helpers/safetensors.js";
import { expectCode, BACKEND } from "./helpers/expect.js";

const OPTS: BuildOptions = { embedDim: 23, hiddenSize: 64, numHeads: 8, numKvHeads: 2, numLayers: 2, rope: true, seed: 9 };

/** Everything one module computes for the same inputs. */
async function run() {
  const dims = [4, 41, 23];
  const x = randomData(4 * 41 * 23, 3);
  const lengths = [41, 7, 30, 1];
  const model = await GQA.build({ ...OPTS, head: { type: "classification", numClasses: 3 } } as BuildOptions);
  const last = (await model.forward(x, dims, { lengths })).data;
  const all = await GQA.build({ ...OPTS, outputMode: "all" });
  const allOut = (await all.forward(x, dims, { lengths })).data;
  const s = await all.session({ maxLen: 64, batch: 4 });
  await s.push(x, dims);
  const push = (await s.push(x.subarray(0, 4 * 23), [4, 1, 23])).data;
  s.dispose();
  all.dispose();
  const probs = (await model.predict(x, dims, { lengths })).data;
  const losses: number[] = [];
  await model.fit(
    { x, dims: dims as [number, number, number], lengths, labels: [0, 1, 2, 1] },
    { epochs: 3, batchSize: 2, lr: 1e-3, seed: 5, onStep: (r) => void losses.push(r.loss) },
  );
  const digest = model.weightsDigest();
  model.dispose();
  return { last, allOut, push, probs, losses, digest };
}

const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

describe.skipIf(BACKEND !== "wasm")("wasm modules: single-threaded and threaded", () => {
  it("threads: 1 loads the single-threaded module, more loads the threaded one (Node)", async () => {
    GQA.reset();
    await GQA.init({ backend: "wasm", threads: 1 });
    expect(GQA.variant).toBe("wasm");
    expect(GQA.backendFile).toMatch(/[/\\]pkg[/\\]gqa_wasm_bg\.wasm$/);
    expect(GQA.threads).toBe(1);
    GQA.reset();
    await GQA.init({ backend: "wasm", threads: 2 });
    expect(GQA.variant).toBe("wasm-threads");
    expect(GQA.backendFile).toMatch(/[/\\]pkg-threads[/\\]gqa_wasm_bg\.wasm$/);
    expect(GQA.threads).toBe(2);
    await GQA.init({ threads: 1 });
    expect(GQA.threads).toBe(1);
    await GQA.init({ threads: 2 });
    // The pool's size is fixed when the module starts: more threads than workers is refused.
    await expectCode(() => GQA.init({ threads: 3 }), "INVALID_OPTION", /`threads`.*an integer in \[1, 2\]/);
    expect(GQA.threads).toBe(2);
    GQA.reset();
  });

  it("both modules, and 1 or 2 threads of the threaded one, give bitwise the same results", async () => {
    GQA.reset();
    await GQA.init({ backend: "wasm", threads: 1 });
    const single = await run();
    GQA.reset();
    await GQA.init({ backend: "wasm", threads: 2 });
    expect(GQA.variant).toBe("wasm-threads");
    const threaded = await run();
    await GQA.init({ threads: 1 });
    const threadedOne = await run();
    await GQA.init({ threads: 2 });
    GQA.reset();
    expect(single.last.some((v) => v !== 0)).toBe(true);
    expect(single.losses.length).toBe(6);
    for (const other of [threaded, threadedOne]) {
      expect(same(other.last, single.last)).toBe(true);
      expect(same(other.allOut, single.allOut)).toBe(true);
      expect(same(other.push, single.push)).toBe(true);
      expect(same(other.probs, single.probs)).toBe(true);
      expect(other.losses).toEqual(single.losses);
      expect(other.digest).toBe(single.digest);
    }
  });

  it("a Node process that ran the threaded module exits on its own (workers unref'd)", () => {
    const dist = new URL("../dist/index.js", import.meta.url).href;
    const script = `
      const { GQA } = await import(${JSON.stringify(dist)});
      await GQA.init({ backend: "wasm", threads: 2 });
      const m = await GQA.build({ embedDim: 6, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1 });
      const y = await m.forward(new Float32Array(2 * 30 * 6).fill(0.5), [2, 30, 6]);
      m.dispose();
      console.log(GQA.variant, GQA.threads, y.dims.join("x"));`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000, cwd: fileURLToPath(new URL("..", import.meta.url)) });
    expect(r.error, "the process did not exit within 60 s").toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("wasm-threads 2 2x16");
  });

  it("relaxed-SIMD modules (Node with --experimental-wasm-relaxed-simd): picked when validated, within 1e-5 of plain simd128, threaded = single bitwise", () => {
    const dist = new URL("../dist/index.js", import.meta.url).href;
    // One child process with V8's relaxed-SIMD flag (Node 20 ships it off): each module in turn.
    const script = `
      const { GQA } = await import(${JSON.stringify(dist)});
      const { wasmRelaxedSimdAvailable } = await import(${JSON.stringify(new URL("../dist/backend.js", import.meta.url).href)});
      const x = Float32Array.from({ length: 3 * 70 * 19 }, (_, i) => Math.sin(i * 0.7));
      const out = { probe: wasmRelaxedSimdAvailable() };
      for (const [name, threads, relaxedSimd] of [["plain", 1, false], ["relaxed", 1, undefined], ["relaxedThreads", 2, undefined]]) {
        GQA.reset();
        await GQA.init({ backend: "wasm", threads, relaxedSimd });
        const m = await GQA.build({ embedDim: 19, hiddenSize: 64, numHeads: 8, numKvHeads: 2, numLayers: 2, rope: true, outputMode: "all", seed: 3 });
        out[name] = { variant: GQA.variant, gemm: GQA.simd.gemm, data: Array.from((await m.forward(x, [3, 70, 19], { lengths: [70, 12, 41] })).data) };
        m.dispose();
      }
      // relaxedSimd given after the backend loaded switches module (as an explicit backend does).
      GQA.reset();
      await GQA.init({ backend: "wasm", threads: 1, relaxedSimd: false });
      const before = GQA.simd.gemm;
      await GQA.init({ relaxedSimd: true });
      out.switched = [before, GQA.simd.gemm];
      console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 120_000, maxBuffer: 1 << 26 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.probe).toBe(true);
    expect([out.plain.variant, out.plain.gemm]).toEqual(["wasm", "simd128"]);
    expect([out.relaxed.variant, out.relaxed.gemm]).toEqual(["wasm", "relaxed-simd"]);
    expect([out.relaxedThreads.variant, out.relaxedThreads.gemm]).toEqual(["wasm-threads", "relaxed-simd"]);
    const plain: number[] = out.plain.data;
    const relaxed: number[] = out.relaxed.data;
    expect(plain.length).toBe(3 * 70 * 64);
    const diff = Math.max(...relaxed.map((v, i) => Math.abs(v - plain[i]!)));
    expect(diff).toBeLessThanOrEqual(1e-5);
    expect(out.relaxedThreads.data.every((v: number, i: number) => Object.is(v, relaxed[i]))).toBe(true);
    expect(out.switched).toEqual(["simd128", "relaxed-simd"]);
  });

  it("without relaxed SIMD in the engine (Node 20 default) the plain simd128 modules load", async () => {
    const { wasmRelaxedSimdAvailable } = await import("../ts/backend.js");
    GQA.reset();
    await GQA.init({ backend: "wasm", threads: 1 });
    expect(GQA.simd!.gemm).toBe(wasmRelaxedSimdAvailable() ? "relaxed-simd" : "simd128");
    await expectCode(() => GQA.init({ relaxedSimd: "yes" as unknown as boolean }), "INVALID_OPTION", /`relaxedSimd`: expected true or false, found "yes"/);
    await expectCode(() => GQA.init({ threads: "2" as unknown as number }), "INVALID_OPTION", /found "2" \(string\)/);
    if (!wasmRelaxedSimdAvailable()) {
      // Forced on an engine without relaxed SIMD: a typed load error naming the module.
      await expectCode(() => GQA.init({ relaxedSimd: true }), "BACKEND_LOAD_FAILED", /pkg-relaxed[/\\]gqa_wasm_bg\.wasm/);
    }
    GQA.reset();
  });
});
