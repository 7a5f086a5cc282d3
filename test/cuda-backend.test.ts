// The cuda backend's loading: every way it cannot start is a BACKEND_LOAD_FAILED naming what is
// missing (the addon file, a CUDA build, the NVIDIA driver, a CUDA library, a GPU), and bad init
// options are INVALID_OPTION. The cases that need the CUDA addon (`npm run build:cuda`, never
// built by CI) skip without it, by name; the GPU itself is exercised by scripts/gpu-check.sh.
//
// The driver and GPU cases load the real CUDA addon in a child node whose LD_LIBRARY_PATH holds
// stand-in libraries written here (gcc): each defines every symbol the addon imports from it, so
// the addon loads, and the stand-in libcuda reports CUDA_ERROR_NO_DEVICE (100), as a machine with
// a driver and no GPU does.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { afterAll, afterEach, describe, expect, it } from "vitest";

import { GQA } from "gqa";
import { expectCode } from "./helpers/expect.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CUDA_ADDON = join(ROOT, "bindings", "node", "gqa-cuda.linux-x64-gnu.node");
const CPU_ADDON = join(ROOT, "bindings", "node", "gqa.linux-x64-gnu.node");
const HAS_CUDA_ADDON = existsSync(CUDA_ADDON);
const HAS_GCC = spawnSync("gcc", ["--version"]).status === 0;

describe("cuda backend loading", () => {
  const saved = process.env.GQA_CUDA_PATH;
  afterEach(() => {
    if (saved === undefined) delete process.env.GQA_CUDA_PATH;
    else process.env.GQA_CUDA_PATH = saved;
  });
  afterAll(async () => {
    GQA.reset();
    await GQA.init();
  });

  it("without the CUDA addon, says where it looked and how to build it", async () => {
    process.env.GQA_CUDA_PATH = join(ROOT, "no-such-dir", "gqa-cuda.node");
    GQA.reset();
    await expectCode(() => GQA.init({ backend: "cuda" }), "BACKEND_LOAD_FAILED", /cuda backend: no CUDA addon at .*no-such-dir\/gqa-cuda\.node \(from GQA_CUDA_PATH\)/);
    expect(GQA.backend).toBeNull();
    delete process.env.GQA_CUDA_PATH;
    if (!HAS_CUDA_ADDON) {
      await expectCode(() => GQA.init({ backend: "cuda" }), "BACKEND_LOAD_FAILED", /no CUDA addon at .*gqa-cuda\.linux-x64-gnu\.node: build it with `npm run build:cuda`/);
    }
  });

  it("an addon built without CUDA is refused as not a CUDA build", async () => {
    process.env.GQA_CUDA_PATH = CPU_ADDON;
    GQA.reset();
    await expectCode(() => GQA.init({ backend: "cuda" }), "BACKEND_LOAD_FAILED", /is not a CUDA build of the gqa addon/);
  });

  it("the CPU addon cannot open a CUDA device: a BACKEND error naming cuda:0", async () => {
    GQA.reset();
    await GQA.init({ backend: "native" });
    expect(GQA.device).toBe("cpu");
    const { createRequire } = await import("node:module");
    const raw = createRequire(import.meta.url)(CPU_ADDON) as { initDevice(o: unknown): string; cudaBuild(): boolean };
    expect(raw.cudaBuild()).toBe(false);
    expect(() => raw.initDevice({ device: "cuda" })).toThrow(/cannot open cuda:0/);
    expect(() => raw.initDevice({ device: "gpu" })).toThrow(/device/);
    expect(raw.initDevice({ device: "cpu" })).toBe("cpu");
  });

  it("bad device and dtype options are INVALID_OPTION naming them, before anything loads", async () => {
    GQA.reset();
    await expectCode(() => GQA.init({ backend: "cuda", device: -1 }), "INVALID_OPTION", /device/);
    await expectCode(() => GQA.init({ backend: "cuda", device: 0.5 }), "INVALID_OPTION", /device/);
    await expectCode(() => GQA.init({ backend: "cuda", dtype: "f16" as "bf16" }), "INVALID_OPTION", /dtype/);
    expect(GQA.backend).toBeNull();
  });

  it("auto never picks cuda", async () => {
    GQA.reset();
    await GQA.init({ backend: "auto" });
    expect(GQA.backend).not.toBe("cuda");
  });
});

