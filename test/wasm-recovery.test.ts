/**
 * Recovery after the largest failures (issue "Robust against any caller", wasm defects a-c),
 * per backend (GQA_BACKEND), each in a child `node` importing the built package (dist/): a trap
 * or an exhausted wasm memory would otherwise take the whole test worker with it. Each child
 * must exit 0 and print its outcomes as JSON on its last line.
 *
 * What each test covers:
 * - (a) forwards (`outputMode: "all"`) whose working set passes the 4 GiB a wasm32 memory can
 *   address, whose input is just over 2^31 bytes (wasm: a copy wasm-bindgen's malloc cannot make,
 *   which trapped), or whose 1.7 GB input fits the budget: OUT_OF_MEMORY, OUT_OF_MEMORY, computed
 *   (or OUT_OF_MEMORY), never a trap; after each, a small forward of the same model and of
 *   another model gives bit for bit the values it gave before (native under the same 4 GiB limit);
 * - (b) 250 failed builds (a head of 2^31 classes, hiddenSize 2^20, numLayers 1e9, headDim 2^26,
 *   a regression head of 2^31 outputs) leave `GQA.memory` answering an object with `inUse`
 *   unchanged, and a small build and forward work;
 * - (c) a model of 269 M parameters (wasm: over 2^30 bytes of weights, where 32-bit byte
 *   arithmetic on 2^28+ element indices would wrap) builds, predicts, forwards and digests, or
 *   is a typed error, never a trap;
 * - every exported getter (`memory`, `threads`, `simd`, `backend`) answers after a trap (a forced
 *   Rust panic, `gqa/testing`), and the next call works.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { BACKEND } from "./helpers/expect.js";

const backend = BACKEND === "auto" ? "native" : BACKEND;
const root = fileURLToPath(new URL("..", import.meta.url));
const dist = pathToFileURL(join(root, "dist", "index.js")).href;
const testing = pathToFileURL(join(root, "dist", "testing.js")).href;
const dir = mkdtempSync(join(tmpdir(), "gqa-wasm-recovery-"));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Runs `body` (an async module body with `GQA`, `GqaError`, `setPanicSite`, `backend`,
 * `outcome(e)` and `data(n, seed)` in scope) in a child `node`; returns its exit, output, and
 * the JSON of its last stdout line (null if none).
 */
function child<Out>(body: string, timeoutMs = 120_000): { code: number | null; signal: string | null; err: string; out: Out | null } {
  const file = join(dir, `child-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(
    file,
    `import { GQA, GqaError } from ${JSON.stringify(dist)};
import { setPanicSite } from ${JSON.stringify(testing)};
const backend = ${JSON.stringify(backend)};
/** What a failed call gave: its code if typed, else "untyped <name>: <message>". */
const outcome = (e) => (e instanceof GqaError ? e.code : "untyped " + (e?.constructor?.name ?? typeof e) + ": " + String(e?.message ?? e));
const data = (n, seed = 1) => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37 + seed); return a; };
await GQA.init({ backend, threads: 1 });
${body}
`,
  );
  const r = spawnSync(process.execPath, [file], { encoding: "utf8", timeout: timeoutMs, env: { ...process.env, GQA_THREADS: "1" } });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  let out: Out | null = null;
  try {
    out = JSON.parse(last) as Out;
  } catch {
    out = null;
  }
  return { code: r.status, signal: r.signal, err: r.stderr, out };
}

/** Asserts that the child exited 0 without a signal and printed its outcomes; returns them. */
function outcomes<Out>(r: ReturnType<typeof child<Out>>): Out {
  expect({ code: r.code, signal: r.signal }, r.err.slice(-3000)).toEqual({ code: 0, signal: null });
  expect(r.out, r.err.slice(-3000)).not.toBeNull();
  return r.out!;
}

describe(`recovery after the largest failures (${backend})`, () => {
  it("(a) forwards whose working set nears or passes 4 GiB are computed or OUT_OF_MEMORY, never a trap; afterwards small forwards of that model and another give the same values", () => {
    type Case = { name: string; got: string; finite?: boolean; sameAfter: boolean; otherSameAfter: boolean; memory: unknown };
    const r = child<{ cases: Case[]; inUseBefore: number; inUseAfter: number }>(
      `
