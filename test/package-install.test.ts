// The packages as a user gets them: `npm run pack` (scripts/pack.mjs) packs the main
// package `gqa` and the platform package `gqa-linux-x64-gnu` from what the build made; a fresh app
// in a temporary folder installs the two tarballs offline (no registry, no install script, no
// build step) and runs a program end to end on both backends: the shipped dataset through
// `gqa/data`, build, fit, evaluate, predict, save, load, predict again; the `gqa` bin reads the
// saved file. Then, with the platform package removed, `auto` falls back to wasm and a forced
// `native` says what is missing. Also the tarballs' contents and sizes against the budgets below.
//
// It exercises both backends itself, so it runs once per scripts/test.sh: in the
// GQA_BACKEND=native vitest run (or when GQA_BACKEND is unset), skipped in the wasm runs.
// Needs the full build (native addon, dist/, the four wasm modules: `bash scripts/setup.sh --all`).
import { execFileSync, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const MB = 1024 * 1024; // MB here and in scripts/pack.mjs's output: 2^20 bytes
// Size budgets, ~25 % above what was measured (2026-12-07, linux x64: the addon built by
// `napi build --platform --release`, the wasm modules by scripts/setup.sh with wasm-opt -O1). npm
// tarballs are gzip-compressed; a .wasm file is measured uncompressed, as it sits in the package.
/** gqa-<version>.tgz: dist/, the napi loader, four wasm modules (~0.85 MB each gzipped), data/, SPEC.md (4.26 MB). */
const MAIN_TARBALL_MAX = 5.3 * MB;
/** gqa-linux-x64-gnu-<version>.tgz: the .node addon (2.56 MB; 7.77 MB unpacked). */
const PLATFORM_TARBALL_MAX = 3.2 * MB;
/** Each of the four gqa_wasm_bg.wasm files (pkg: 4.16 MB, pkg-threads: 4.42 MB). */
const WASM_FILE_MAX = 5.6 * MB;
/** Install of the two tarballs plus every program run below: the target is one minute. */
const INSTALL_AND_RUN_TARGET_MS = 60_000;

const root = fileURLToPath(new URL("..", import.meta.url));
const backendEnv = process.env.GQA_BACKEND;
const runHere = backendEnv === undefined || backendEnv === "" || backendEnv === "native";
const PLATFORM = "linux-x64-gnu";
const WASM_DIRS = ["pkg", "pkg-threads", "pkg-relaxed", "pkg-threads-relaxed"];

interface PackEntry {
  name: string;
  version: string;
  file: string;
  size: number;
  unpackedSize: number;
}
interface PackReport {
  main: PackEntry & { optionalDependencies: Record<string, string> };
  platforms: PackEntry[];
  wasm: { path: string; size: number }[];
}
/** What APP_PROGRAM prints. */
interface AppResult {
  backend: string;
  backendFile: string;
  nodeFiles: string[];
  dims: number[];
  steps: number;
  epochLosses: number[];
  evalLoss: number;
  accuracy: number;
  count: number;
  recountedAccuracy: number;
  predictDims: number[];
  argmaxMatchesEval: boolean;
  rowSumErr: number;
  reloadEqual: boolean;
  digestEqual: boolean;
  paramCount: number;
  builtParamCount: number;
}

/** The user's program: plain JavaScript, run with node from the app folder (no build step). */
const APP_PROGRAM = `
import { createRequire } from "node:module";
import { GQA } from "gqa";
import { channelStats, loadDataset, standardize, trainingData } from "gqa/data";

await GQA.init();
const ds = await loadDataset("basic-motions");
const stats = channelStats(ds.train.series, ds.train.channels);
const split = (s) => trainingData(standardize(s.series, stats), s.channels, s.labels);
const train = split(ds.train), test = split(ds.test);
const k = ds.train.classLabels.length;
const options = { embedDim: ds.train.channels, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1, outputMode: "mean_pool" };
const model = await GQA.build({ ...options, head: { type: "classification", numClasses: k } });
const history = await model.fit(train, { epochs: 3, batchSize: 8 });
const ev = await model.evaluate(test);
const probs = await model.predict(test.x, test.dims);
await model.saveFile("model.safetensors");
const loaded = await GQA.load("model.safetensors");
const again = await loaded.predict(test.x, test.dims);
const n = test.dims[0];
const argmax = (i) => { let b = 0; for (let j = 1; j < k; j++) if (probs.data[i * k + j] > probs.data[i * k + b]) b = j; return b; };
let rowSumErr = 0;
for (let i = 0; i < n; i++) { let s = 0; for (let j = 0; j < k; j++) s += probs.data[i * k + j]; rowSumErr = Math.max(rowSumErr, Math.abs(s - 1)); }
console.log(JSON.stringify({
  backend: GQA.backend, backendFile: GQA.backendFile,
  nodeFiles: Object.keys(createRequire(import.meta.url).cache).filter((f) => f.endsWith(".node")),
  dims: test.dims, steps: history.steps, epochLosses: history.epochs.map((e) => e.loss),
  evalLoss: ev.loss, accuracy: ev.accuracy, count: ev.count,
  recountedAccuracy: ev.predictions.filter((p, i) => p === test.labels[i]).length / n,
  predictDims: probs.dims, argmaxMatchesEval: ev.predictions.every((p, i) => p === argmax(i)), rowSumErr,
  reloadEqual: again.data.length === probs.data.length && again.data.every((v, i) => Object.is(v, probs.data[i])),
  digestEqual: loaded.weightsDigest() === model.weightsDigest(),
  paramCount: loaded.paramCount,
  builtParamCount: model.paramCount,
}));
model.dispose();
loaded.dispose();
`;

/** The child's environment: this one without npm's per-script variables (an `npm test` parent sets them). */
function childEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("npm_package_") && !key.startsWith("npm_lifecycle_") && key !== "GQA_NATIVE_PATH" && key !== "GQA_WASM_PATH") env[key] = value;
  }
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

