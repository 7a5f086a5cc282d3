import { GQA, GqaError } from "gqa";

try {
  await GQA.build({ embedDim: 6, numHeads: 8, numKvHeads: 3 }); // 3 KV heads cannot share 8 query heads
} catch (e) {
  if (!GqaError.is(e, "INVALID_OPTION")) throw e;
  console.log(e.code, e.option, "|", e.expected, "|", e.found); // typed fields of INVALID_OPTION
}
