// The shipped declarations (dist/*.d.ts) as a user's TypeScript sees them: a small program that
// imports `gqa`, `gqa/data` and `gqa/testing` compiles with strict tsc and no @types/node
// (`"types": []`, what `tsc --types ''` means; the CLI refuses an empty value), so no public type may name a Node-only type such as Buffer or NodeJS.*.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = join(root, "node_modules", ".bin", "tsc");
const dir = mkdtempSync(join(tmpdir(), "gqa-dts-"));

beforeAll(() => {
  if (!existsSync(join(root, "dist", "index.d.ts"))) {
    const r = spawnSync(tsc, ["-p", "tsconfig.build.json"], { cwd: root, encoding: "utf8" });
    if (!existsSync(join(root, "dist", "index.d.ts"))) throw new Error(`could not build dist: ${r.stdout}${r.stderr}`);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A consumer using the public surface: options, models, bytes in and out, data readers, errors. */
const CONSUMER = `
import { GQA, GqaError, DataFormatError, readMetadata, readCliMetadata, type GqaOptions, type Model } from "gqa";
import { parseCsv, parseNpy, encodeNpy, readCsv, readLabelled, readSeriesInput, padBatch, standardize, channelStats } from "gqa/data";
import { errorCatalog } from "gqa/testing";

export async function run(path: string): Promise<number> {
  const opts: GqaOptions = { embedDim: 3, hiddenSize: 8, numHeads: 2, numKvHeads: 1, numLayers: 1 };
  const model: Model = await GQA.build(opts);
  const bytes: Uint8Array = await model.save();
  const again = await GQA.load(bytes);
  const meta: Record<string, string> = readMetadata(bytes);
  const series = parseCsv("a,b,c\\n1,2,3\\n", "x.csv");
  const npy = parseNpy(encodeNpy(Float32Array.from([1, 2]), [1, 2]), "x.npy");
  const fromFile = await readCsv(path);
  const labelled = await readLabelled(path, { task: "classification" });
  const input = await readSeriesInput(path);
  const b = padBatch(standardize([series.data], channelStats([series.data], 3)), 3);
  const y = await again.predict(b.data, b.dims, { lengths: b.lengths });
  try {
    readCliMetadata(bytes, path);
  } catch (e) {
    if (e instanceof DataFormatError || e instanceof GqaError) return -1;
  }
  model.dispose();
  again.dispose();
  return y.data.length + Object.keys(meta).length + npy.data.length + fromFile.channels + labelled.series.length + input.dims[0] + errorCatalog().length;
}
`;

describe("shipped type declarations", () => {
  it("compile under strict tsc without @types/node", () => {
    mkdirSync(join(dir, "node_modules"));
    // The package as installed: node_modules/gqa -> the checkout (its package.json `exports`).
    symlinkSync(root, join(dir, "node_modules", "gqa"), "dir");
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", type: "module", private: true }));
    writeFileSync(join(dir, "consumer.ts"), CONSUMER);
    // skipLibCheck off: the declarations themselves are checked.
    const compilerOptions = { strict: true, noEmit: true, types: [], skipLibCheck: false, target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext" };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["consumer.ts"] }));
    const r = spawnSync(tsc, ["-p", dir], { cwd: dir, encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  }, 120_000);
});
