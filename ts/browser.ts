/**
 * Browser entry of gqa (package.json `exports["."].browser`): the same API, wasm backend only.
 * `GQA.init()` (or the first build/load) fetches `bindings/wasm/pkg/gqa_wasm_bg.wasm` next to
 * the package.
 */
export * from "./index.js";
