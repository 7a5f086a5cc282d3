// Deno suite for gqa (run by scripts/test.sh):
//   deno test --config test/deno/deno.json --allow-read --allow-write --allow-env --allow-run=node,deno --allow-ffi test/deno/
// The package is imported the way a Deno user imports it: the bare specifier "gqa", mapped by
// deno.json "imports" to the entry that package.json `exports["."].deno` names (dist/index.js);
// a user of the published package maps "gqa" to "npm:gqa" instead. Checks, per backend that Deno
// loads (wasm always; the napi addon with --allow-ffi): build, forward, attentionMaps, save/load
// (bytes and files), the PyTorch reference fixtures (<= 1e-4), and equality with Node's NATIVE
// addon on the same seeded model (weights digest bitwise, outputs <= 1e-5, computed by a `node`
// child process). The Deno snippet of docs/browser-and-deno.md is extracted and executed.
import { GQA, GqaError, type Model } from "gqa";

declare const Deno: any;

const ROOT = new URL("../../", import.meta.url);
const FIXTURES = new URL("fixtures/", ROOT);

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert(a.length === b.length, `length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Minimal safetensors reader for the fixtures' input/expected tensors (F32 and I64). */
function readTensors(bytes: Uint8Array): { meta: Record<string, string>; t: Record<string, { dims: number[]; data: number[] }> } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const t: Record<string, { dims: number[]; data: number[] }> = {};
  for (const [k, v] of Object.entries<any>(header)) {
    if (k === "__metadata__") continue;
    const [s, e] = v.data_offsets as [number, number];
    const buf = bytes.slice(8 + n + s, 8 + n + e).buffer;
    const data = v.dtype === "F32" ? Array.from(new Float32Array(buf)) : v.dtype === "I64" ? Array.from(new BigInt64Array(buf), Number) : [];
    t[k] = { dims: v.shape, data };
  }
  return { meta: header.__metadata__ ?? {}, t };
}

const OPTS = { embedDim: 6, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, seed: 7 };
const DIMS = [2, 5, 6];
const X = Float32Array.from({ length: 60 }, (_, i) => Math.sin(i * 0.37) * 1.3);
const LENGTHS = [5, 3];

/** The same model and input in Node with the native addon (a child process). */
async function nodeNative(): Promise<{ backend: string; digest: string; data: number[]; dims: number[] }> {
  const script = `
    const { GQA } = await import(${JSON.stringify(new URL("dist/index.js", ROOT).href)});
    await GQA.init({ backend: "native" });
    const m = await GQA.build(${JSON.stringify(OPTS)});
    const y = await m.forward(new Float32Array(${JSON.stringify(Array.from(X))}), ${JSON.stringify(DIMS)}, { lengths: ${JSON.stringify(LENGTHS)} });
    console.log(JSON.stringify({ backend: GQA.backend, digest: m.weightsDigest(), data: Array.from(y.data), dims: y.dims }));`;
  const out = await new Deno.Command("node", { args: ["--input-type=module", "-e", script], stdout: "piped", stderr: "piped" }).output();
  assert(out.success, `node failed: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}
let nodeRef: Awaited<ReturnType<typeof nodeNative>> | null = null;

const BACKENDS = ["wasm", "native"] as const;
const ffi = Deno.permissions.querySync({ name: "ffi" }).state === "granted";