// native: the same 4 GiB budget as wasm, so that both refuse the same requests.
if (backend === "native") GQA.setMemoryLimit(2 ** 32);
// headDim 256 x 32 query heads and 1 KV head (qkv rows of 8,704 values, attention rows of
// 8,192) on embedDim 16384 inputs (2 x 64 KB per position: the input and its copy).
const wide = await GQA.build({ embedDim: 16384, hiddenSize: 8, numHeads: 32, numKvHeads: 1, headDim: 256, numLayers: 1, dropout: 0, seed: 5, outputMode: "all" });
// The same inputs into one narrow head: the input dominates the working set.
const narrow = await GQA.build({ embedDim: 16384, hiddenSize: 1, numHeads: 1, numKvHeads: 1, headDim: 8, numLayers: 1, dropout: 0, seed: 6, outputMode: "all" });
const other = await GQA.build({ embedDim: 8, hiddenSize: 16, numHeads: 2, numKvHeads: 1, numLayers: 2, dropout: 0, seed: 9, head: { type: "classification", numClasses: 3 } });
const E = 16384;
const small = data(2 * 3 * E);
const smallOther = data(2 * 5 * 8);
const fwd = async (m, x, dims) => JSON.stringify(Array.from((await m.forward(x, dims)).data));
const refWide = await fwd(wide, small, [2, 3, E]);
const refOther = JSON.stringify(Array.from((await other.predict(smallOther, [2, 5, 8])).data));
const inUseBefore = GQA.memory.inUse;
const cases = [];
const run = async (name, m, positions) => {
  let got, finite;
  let x = new Float32Array(positions * E).fill(0.25);
  try {
    const y = await m.forward(x, [positions, 1, E]);
    got = "computed";
    finite = y.data.every(Number.isFinite);
  } catch (e) {
    got = outcome(e);
  }
  x = null;
  let sameAfter = false, otherSameAfter = false, memory = null;
  try {
    memory = GQA.memory;
    sameAfter = (await fwd(wide, small, [2, 3, E])) === refWide;
    otherSameAfter = JSON.stringify(Array.from((await other.predict(smallOther, [2, 5, 8])).data)) === refOther;
  } catch (e) {
    memory = memory ?? outcome(e);
  }
  cases.push({ name, got, finite, sameAfter, otherSameAfter, memory });
};
await run("working set over 4 GiB (24,000 positions: 1.57 GB input, its copy, 0.84 GB qkv, 0.79 GB attention)", wide, 24_000);
await run("an input just over 2^31 bytes (32,769 positions)", narrow, 32_769);
await run("an input of 1.70 GB, working set 3.4 GB (26,000 positions): within the budget", narrow, 26_000);
console.log(JSON.stringify({ cases, inUseBefore, inUseAfter: GQA.memory.inUse }));
`,
      300_000,
    );
    const out = outcomes(r);
    console.log(`${backend}: ` + out.cases.map((c) => `${c.name}: ${c.got}`).join("; "));
    for (const c of out.cases) {
      expect(c.got, JSON.stringify(c)).toMatch(/^(computed|OUT_OF_MEMORY)$/);
      if (c.got === "computed") expect(c.finite, c.name).toBe(true);
      expect(c.memory, c.name).toMatchObject({ limit: expect.any(Number), inUse: expect.any(Number) });
      expect({ sameAfter: c.sameAfter, otherSameAfter: c.otherSameAfter }, c.name).toEqual({ sameAfter: true, otherSameAfter: true });
    }
    expect(out.cases[0]!.got).toBe("OUT_OF_MEMORY");
    expect(out.cases[1]!.got).toBe("OUT_OF_MEMORY");
    expect(out.inUseAfter).toBe(out.inUseBefore);
  }, 320_000);

  it("(b) 250 failed builds leave GQA.memory answering with inUse unchanged; a small build and forward work after", () => {
    type Out = { codes: Record<string, number>; memory: unknown; inUseBefore: number; rssGrowth: number; dims: number[]; finite: boolean };
    const r = child<Out>(`
