/**
 * Browser entry of gqa (package.json `exports["."].browser`): the same API, wasm backend only.
 * `GQA.init()` (or the first build/load) fetches `bindings/wasm/pkg-threads/gqa_wasm_bg.wasm`
 * (threaded: the page must be `crossOriginIsolated`, i.e. served with COOP `same-origin` and COEP
 * `require-corp`) or else `bindings/wasm/pkg/gqa_wasm_bg.wasm` (single-threaded), next to the
 * package.
 */
export * from "./index.js";
