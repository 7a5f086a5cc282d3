/**
 * Concurrency, per backend (GQA_BACKEND): many overlapping promises on one model and on many
 * models give the sequential results bitwise; several worker_threads, each with its own models
 * (on the built package, dist/), give the main thread's results and survive dispose() during
 * in-flight calls; handles collected by the GC while their calls are pending neither crash nor
 * leak (a child `node --expose-gc`).
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { beforeAll, describe, expect, it } from "vitest";
import { GQA, type GqaOptions } from "gqa";
import { BACKEND } from "./helpers/expect.js";

const CFG: GqaOptions = { embedDim: 5, hiddenSize: 32, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, dropout: 0 };
const DIMS = [2, 12, 5];
const N = DIMS[0]! * DIMS[1]! * DIMS[2]!;
const backend = BACKEND === "auto" ? "native" : BACKEND;
const threads = Number(process.env.GQA_THREADS ?? 1);

/** What test/workers/model-worker.mjs posts back: its outputs, its lifecycle outcomes and budget, or its error. */
type WorkerResult = {
  error?: string;
  variant: string;
  outs: number[][];
  lifecycle: [name: string, outcome: string, data?: number[]][];
  inUse: [number, number];
};

function input(seed: number): Float32Array {
  return Float32Array.from({ length: N }, (_, i) => Math.sin(0.37 * i + seed) * (1 + (seed % 3)));
}

beforeAll(async () => {
  await GQA.init({ backend });
});

describe(`overlapping promises (${backend})`, () => {
  it("32 concurrent forwards on one model equal the sequential results bitwise", async () => {
    const m = await GQA.build({ ...CFG, seed: 1 });
    const xs = Array.from({ length: 32 }, (_, i) => input(i));
    const seq: Float32Array[] = [];
    for (const x of xs) seq.push((await m.forward(x, DIMS)).data);
    const par = await Promise.all(xs.map((x) => m.forward(x, DIMS)));
    for (const [i, y] of par.entries()) expect(Array.from(y.data)).toEqual(Array.from(seq[i]!));
    m.dispose();
  });

  it("8 models x 4 interleaved forwards and pushes equal the sequential results bitwise", async () => {
    const models = await Promise.all(Array.from({ length: 8 }, (_, i) => GQA.build({ ...CFG, seed: 10 + i })));
    const x = input(5);
    const seq: Float32Array[] = [];
    for (const m of models) seq.push((await m.forward(x, DIMS)).data);
    const sessions = await Promise.all(models.map((m) => m.session({ batch: DIMS[0]!, maxLen: DIMS[1]! })));
    const calls = models.flatMap((m, i) => [m.forward(x, DIMS).then((y) => [i, y.data] as const), sessions[i]!.push(x, DIMS).then((y) => [i, y.data] as const)]);
    for (const [i, y] of await Promise.all(calls)) {
      const diff = Math.max(...Array.from(y, (v, k) => Math.abs(v - seq[i]![k]!)));
      expect(diff).toBeLessThanOrEqual(1e-5); // forwards bitwise, pushes = forward within 1e-5
    }
    for (const [i, m] of models.entries()) {
      const again = await m.forward(x, DIMS);
      expect(Array.from(again.data)).toEqual(Array.from(seq[i]!));
      sessions[i]!.dispose();
      m.dispose();
    }
  });
});

describe(`worker_threads (${backend})`, () => {
  it("3 workers with their own models give the main thread's results; dispose in flight is safe there", async () => {
    const url = new URL("./workers/model-worker.mjs", import.meta.url);
    const jobs = [0, 1, 2].map((w) => ({ cfg: { ...CFG, seed: 100 + w }, inputs: [0, 1, 2, 3].map((k) => Array.from(input(10 * w + k))) }));
    const results = await Promise.all(
      jobs.map(
        (job) =>
          new Promise<WorkerResult>((resolve, reject) => {
            const worker = new Worker(fileURLToPath(url), { workerData: { backend, threads, cfg: job.cfg, inputs: job.inputs, dims: DIMS } });
            worker.once("message", (msg) => {
              void worker.terminate();
              resolve(msg);
            });
            worker.once("error", reject);
          }),
      ),
    );
    for (const [w, r] of results.entries()) {
      expect(r.error, r.error).toBeUndefined();
      const m = await GQA.build(jobs[w]!.cfg);
      for (const [k, x] of jobs[w]!.inputs.entries()) {
        const want = await m.forward(Float32Array.from(x), DIMS);
        expect(r.outs[k]).toEqual(Array.from(want.data));
      }
      const want0 = Array.from((await m.forward(Float32Array.from(jobs[w]!.inputs[0]!), DIMS)).data);
      for (const [name, outcome, data] of r.lifecycle) {
        if (name === "after") expect(outcome).toBe("DISPOSED");
        else if (outcome === "ok") {
          if (name === "forward") expect(data).toEqual(want0);
          else expect(Math.max(...data!.map((v: number, i: number) => Math.abs(v - want0[i]!)))).toBeLessThanOrEqual(1e-5);
        } else expect(outcome).toBe("DISPOSED");
      }
      m.dispose();
      // Each wasm worker has its own module instance and budget: back to where it started.
      // Native: one budget per process, shared with the other workers; checked in the GC test.
      if (backend === "wasm") expect(r.inUse[1]).toBe(r.inUse[0]);
    }
  });
});

describe(`handles collected while their calls are pending (${backend})`, () => {
  it("every call settles, no crash, and the memory budget returns to its start", () => {
    const script = fileURLToPath(new URL("./workers/gc-pending.mjs", import.meta.url));
    const out = execFileSync(process.execPath, ["--expose-gc", script, backend], { encoding: "utf8", timeout: 120_000 });
    const r = JSON.parse(out.trim().split("\n").pop()!);
    expect(r.failed).toEqual([]);
    expect(r.settled).toBe(r.expected);
    expect(r.inUse[1]).toBe(r.inUse[0]);
  });
});