for (const backend of BACKENDS) {
  const ignore = backend === "native" && !ffi;
  const name = (s: string) => `${backend}: ${s}`;
  const init = async () => {
    await GQA.init({ backend });
    assert(GQA.backend === backend, `GQA.backend ${GQA.backend}`);
    // Deno runs the threaded wasm module (a pool of module Workers) wherever it has 2+ cores.
    const want = backend === "native" ? "native" : navigator.hardwareConcurrency > 1 ? "wasm-threads" : "wasm";
    assert(GQA.variant === want, `GQA.variant ${GQA.variant}, expected ${want}`);
  };

  Deno.test({ name: name("build, forward, paramCount, errors"), ignore }, async () => {
    await init();
    const m = await GQA.build(OPTS);
    const y = await m.forward(X, DIMS, { lengths: LENGTHS });
    assert(JSON.stringify(y.dims) === "[2,16]", `dims ${y.dims}`);
    assert(y.data.every(Number.isFinite), "finite outputs");
    // SPEC approximate count: E*H + L*(2*H*qDim + 2*H*kvDim + 8*H*H), qDim = H, kvDim = NKV*D.
    const H = 16, D = 4;
    const want = 6 * H + 2 * (2 * H * H + 2 * H * 2 * D + 8 * H * H);
    assert(GQA.paramCount(OPTS) === want, `paramCount ${GQA.paramCount(OPTS)} vs ${want}`);
    assert(GQA.kvCacheBytesPerToken(OPTS) === 2 * 2 * 2 * D * 4, "kv bytes/token");
    let code = "";
    try {
      await m.forward(X, [2, 5, 7]);
    } catch (e) {
      assert(e instanceof GqaError, "GqaError");
      code = e.code;
    }
    assert(code === "INVALID_INPUT", `error code ${code}`);
    m.dispose();
  });

  Deno.test({ name: name("same weights and outputs as Node native (<= 1e-5)"), ignore }, async () => {
    await init();
    nodeRef ??= await nodeNative();
    assert(nodeRef.backend === "native", `node backend ${nodeRef.backend}`);
    const m = await GQA.build(OPTS);
    const y = await m.forward(X, DIMS, { lengths: LENGTHS });
    assert(m.weightsDigest() === nodeRef.digest, `digest ${m.weightsDigest()} vs node ${nodeRef.digest}`);
    const err = maxDiff(y.data, nodeRef.data);
    assert(err <= 1e-5, `max |diff| vs node native ${err}`);
    console.log(`    deno/${backend} vs node/native: digest ${m.weightsDigest()}, max |diff| ${err.toExponential(2)}`);
    m.dispose();
  });

  Deno.test({ name: name("PyTorch fixtures <= 1e-4 (load from a path)"), ignore }, async () => {
    await init();
    let n = 0;
    for await (const e of Deno.readDir(FIXTURES)) {
      if (!e.name.endsWith(".safetensors")) continue;
      const path = new URL(e.name, FIXTURES).pathname;
      const { meta, t } = readTensors(await Deno.readFile(path));
      if (JSON.parse(meta.gqa_fixture ?? "{}").kind !== "model") continue;
      const m: Model = await GQA.load(path);
      const x = t["input.x"]!;
      const lengths = t["input.lengths"]?.data;
      const y = await m.forward(Float32Array.from(x.data), x.dims, { lengths });
      const want = t["expected.out"]!;
      assert(JSON.stringify(y.dims) === JSON.stringify(want.dims), `${e.name}: dims ${y.dims} vs ${want.dims}`);
      const err = maxDiff(y.data, want.data);
      assert(err <= 1e-4, `${e.name}: max |diff| ${err}`);
      m.dispose();
      n++;
    }
    assert(n >= 15, `only ${n} model fixtures`);
  });

  Deno.test({ name: name("save/load round trip (bytes and saveFile)"), ignore }, async () => {
    await init();
    const m = await GQA.build(OPTS);
    const y = await m.forward(X, DIMS);
    const bytes = await m.save();
    const fromBytes = await GQA.load(bytes);
    const dir = await Deno.makeTempDir();
    const file = `${dir}/model.safetensors`;
    await m.saveFile(file);
    const fromFile = await GQA.load(file);
    for (const r of [fromBytes, fromFile]) {
      assert(r.weightsDigest() === m.weightsDigest(), "digest after round trip");
      assert(JSON.stringify(r.config) === JSON.stringify(m.config), "config after round trip");
      assert(maxDiff((await r.forward(X, DIMS)).data, y.data) === 0, "bitwise equal outputs after round trip");
      r.dispose();
    }
    await Deno.remove(dir, { recursive: true });
    m.dispose();
  });

  Deno.test({ name: name("attentionMaps: [L,B,NH,T,T] causal probability rows"), ignore }, async () => {
    await init();
    const m = await GQA.build(OPTS);
    const a = await m.attentionMaps(X, DIMS, { lengths: LENGTHS });
    assert(JSON.stringify(a.dims) === "[2,2,4,5,5]", `dims ${a.dims}`);
    for (let r = 0; r < a.data.length / 5; r++) {
      const q = r % 5, b = Math.floor(r / 20) % 2;
      let s = 0;
      for (let k = 0; k < 5; k++) {
        const v = a.data[r * 5 + k]!;
        s += v;
        if (k > q || k >= LENGTHS[b]!) assert(v === 0, `row ${r} key ${k} = ${v}`);
      }
      assert(Math.abs(s - 1) < 1e-5, `row ${r} sums to ${s}`);
    }
    m.dispose();
  });
}

