/**
 * The project's Python (for tests that cross between gqa and PyTorch / ONNX): `GQA_PYTHON` when
 * set, else `.venv/bin/python` (made by scripts/setup.sh step 3b), else `python3`. `findPython`
 * checks that the interpreter imports the given modules and says why not when it does not, so a
 * suite can `describe.skipIf(!py.ok)` with that reason in its title (a visible skip, never a
 * silent pass).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Repository root (this file is test/helpers/python.ts). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export type PythonProbe =
  | { ok: true; python: string; versions: Record<string, string> }
  | { ok: false; python: string; reason: string };

/**
 * Finds the interpreter and checks it imports every module in `modules` (e.g. `["torch",
 * "safetensors", "numpy"]`). Returns the versions found, or the reason for a skip.
 */
export function findPython(modules: string[]): PythonProbe {
  const venv = join(REPO_ROOT, ".venv", "bin", "python");
  const python = process.env.GQA_PYTHON || (existsSync(venv) ? venv : "python3");
  const code =
    "import importlib, json, sys\n" +
    "out = {}\n" +
    `for m in ${JSON.stringify(modules)}:\n` +
    "    out[m] = getattr(importlib.import_module(m), '__version__', '?')\n" +
    "print(json.dumps(out))\n";
  const r = spawnSync(python, ["-c", code], { encoding: "utf8", timeout: 120_000 });
  if (r.error) return { ok: false, python, reason: `${python} not runnable (${r.error.message}); run scripts/setup.sh or set GQA_PYTHON` };
  if (r.status !== 0) {
    const last = (r.stderr || "").trim().split("\n").pop() ?? "";
    return { ok: false, python, reason: `${python} cannot import ${modules.join(", ")} (${last}); run scripts/setup.sh or set GQA_PYTHON` };
  }
  return { ok: true, python, versions: JSON.parse(r.stdout.trim().split("\n").pop()!) };
}