/** Stand-in CUDA libraries for the addon's imports, in a temp dir; `omit` leaves one out. */
function standIns(omit?: string): string {
  const dir = mkdtempSync(join(tmpdir(), "gqa-cuda-standin-"));
  const imports = execFileSync("nm", ["-D", "--undefined-only", CUDA_ADDON], { encoding: "utf8" })
    .split("\n")
    .map((l) => l.trim().split(/\s+/).pop()!.split("@")[0]!)
    .filter(Boolean);
  const libs: [string, RegExp, number][] = [
    ["libcuda.so.1", /^cu[A-Z]/, 100], // CUDA_ERROR_NO_DEVICE
    ["libcublasLt.so.13", /^cublasLt/, 1],
    ["libcublas.so.13", /^cublas(?!Lt)/, 1],
    ["libcurand.so.10", /^curand/, 1],
    ["libnvrtc.so.13", /^nvrtc/, 1],
  ];
  for (const [soname, pattern, code] of libs) {
    if (soname === omit) continue;
    const syms = imports.filter((s) => pattern.test(s));
    const body = syms
      .map((s) => (s === "cuGetErrorString" || s === "cuGetErrorName"
        ? `int ${s}(int e, const char **p) { *p = "no CUDA-capable device is detected (stand-in)"; return 0; }`
        : `int ${s}(void) { return ${code}; }`))
      .join("\n");
    const src = join(dir, `${soname}.c`);
    writeFileSync(src, body + "\n");
    execFileSync("gcc", ["-shared", "-fPIC", `-Wl,-soname,${soname}`, "-o", join(dir, soname), src]);
  }
  return dir;
}

/** `GQA.init({ backend: "cuda" })` in a child node with `LD_LIBRARY_PATH=dir`; its error message. */
function initInChild(dir: string): string {
  const script = `import("${join(ROOT, "dist", "index.js")}").then(async ({ GQA }) => {
    try { await GQA.init({ backend: "cuda" }); console.log("LOADED " + GQA.device); }
    catch (e) { console.log(e.code + " " + e.message); }
  });`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", env: { ...process.env, LD_LIBRARY_PATH: dir, GQA_CUDA_PATH: CUDA_ADDON } });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe.skipIf(!HAS_CUDA_ADDON || !HAS_GCC)("cuda backend on a machine without a GPU (needs `npm run build:cuda`)", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("without the NVIDIA driver, names libcuda.so.1", () => {
    const dir = standIns("libcuda.so.1");
    dirs.push(dir);
    expect(initInChild(dir)).toMatch(/^BACKEND_LOAD_FAILED cuda backend: cannot load .*: no NVIDIA driver: libcuda\.so\.1 cannot be loaded/);
  });

  it("without a CUDA library, names it and LD_LIBRARY_PATH", () => {
    const dir = standIns("libcublas.so.13");
    dirs.push(dir);
    expect(initInChild(dir)).toMatch(/^BACKEND_LOAD_FAILED .*a CUDA 13 library is missing \(libcublas\.so\.13\): put the CUDA 13 libraries on LD_LIBRARY_PATH/);
  });

  it("with a driver and no GPU, says there is no usable GPU at index 0", () => {
    const dir = standIns();
    dirs.push(dir);
    expect(initInChild(dir)).toMatch(/^BACKEND_LOAD_FAILED cuda backend: no usable CUDA GPU at index 0: .*cannot open cuda:0/);
  });
});
