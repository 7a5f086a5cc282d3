// ---- gqa: startWorkers for wasm-bindgen-rayon (bindings/wasm/js/start-workers.js) ----------------
// scripts/setup.sh inlines this block into bindings/wasm/pkg-threads/gqa_wasm.js in place of the
// glue's `import { startWorkers } from './snippets/wasm-bindgen-rayon-<hash>/src/workerHelpers.no-bundler.js'`,
// so the package is two files (glue + .wasm) that any static host or bundler serves as they are.
//
// Follows the protocol of wasm-bindgen-rayon 1.3.0's src/workerHelpers.no-bundler.js
// (Copyright 2022 Google Inc., Apache License 2.0, http://www.apache.org/licenses/LICENSE-2.0):
// one worker per pool thread receives the module, the shared memory, the glue's URL and the
// rayon receiver, initialises the glue with that memory, reports ready, and enters
// `wbg_rayon_start_worker`; `builder.build()` runs once every worker is ready. Changes for gqa:
// - Node.js and Deno run the workers on `node:worker_threads` (the crate supports Web Workers
//   only: upstream issue RReverser/wasm-bindgen-rayon#24), each `unref()`ed once ready so that
//   the process exits on its own (Deno's Web Workers cannot be unref'd and would keep it alive);
// - browsers start module Workers from a small inline source (a blob URL), not from a fetch of
//   the helper's own file, so no extra file has to be served and importing the glue never
//   touches `self`;
// - once the pool is built, one `poolHandshake()` (an export of gqa's glue, in scope here) joins
//   onto it from the calling thread. In Deno, `build()` and that call run with the `Window`
//   global hidden: rayon's locks (wasm_sync) busy-spin on any thread whose global is a `Window`,
//   deciding once per thread, and Deno's main thread is one although it may block with
//   `Atomics.wait`; spinning there competes with the pool's workers for the same cores (measured
//   on 2 cores: 1.0x instead of 1.8x);
// - the glue's init gets an object (`{ module_or_path, memory }`), not deprecated positional
//   arguments; a worker that fails to start rejects `initThreadPool` instead of hanging.

// Node, and Deno (whose `process` global carries `versions.node`): node:worker_threads.
const GQA_IS_NODE = (typeof process === 'object' && process !== null && !!process.versions?.node) || typeof Deno === 'object';

// Kept referenced so that no engine collects a Worker that shares the memory (Firefox bug
// https://bugzilla.mozilla.org/show_bug.cgi?id=1702191).
let gqaWorkers;

const GQA_WEB_WORKER = `
self.addEventListener('message', async function onMsg({ data }) {
  if (data == null || data.type !== 'wasm_bindgen_worker_init') return;
  self.removeEventListener('message', onMsg);
  const pkg = await import(data.mainJS);
  await pkg.default({ module_or_path: data.module, memory: data.memory });
  postMessage({ type: 'wasm_bindgen_worker_ready' });
  pkg.wbg_rayon_start_worker(data.receiver);
});
`;

// Only dynamic imports: the worker inherits the process's execArgv, so the eval'd code is
// CommonJS or, under --input-type=module, an ES module; this runs as either.
const GQA_NODE_WORKER = `
import('node:worker_threads').then(async ({ parentPort, workerData }) => {
  const pkg = await import(workerData.mainJS);
  pkg.initSync({ module: workerData.module, memory: workerData.memory });
  parentPort.postMessage({ type: 'wasm_bindgen_worker_ready' });
  pkg.wbg_rayon_start_worker(workerData.receiver);
});
`;

async function gqaStartNodeWorkers(init, n) {
  const { Worker } = await import('node:worker_threads');
  const { type: _type, ...workerData } = init;
  return Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const worker = new Worker(GQA_NODE_WORKER, { eval: true, workerData, name: 'gqa-wasm-rayon' });
    const onError = (e) => reject(new Error(`gqa: a wasm worker thread failed to start: ${e?.message ?? e}`));
    worker.once('error', onError);
    worker.on('message', function onMsg(msg) {
      if (msg?.type !== 'wasm_bindgen_worker_ready') return;
      worker.off('message', onMsg);
      worker.off('error', onError);
      worker.unref();
      resolve(worker);
    });
  })));
}

async function gqaStartWebWorkers(init, n) {
  const url = URL.createObjectURL(new Blob([GQA_WEB_WORKER], { type: 'text/javascript' }));
  try {
    return await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const worker = new Worker(url, { type: 'module' });
      worker.addEventListener('error', (e) => reject(new Error(`gqa: a wasm Web Worker failed to start: ${e?.message ?? e}`)));
      worker.addEventListener('message', function onMsg({ data }) {
        if (data?.type !== 'wasm_bindgen_worker_ready') return;
        worker.removeEventListener('message', onMsg);
        resolve(worker);
      });
      worker.postMessage(init);
    })));
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function startWorkers(module, memory, builder) {
  const n = builder.numThreads();
  if (n === 0) throw new Error('num_threads must be > 0.');
  const init = { type: 'wasm_bindgen_worker_init', module, memory, receiver: builder.receiver(), mainJS: builder.mainJS() };
  gqaWorkers = await (GQA_IS_NODE ? gqaStartNodeWorkers : gqaStartWebWorkers)(init, n);
  const hide = typeof Deno === 'object' && Object.getOwnPropertyDescriptor(globalThis, 'Window')?.configurable === true;
  const saved = hide ? Object.getOwnPropertyDescriptor(globalThis, 'Window') : undefined;
  if (hide) delete globalThis.Window;
  try {
    builder.build();
    poolHandshake();
  } finally {
    if (hide) Object.defineProperty(globalThis, 'Window', saved);
  }
}
// ---- end of gqa startWorkers -------------------------------------------------------------------
