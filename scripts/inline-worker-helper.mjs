// Inlines bindings/wasm/js/start-workers.js into the threaded package's glue in place of its
// import of wasm-bindgen-rayon's worker helper snippet, then removes the snippet folder: the
// package is then the glue and the .wasm only. Run by scripts/setup.sh after every build step; a
// glue that already holds the block (between its first and last marker lines) gets the current one.
// Usage: node scripts/inline-worker-helper.mjs bindings/wasm/pkg-threads
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
const gluePath = join(dir, "gqa_wasm.js");
const glue = readFileSync(gluePath, "utf8");
const IMPORT = /^import \{ startWorkers \} from '\.\/snippets\/wasm-bindgen-rayon-[0-9a-f]+\/src\/workerHelpers\.no-bundler\.js';\n/m;
const BLOCK = /^\/\/ ---- gqa: startWorkers [^\n]*\n[\s\S]*?^\/\/ ---- end of gqa startWorkers -*\n/m;
const helper = readFileSync(new URL("../bindings/wasm/js/start-workers.js", import.meta.url), "utf8");
const found = glue.match(new RegExp(IMPORT.source, "gm")) ?? [];
let out;
if (found.length === 1) {
  out = glue.replace(IMPORT, () => helper);
} else if (found.length === 0 && BLOCK.test(glue)) {
  out = glue.replace(BLOCK, () => helper);
} else {
  console.error(`inline-worker-helper: expected one import of wasm-bindgen-rayon's workerHelpers.no-bundler.js (or gqa's inlined block) in ${gluePath}, found ${found.length} imports`);
  process.exit(1);
}
if (out !== glue) writeFileSync(gluePath, out);
rmSync(join(dir, "snippets"), { recursive: true, force: true });
console.log(`inline-worker-helper: ${gluePath}: startWorkers inlined, snippets/ removed`);