function run(cmd: string, args: string[], cwd: string, env: Record<string, string | undefined> = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env: childEnv(env), encoding: "utf8", timeout: 120_000 });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) throw new Error(`${what} failed (status ${r.status}${r.error ? `, ${r.error.message}` : ""}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

describe.skipIf(!runHere)("the packed packages, installed into a fresh app", () => {
  const tmp = mkdtempSync(join(tmpdir(), "gqa-install-"));
  const packDir = join(tmp, "pack");
  const app = join(tmp, "app");
  let report: PackReport;
  let elapsedMs = 0;
  let installMode = "--offline";
  let nativeResult: AppResult | undefined;

  beforeAll(() => {
    ok(run(process.execPath, [join(root, "scripts/pack.mjs"), "--out", packDir], root), "npm run pack");
    report = JSON.parse(readFileSync(join(packDir, "pack.json"), "utf8")) as PackReport;
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "gqa-install-check", private: true, type: "module" }, null, 2));
    writeFileSync(join(app, "main.mjs"), APP_PROGRAM);
    const start = performance.now();
    const tarballs = [report.main.file, ...report.platforms.map((p) => p.file)];
    const install = (mode: string) => run("npm", ["install", mode, "--no-audit", "--no-fund", ...tarballs], app);
    // gqa's own dependencies (commander, cli-progress and theirs) come from the npm cache. `npm ci`
    // caches their tarballs but not their registry metadata, which a range needs; when that is
    // missing, --prefer-offline fetches it once (and later runs are offline).
    let r = install("--offline");
    if (r.status !== 0 && /ENOTCACHED/.test(r.stdout + r.stderr)) {
      installMode = "--prefer-offline";
      r = install(installMode);
    }
    ok(r, `npm install ${installMode} of the tarballs`);
    elapsedMs += performance.now() - start;
  }, 300_000);

  afterAll(() => {
    console.log(`package install: npm install ${installMode} + programs: ${(elapsedMs / 1000).toFixed(1)} s (target ${INSTALL_AND_RUN_TARGET_MS / 1000} s)`);
    rmSync(tmp, { recursive: true, force: true });
  });

  /** Runs the app program on a backend, timing it into the install+run total. */
  function runApp(env: Record<string, string | undefined>): AppResult {
    const start = performance.now();
    const out = ok(run(process.execPath, ["main.mjs"], app, env), `the app program (${JSON.stringify(env)})`);
    elapsedMs += performance.now() - start;
    return JSON.parse(out.trim().split("\n").pop()!) as AppResult;
  }

  function expectTrained(r: AppResult): void {
    expect(r.dims).toEqual([40, 100, 6]);
    expect(r.steps).toBe(15); // 3 epochs x ceil(40 / 8)
    expect(r.epochLosses).toHaveLength(3);
    for (const l of r.epochLosses) expect(Number.isFinite(l) && l > 0).toBe(true);
    expect(r.epochLosses[2]!).toBeLessThan(r.epochLosses[0]!);
    expect(r.count).toBe(40);
    expect(Number.isFinite(r.evalLoss) && r.evalLoss > 0).toBe(true);
    expect(r.accuracy).toBe(r.recountedAccuracy);
    expect(r.accuracy).toBeGreaterThan(0.25); // above chance (4 classes) after 3 epochs
    expect(r.predictDims).toEqual([40, 4]);
    expect(r.argmaxMatchesEval).toBe(true);
    expect(r.rowSumErr).toBeLessThan(1e-5);
    expect(r.reloadEqual).toBe(true);
    expect(r.digestEqual).toBe(true);
    expect(r.paramCount).toBe(r.builtParamCount);
    expect(r.paramCount).toBeGreaterThan(3000);
  }

  it("packs the main package (no .node, no install script, optional platform packages) and the linux-x64-gnu package", () => {
    expect(report.main.name).toBe("gqa");
    expect(Object.keys(report.main.optionalDependencies).sort()).toEqual(
      ["darwin-arm64", "darwin-x64", "linux-arm64-gnu", "linux-x64-gnu", "linux-x64-musl", "win32-x64-msvc"].map((t) => `gqa-${t}`),
    );
    const mainFiles = execFileSync("tar", ["-tzf", report.main.file], { encoding: "utf8" }).split("\n").filter(Boolean);
    for (const f of ["dist/index.js", "dist/browser.js", "dist/cli/index.js", "dist/data/index.js", "bindings/node/index.js", "bindings/node/index.d.ts", "bindings/node/package.json", "SPEC.md", "data/README.md"]) {
      expect(mainFiles).toContain(`package/${f}`);
    }
    for (const d of WASM_DIRS) {
      expect(mainFiles).toContain(`package/bindings/wasm/${d}/gqa_wasm.js`);
      expect(mainFiles).toContain(`package/bindings/wasm/${d}/gqa_wasm_bg.wasm`);
    }
    expect(mainFiles.filter((f) => f.endsWith(".node"))).toEqual([]);
    expect(report.platforms.map((p) => p.name)).toEqual([`gqa-${PLATFORM}`]);
    const platFiles = execFileSync("tar", ["-tzf", report.platforms[0]!.file], { encoding: "utf8" }).split("\n").filter(Boolean).sort();
    expect(platFiles).toEqual([`package/README.md`, `package/gqa.${PLATFORM}.node`, "package/package.json"]);

    // Installed: the addon came from the platform package; nothing ran at install.
    const lock = JSON.parse(readFileSync(join(app, "package-lock.json"), "utf8"));
    expect(lock.packages["node_modules/gqa"].hasInstallScript).toBeUndefined();
    expect(lock.packages[`node_modules/gqa-${PLATFORM}`].hasInstallScript).toBeUndefined();
    expect(existsSync(join(app, "node_modules", `gqa-${PLATFORM}`, `gqa.${PLATFORM}.node`))).toBe(true);
    expect(existsSync(join(app, "node_modules", "gqa-darwin-arm64"))).toBe(false);
  });

  it("keeps the tarballs and each .wasm file within their size budgets", () => {
    const sizes = [
      `main ${(report.main.size / MB).toFixed(2)} MB (budget ${(MAIN_TARBALL_MAX / MB).toFixed(1)})`,
      `${report.platforms[0]!.name} ${(report.platforms[0]!.size / MB).toFixed(2)} MB (budget ${(PLATFORM_TARBALL_MAX / MB).toFixed(1)})`,
      ...report.wasm.map((w) => `${w.path} ${(w.size / MB).toFixed(2)} MB (budget ${(WASM_FILE_MAX / MB).toFixed(1)})`),
    ];
    console.log(`package sizes: ${sizes.join("; ")}`);
    expect(report.main.size).toBeLessThanOrEqual(MAIN_TARBALL_MAX);
    for (const p of report.platforms) expect(p.size).toBeLessThanOrEqual(PLATFORM_TARBALL_MAX);
    expect(report.wasm.map((w) => w.path).sort()).toEqual(WASM_DIRS.map((d) => `bindings/wasm/${d}/gqa_wasm_bg.wasm`).sort());
    for (const w of report.wasm) expect(w.size).toBeLessThanOrEqual(WASM_FILE_MAX);
  });

  it("runs end to end on the native backend, the addon loaded from gqa-linux-x64-gnu", () => {
    const r = runApp({ GQA_BACKEND: "native" });
    expect(r.backend).toBe("native");
    expect(realpathSync(r.backendFile)).toBe(realpathSync(join(app, "node_modules/gqa/bindings/node/index.js")));
    expect(r.nodeFiles.map((f) => realpathSync(f))).toEqual([realpathSync(join(app, "node_modules", `gqa-${PLATFORM}`, `gqa.${PLATFORM}.node`))]);
    expectTrained(r);
    nativeResult = r;
    // The bin reads the file the program saved.
    const info = ok(run(join(app, "node_modules/.bin/gqa"), ["info", "--model", "model.safetensors"], app, { GQA_BACKEND: "native" }), "gqa info");
    expect(info).toContain("model file: model.safetensors (one model; classification head, 4 classes)");
    expect(info).toContain("embed_dim 6, hidden_size 16, num_heads 4, num_kv_heads 2");
    const body = r.paramCount - (16 * 4 + 4); // info counts the GQA body; the head is a 16 x 4 dense layer
    expect(info).toMatch(new RegExp(`parameters \\(exact, core\\):\\s+${body.toLocaleString("en-US")}\\n`));
    expect(ok(run(join(app, "node_modules/.bin/gqa"), ["--version"], app), "gqa --version").trim()).toBe(report.main.version);
  });

  it("runs end to end on the wasm backend (single-threaded and threaded module), no addon loaded", () => {
    for (const [threads, dir] of [["1", "pkg"], ["2", "pkg-threads"]] as const) {
      const r = runApp({ GQA_BACKEND: "wasm", GQA_THREADS: threads, GQA_WASM_RELAXED_SIMD: "0" });
      expect(r.backend).toBe("wasm");
      expect(realpathSync(r.backendFile)).toBe(realpathSync(join(app, `node_modules/gqa/bindings/wasm/${dir}/gqa_wasm_bg.wasm`)));
      expect(r.nodeFiles).toEqual([]);
      expectTrained(r);
      // Same seed, same data: the wasm run follows the native one (they differ in the last bits).
      if (nativeResult) {
        for (const [i, l] of r.epochLosses.entries()) expect(Math.abs(l - nativeResult.epochLosses[i]!)).toBeLessThan(1e-4 * nativeResult.epochLosses[i]!);
        expect(Math.abs(r.evalLoss - nativeResult.evalLoss)).toBeLessThan(1e-4 * nativeResult.evalLoss);
      }
    }
  });

  it("without the platform package: auto falls back to wasm, a forced native backend says what is missing", () => {
    const plat = join(app, "node_modules", `gqa-${PLATFORM}`);
    const aside = join(tmp, `gqa-${PLATFORM}`);
    renameSync(plat, aside);
    try {
      const r = runApp({ GQA_BACKEND: "auto" });
      expect(r.backend).toBe("wasm");
      expect(r.nodeFiles).toEqual([]);
      expectTrained(r);
      const forced = run(process.execPath, ["--input-type=module", "-e", `import { GQA } from "gqa"; await GQA.init({ backend: "native" });`], app, { GQA_BACKEND: undefined });
      expect(forced.status).not.toBe(0);
      expect(forced.stderr).toMatch(/BACKEND_LOAD_FAILED|native backend: cannot load/);
      expect(forced.stderr).toContain("platform package gqa-<triple>");
    } finally {
      renameSync(aside, plat);
    }
    expect(elapsedMs).toBeLessThan(2 * INSTALL_AND_RUN_TARGET_MS); // twice the target: cores here are shared
  });
});
