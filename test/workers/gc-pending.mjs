// Run by test/concurrency.test.ts as `node --expose-gc test/workers/gc-pending.mjs <backend>`:
// starts forwards, pushes and a fit on models, sessions and trainers whose last JS references
// are then dropped and collected while the calls are pending. Every call must settle (result or
// DISPOSED), the process must not crash, and once everything is collected the memory budget must
// be back where it started. Prints one JSON line.
import { GQA } from "../../dist/index.js";

const backend = process.argv[2] ?? "native";
await GQA.init({ backend, threads: 1 });
const cfg = { embedDim: 4, hiddenSize: 32, numHeads: 4, numKvHeads: 2, numLayers: 2, dropout: 0, head: { type: "classification", numClasses: 2 } };
const x = Float32Array.from({ length: 2 * 16 * 4 }, (_, i) => Math.sin(i));
const inUse0 = GQA.memory.inUse;

let settled = 0;
const failed = [];
const pending = [];
function watch(p) {
  pending.push(
    p.then(
      () => settled++,
      (e) => {
        settled++;
        if (e?.code !== "DISPOSED") failed.push(`${e?.code} ${e?.message}`);
      },
    ),
  );
}
for (let round = 0; round < 20; round++) {
  // No variable keeps the model or session: only the pending promises reference them.
  await (async () => {
    const m = await GQA.build({ ...cfg, seed: round });
    watch(m.forward(x, [2, 16, 4]));
    watch(m.predict(x, [2, 16, 4]));
    const s = await m.session({ batch: 2, maxLen: 16 });
    watch(s.push(x, [2, 16, 4]));
    if (round % 5 === 0) watch(m.fit({ x, dims: [2, 16, 4], labels: new Uint32Array([0, 1]) }, { epochs: 2, batchSize: 1 }));
  })();
  globalThis.gc();
}
await Promise.all(pending);
for (let i = 0; i < 10; i++) {
  globalThis.gc();
  await new Promise((r) => setTimeout(r, 20));
}
console.log(JSON.stringify({ settled, expected: pending.length, failed, inUse: [inUse0, GQA.memory.inUse] }));