// native: the same 4 GiB budget as wasm (with the machine's memory as its limit, headDim 2^26
// is a 12 GiB model that builds, in about 50 s).
if (backend === "native") GQA.setMemoryLimit(2 ** 32);
const base = { embedDim: 8, hiddenSize: 8, numHeads: 2, numKvHeads: 1, numLayers: 1, dropout: 0 };
const huge = [
  { ...base, head: { type: "classification", numClasses: 2 ** 31 } },
  { ...base, hiddenSize: 2 ** 20, numHeads: 1, numKvHeads: 1 },
  { ...base, numLayers: 1e9 },
  { ...base, headDim: 2 ** 26 },
  { ...base, head: { type: "regression", outDim: 2 ** 31 } },
];
const warm = await GQA.build(base);
warm.dispose();
const inUseBefore = GQA.memory.inUse;
const rss0 = process.memoryUsage().rss;
const codes = {};
for (let i = 0; i < 250; i++) {
  let got = "built";
  try { (await GQA.build(huge[i % huge.length])).dispose(); } catch (e) { got = outcome(e); }
  codes[got] = (codes[got] ?? 0) + 1;
}
let memory;
try { memory = GQA.memory; } catch (e) { memory = outcome(e); }
const m = await GQA.build({ ...base, head: { type: "classification", numClasses: 2 } });
const p = await m.predict(data(2 * 3 * 8), [2, 3, 8]);
m.dispose();
console.log(JSON.stringify({ codes, memory, inUseBefore, rssGrowth: process.memoryUsage().rss - rss0, dims: p.dims, finite: p.data.every(Number.isFinite) }));
`);
    const out = outcomes(r);
    console.log(`${backend}: ${JSON.stringify(out.codes)}, RSS growth ${(out.rssGrowth / 2 ** 20).toFixed(1)} MiB`);
    expect(Object.keys(out.codes).every((c) => c === "OUT_OF_MEMORY" || c === "INVALID_OPTION"), JSON.stringify(out.codes)).toBe(true);
    expect(out.codes.OUT_OF_MEMORY).toBeGreaterThanOrEqual(100);
    expect(out.memory).toEqual({ limit: expect.any(Number), inUse: out.inUseBefore });
    expect(out).toMatchObject({ dims: [2, 2], finite: true });
    expect(out.rssGrowth).toBeLessThan(256 * 2 ** 20);
  });

  it("(c) a model of 269 M parameters builds, predicts, forwards and digests, or is a typed error; never a trap", () => {
    type Out = { params: number; steps: Record<string, string>; probs?: number[]; memory: unknown };
    const r = child<Out>(`
// 1024 wide, 21 blocks and a 4,600-class head: 269.2 M parameters, 1.08 GB of weights.
const opts = { embedDim: 1024, hiddenSize: 1024, numHeads: 16, numKvHeads: 16, numLayers: 21, dropout: 0, seed: 3 };
const head = { type: "classification", numClasses: 4600 };
let params = GQA.paramCount(opts, { exact: true }) + 1025 * 4600;
const steps = {};
let probs;
const step = async (name, f) => { try { await f(); steps[name] = "ok"; } catch (e) { steps[name] = outcome(e); } };
let m = null;
await step("build", async () => { m = await GQA.build({ ...opts, head }); });
if (m) {
  params = m.paramCount;
  await step("predict", async () => { const p = await m.predict(data(2 * 8 * 1024), [2, 8, 1024]); probs = Array.from(p.data.subarray(0, 4)); if (!p.data.every(Number.isFinite)) throw new Error("non-finite"); });
  await step("forward", async () => { const y = await m.forward(data(1 * 4 * 1024), [1, 4, 1024]); if (!y.data.every(Number.isFinite)) throw new Error("non-finite"); });
  await step("weightsDigest", async () => { if (!/^[0-9a-f]{16}$/.test(m.weightsDigest())) throw new Error("bad digest"); });
  m.dispose();
}
let memory;
try { memory = GQA.memory; } catch (e) { memory = outcome(e); }
console.log(JSON.stringify({ params, steps, probs, memory }));
`);
    const out = outcomes(r);
    console.log(`${backend}: ${out.params} parameters: ${JSON.stringify(out.steps)}`);
    expect(out.params).toBeGreaterThan(269e6);
    for (const [name, got] of Object.entries(out.steps)) expect(got, name).toMatch(/^(ok|OUT_OF_MEMORY)$/);
    expect(out.memory).toEqual({ limit: expect.any(Number), inUse: 0 });
  });

  it("after a trap (a forced Rust panic) every exported getter answers and the next forward gives the same values", () => {
    type Out = { got: string; getters: Record<string, string>; same: boolean };
    const r = child<Out>(`
const m = await GQA.build({ embedDim: 3, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1, dropout: 0, seed: 4 });
const x = data(2 * 4 * 3);
const ref = JSON.stringify(Array.from((await m.forward(x, [2, 4, 3])).data));
setPanicSite("forward");
let got = "computed";
try { await m.forward(x, [2, 4, 3]); } catch (e) { got = outcome(e); }
setPanicSite(null);
const getters = {};
for (const g of ["memory", "threads", "simd", "backend"]) {
  try { const v = GQA[g]; getters[g] = v === null || v === undefined ? "null" : typeof v; } catch (e) { getters[g] = "threw " + outcome(e); }
}
const same = JSON.stringify(Array.from((await m.forward(x, [2, 4, 3])).data)) === ref;
console.log(JSON.stringify({ got, getters, same }));
`);
    const out = outcomes(r);
    expect(out.got).toBe("INTERNAL");
    expect(out.getters).toEqual({ memory: "object", threads: "number", simd: "object", backend: "string" });
    expect(out.same).toBe(true);
  });
});
