import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Each suite runs once per backend: `GQA_BACKEND=native vitest run` and `GQA_BACKEND=wasm vitest run`
// (scripts/test.sh runs both). `gqa` resolves to the TypeScript source so tests need no tsc step;
// scripts/test.sh separately checks the built package (`import { GQA } from "gqa"` -> dist/).
export default defineConfig({
  resolve: {
    alias: [
      { find: /^gqa$/, replacement: fileURLToPath(new URL("./ts/index.ts", import.meta.url)) },
      { find: /^gqa\/testing$/, replacement: fileURLToPath(new URL("./ts/testing.ts", import.meta.url)) },
    ],
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
