// A worker_threads worker for test/concurrency.test.ts: loads the built package (dist/) on the
// backend it is given, builds its own model, and answers with (1) the forward outputs of its
// inputs, run as overlapping promises, (2) the outcome of dispose() during an in-flight forward
// and push, and (3) the memory budget before and after.
import { parentPort, workerData } from "node:worker_threads";
import { GQA } from "../../dist/index.js";

const { backend, threads, cfg, inputs, dims } = workerData;
try {
  await GQA.init({ backend, threads });
  const inUse0 = GQA.memory.inUse;
  const m = await GQA.build(cfg);
  const outs = await Promise.all(inputs.map((x) => m.forward(new Float32Array(x), dims)));

  // dispose() while a forward and a push are in flight: never throws; each completes with its
  // result or rejects with DISPOSED; later calls reject with DISPOSED.
  const lifecycle = [];
  const s = await m.session({ batch: dims[0], maxLen: dims[1] });
  const f = m.forward(new Float32Array(inputs[0]), dims);
  const p = s.push(new Float32Array(inputs[0]), dims);
  m.dispose();
  s.dispose();
  s.dispose();
  for (const [name, q] of [["forward", f], ["push", p]]) {
    try {
      const y = await q;
      lifecycle.push([name, "ok", Array.from(y.data)]);
    } catch (e) {
      lifecycle.push([name, e.code ?? String(e)]);
    }
  }
  try {
    await m.forward(new Float32Array(inputs[0]), dims);
    lifecycle.push(["after", "ok"]);
  } catch (e) {
    lifecycle.push(["after", e.code ?? String(e)]);
  }
  parentPort.postMessage({
    variant: GQA.variant,
    outs: outs.map((y) => Array.from(y.data)),
    lifecycle,
    inUse: [inUse0, GQA.memory.inUse],
  });
} catch (e) {
  parentPort.postMessage({ error: `${e?.code ?? ""} ${e?.message ?? String(e)}` });
}
