// Vite config of the static demo (demo/ -> demo/dist/). Built by scripts/setup.sh:
//   vite build --config demo/vite.config.ts
// `gqa` resolves to the package's browser entry (dist/browser.js, wasm backend), as it does for a
// user whose bundler honours package.json `exports["."].browser`. The wasm glue and the `.wasm`
// are found through `new URL("../bindings/wasm/pkg/...", import.meta.url)` in dist/backend.js,
// which Vite turns into emitted assets (the threaded module's glue is self-contained: its worker
// pool code is inlined by scripts/setup.sh). The UEA test split is emitted as an asset and parsed
// in the page by ts/data/uea.ts.
//
// The dev and preview servers send COOP `same-origin` + COEP `require-corp`: the page is then
// crossOriginIsolated, SharedArrayBuffer exists, and gqa runs its threaded wasm module. A host
// without these headers gets the single-threaded module (same results, one thread).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = (p: string) => fileURLToPath(new URL(p, import.meta.url));

const ISOLATION = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };

export default defineConfig({
  root: root("./"),
  server: { headers: ISOLATION },
  preview: { headers: ISOLATION },
  base: "./",
  resolve: { alias: { gqa: root("../dist/browser.js") } },
  worker: { format: "es" },
  build: { outDir: root("./dist"), emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 5000 },
  plugins: [
    {
      name: "gqa-demo-dataset",
      generateBundle() {
        this.emitFile({ type: "asset", fileName: "data/BasicMotions_TEST.ts", source: readFileSync(root("../data/BasicMotions/BasicMotions_TEST.ts")) });
      },
      configureServer(server) {
        server.middlewares.use("/data/BasicMotions_TEST.ts", (_req, res) => {
          res.setHeader("content-type", "text/plain");
          res.end(readFileSync(root("../data/BasicMotions/BasicMotions_TEST.ts")));
        });
      },
    },
  ],
});
