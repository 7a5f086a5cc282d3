// Checks the built package as a user sees it: `import { GQA } from "gqa"` resolves through
// package.json `exports` (self-reference) to dist/, loads the backend named by GQA_BACKEND and
// answers a call whose value is known (the approximate paramCount of SPEC section 3,
// computed independently below).
import { GQA, GqaError } from "gqa";

const want = process.env.GQA_BACKEND ?? "auto";
await GQA.init();
if (want !== "auto" && GQA.backend !== want) throw new Error(`asked for ${want}, got ${GQA.backend}`);
const H = 256, NH = 8, NKV = 2, L = 4, E = 12, D = H / NH;
const expected = E * H + L * (2 * H * NH * D + 2 * H * NKV * D + 8 * H * H);
const got = GQA.paramCount({ embedDim: E });
if (got !== expected) throw new Error(`paramCount: expected ${expected}, got ${got}`);
try {
  GQA.validate({ embedDim: E, numHeads: 7 });
  throw new Error("numHeads=7 should be rejected");
} catch (e) {
  if (!(e instanceof GqaError) || e.code !== "INVALID_OPTION") throw e;
}
console.log(`smoke ok: import "gqa" -> ${GQA.backend} (${GQA.backendFile}), paramCount=${got}`);
