/*
 * Adapted from wasm-bindgen-rayon 1.3.0, src/workerHelpers.no-bundler.js:
 *   Copyright 2022 Google Inc. All Rights Reserved.
 *   Licensed under the Apache License, Version 2.0 (the "License");
 *   you may not use this file except in compliance with the License.
 *   You may obtain a copy of the License at
 *       http://www.apache.org/licenses/LICENSE-2.0
 *   Unless required by applicable law or agreed to in writing, software
 *   distributed under the License is distributed on an "AS IS" BASIS,
 *   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 *   See the License for the specific language governing permissions and
 *   limitations under the License.
 *
 * Changes made for gqa (scripts/setup.sh copies this file over the crate's helper in
 * bindings/wasm/pkg-threads/snippets/wasm-bindgen-rayon-<hash>/src/ after wasm-pack):
 * - Node.js: the pool runs on `node:worker_threads` (the crate supports only Web Workers:
 *   upstream issue RReverser/wasm-bindgen-rayon#24). Each worker is `unref()`ed once ready, so
 *   a Node process exits on its own when its work is done.
 * - The worker-side listener is registered only where `self` exists, so importing the package
 *   in Node does not throw `ReferenceError: self is not defined`.
 * - The glue's init is called with an object (`{ module_or_path, memory }`), not the deprecated
 *   positional arguments.
 * - A worker that fails to start rejects `initThreadPool` with the reason instead of hanging.
 * Browsers and Deno keep the crate's own logic: one module Worker per thread, started from a
 * blob of this file.
 */

const IS_NODE = typeof process === 'object' && process !== null && !!process.versions?.node && typeof Deno === 'undefined';

function waitForMsgType(target, type) {
  return new Promise((resolve, reject) => {
    target.addEventListener('message', function onMsg({ data }) {
      if (data == null || data.type !== type) return;
      target.removeEventListener('message', onMsg);
      resolve(data);
    });
    target.addEventListener('error', (e) => reject(new Error(`wasm worker failed to start: ${e?.message ?? e}`)));
  });
}

// Web Worker side (browsers, Deno): wait for the init message, load the glue, join the pool.
// This file is both the Worker's script and a module the page imports, hence the message type.
if (!IS_NODE && typeof self !== 'undefined' && typeof self.addEventListener === 'function') {
  waitForMsgType(self, 'wasm_bindgen_worker_init').then(async (data) => {
    const pkg = await import(data.mainJS);
    await pkg.default({ module_or_path: data.module, memory: data.memory });
    postMessage({ type: 'wasm_bindgen_worker_ready' });
    pkg.wbg_rayon_start_worker(data.receiver);
  });
}

// Kept referenced so that no engine collects a Worker that shares the memory (Firefox bug
// https://bugzilla.mozilla.org/show_bug.cgi?id=1702191).
let _workers;

// Node worker_threads side: CommonJS eval'd code; workerData carries the shared memory, the
// compiled module, the glue's URL and the rayon receiver.
const NODE_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.mainJS).then((pkg) => {
  pkg.initSync({ module: workerData.module, memory: workerData.memory });
  parentPort.postMessage({ type: 'wasm_bindgen_worker_ready' });
  pkg.wbg_rayon_start_worker(workerData.receiver);
}, (e) => { throw e; });
`;

async function startNodeWorkers(module, memory, builder) {
  const { Worker } = await import('node:worker_threads');
  const workerData = { module, memory, receiver: builder.receiver(), mainJS: builder.mainJS() };
  return Promise.all(
    Array.from({ length: builder.numThreads() }, () => new Promise((resolve, reject) => {
      const worker = new Worker(NODE_WORKER, { eval: true, workerData, name: 'gqa-wasm-rayon' });
      const onError = (e) => reject(new Error(`wasm worker thread failed to start: ${e?.message ?? e}`));
      worker.once('error', onError);
      worker.once('message', (msg) => {
        if (msg?.type !== 'wasm_bindgen_worker_ready') return;
        worker.off('error', onError);
        worker.unref();
        resolve(worker);
      });
    })),
  );
}

async function startWebWorkers(module, memory, builder) {
  const workerInit = {
    type: 'wasm_bindgen_worker_init',
    module,
    memory,
    receiver: builder.receiver(),
    mainJS: builder.mainJS(),
  };
  return Promise.all(
    Array.from({ length: builder.numThreads() }, async () => {
      // Self-spawn into a new Worker from a blob of this file (works when the package is served
      // from another origin, e.g. a CDN, without a cross-origin Worker error).
      const scriptBlob = await fetch(import.meta.url).then((r) => r.blob());
      const url = URL.createObjectURL(scriptBlob);
      const worker = new Worker(url, { type: 'module' });
      worker.postMessage(workerInit);
      await waitForMsgType(worker, 'wasm_bindgen_worker_ready');
      URL.revokeObjectURL(url);
      return worker;
    }),
  );
}

export async function startWorkers(module, memory, builder) {
  if (builder.numThreads() === 0) {
    throw new Error(`num_threads must be > 0.`);
  }
  _workers = await (IS_NODE ? startNodeWorkers : startWebWorkers)(module, memory, builder);
  builder.build();
}