Deno.test({ name: "native vs wasm in Deno (<= 1e-5)", ignore: !ffi }, async () => {
  const out: Float32Array[] = [];
  for (const backend of BACKENDS) {
    await GQA.init({ backend });
    const m = await GQA.build(OPTS);
    out.push((await m.forward(X, DIMS, { lengths: LENGTHS })).data);
    m.dispose();
  }
  assert(maxDiff(out[0]!, out[1]!) <= 1e-5, `native vs wasm ${maxDiff(out[0]!, out[1]!)}`);
});

Deno.test("wasm: threaded and single-threaded modules give bitwise the same outputs", async () => {
  const out: { variant: string | null; threads: number | null; data: Float32Array }[] = [];
  for (const threads of [2, 1]) {
    GQA.reset();
    await GQA.init({ backend: "wasm", threads });
    const m = await GQA.build(OPTS);
    const x = Float32Array.from({ length: 3 * 50 * 6 }, (_, i) => Math.cos(i * 0.11));
    out.push({ variant: GQA.variant, threads: GQA.threads, data: (await m.forward(x, [3, 50, 6], { lengths: [50, 9, 33] })).data });
    m.dispose();
  }
  GQA.reset();
  assert(out[0]!.variant === "wasm-threads" && out[0]!.threads === 2, `threads: 2 -> ${out[0]!.variant} with ${out[0]!.threads}`);
  assert(out[1]!.variant === "wasm" && out[1]!.threads === 1, `threads: 1 -> ${out[1]!.variant} with ${out[1]!.threads}`);
  assert(out[0]!.data.every((v, i) => Object.is(v, out[1]!.data[i])), "bitwise equal outputs");
  console.log(`    deno: wasm-threads (2 threads) and wasm (1 thread) bitwise equal`);
});

Deno.test("a deno run script that used the threaded wasm module exits on its own", async () => {
  const script = `
    import { GQA } from ${JSON.stringify(new URL("dist/index.js", ROOT).href)};
    await GQA.init({ backend: "wasm", threads: 2 });
    const m = await GQA.build({ embedDim: 6, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1 });
    const y = await m.forward(new Float32Array(2 * 30 * 6).fill(0.5), [2, 30, 6]);
    m.dispose();
    console.log(GQA.variant, GQA.threads, y.dims.join("x"));`;
  const dir = await Deno.makeTempDir();
  const file = `${dir}/exit.ts`;
  await Deno.writeTextFile(file, script);
  const child = new Deno.Command("deno", { args: ["run", "--allow-read", "--allow-env", file], stdout: "piped", stderr: "piped" }).spawn();
  const timer = setTimeout(() => child.kill(), 60_000);
  const out = await child.output();
  clearTimeout(timer);
  await Deno.remove(dir, { recursive: true });
  const text = new TextDecoder().decode(out.stdout).trim();
  assert(out.success, `deno run: exit ${out.code} (killed after 60 s if it did not exit): ${new TextDecoder().decode(out.stderr)}`);
  assert(text === "wasm-threads 2 2x16", `output ${text}`);
});

Deno.test("Deno snippet runs (extracted from docs/browser-and-deno.md)", async () => {
  const readme = await Deno.readTextFile(new URL("docs/browser-and-deno.md", ROOT));
  const m = /<!-- deno-snippet -->\s*```ts\n([\s\S]*?)```/.exec(readme);
  assert(m, "docs/browser-and-deno.md has no <!-- deno-snippet --> ts block");
  const dir = await Deno.makeTempDir();
  const file = `${dir}/snippet.ts`;
  await Deno.writeTextFile(file, m[1]!);
  const cwd = Deno.cwd();
  Deno.chdir(dir);
  try {
    GQA.reset();
    await import(`file://${file}`);
    // The snippet saved and reloaded a model in the working directory.
    const again = await GQA.load(`${dir}/model.safetensors`);
    assert(again.config.embedDim === 6 && again.config.numKvHeads === 2, "snippet's saved model");
    again.dispose();
  } finally {
    Deno.chdir(cwd);
    await Deno.remove(dir, { recursive: true });
  }
});

// Last: without the ffi permission, auto falls back to wasm and native explains what is missing.
Deno.test("without --allow-ffi: auto -> wasm, native -> BACKEND_LOAD_FAILED naming --allow-ffi", async () => {
  await Deno.permissions.revoke({ name: "ffi" });
  GQA.reset();
  assert((await GQA.init()) === "wasm", `auto chose ${GQA.backend}`);
  let msg = "";
  try {
    await GQA.init({ backend: "native" });
  } catch (e) {
    assert(e instanceof GqaError && e.code === "BACKEND_LOAD_FAILED", `code ${(e as GqaError).code}`);
    msg = e.message;
  }
  assert(msg.includes("--allow-ffi"), `message: ${msg}`);
});
