/**
 * Property tests and fuzz targets of the data readers (`ts/data`: UEA `.ts`, CSV, `.npy`), shared
 * by the vitest smoke run (`test/readers-fuzz.test.ts`, a few hundred cases per property in
 * `npm test`) and the long run (`scripts/fuzz-readers.mjs`, minutes per target; figures in the
 * docs/building-and-testing.md). fast-check 4 generates the inputs.
 *
 * Properties:
 * - total: any input (random text / bytes, and mutations of valid files: byte flips, truncation,
 *   insertion, line shuffles) either parses into a structure whose invariants hold (shapes add
 *   up, values finite) or throws `DataFormatError` (code `MALFORMED_FILE`, naming the file); no
 *   other exception, no hang (each case is timed);
 * - round trip: a random valid dataset written in each format parses back to the same values
 *   (float32 exactly) and labels.
 */
import fc from "fast-check";

import { DataFormatError, parseCsv, parseNpy, parseUea } from "../../ts/data/index.js";

/** Longest time one parse of a fuzz case may take (ms) before the case counts as a hang. */
export const CASE_BUDGET_MS = 2_000;

function timed<T>(what: string, f: () => T): T {
  const t0 = performance.now();
  try {
    return f();
  } finally {
    const ms = performance.now() - t0;
    if (ms > CASE_BUDGET_MS) throw new Error(`${what}: one parse took ${ms.toFixed(0)} ms (budget ${CASE_BUDGET_MS} ms)`);
  }
}

/** Runs `parse`; a `DataFormatError` naming `file` passes, any other exception fails the property. */
function totalOn<T>(what: string, file: string, parse: () => T, check: (v: T) => void): void {
  let out: T;
  try {
    out = timed(what, parse);
  } catch (e) {
    if (e instanceof DataFormatError && e.code === "MALFORMED_FILE" && e.message.startsWith(file)) return;
    throw e;
  }
  check(out);
}

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

const finite = (a: Float32Array) => a.every(Number.isFinite);

export function checkUea(d: ReturnType<typeof parseUea>): void {
  assert(d.series.length === d.lengths.length, `series ${d.series.length} vs lengths ${d.lengths.length}`);
  assert(d.labels.length === 0 || d.labels.length === d.series.length, `labels ${d.labels.length} vs series ${d.series.length}`);
  assert(d.channels >= 1, `channels ${d.channels}`);
  d.series.forEach((s, i) => {
    assert(d.lengths[i]! >= 1 && s.length === d.lengths[i]! * d.channels, `case ${i}: ${s.length} values for T=${d.lengths[i]} C=${d.channels}`);
    assert(finite(s), `case ${i}: non-finite value`);
  });
  d.labels.forEach((l) => assert(Number.isInteger(l) && l >= 0 && l < d.classLabels.length, `label index ${l} of ${d.classLabels.length}`));
}

export function checkCsv(c: ReturnType<typeof parseCsv>): void {
  assert(c.timesteps >= 1 && c.channels >= 1, `T ${c.timesteps} C ${c.channels}`);
  assert(c.data.length === c.timesteps * c.channels, `${c.data.length} values for ${c.timesteps}x${c.channels}`);
  assert(finite(c.data), "non-finite value");
  assert(c.columns === undefined || c.columns.length === c.channels, `columns ${c.columns?.length} vs ${c.channels}`);
}

export function checkNpy(n: ReturnType<typeof parseNpy>): void {
  const count = n.shape.reduce((a, b) => a * b, 1);
  assert(n.shape.every((d) => Number.isInteger(d) && d >= 0), `shape ${n.shape}`);
  assert(n.data.length === count, `${n.data.length} values for shape [${n.shape}]`);
  assert(finite(n.data), "non-finite value");
}

// ---------------------------------------------------------------------------------------------
// Generators

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A value that survives float32 and prints exactly in JavaScript (`String(Math.fround(x))`). */
const f32 = fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }).map((x) => Math.fround(x));

/** A random valid multichannel dataset: N cases, C channels, lengths, labels. */
const dataset = fc
  .record({ n: fc.integer({ min: 1, max: 6 }), c: fc.integer({ min: 1, max: 4 }), k: fc.integer({ min: 1, max: 4 }) })
  .chain(({ n, c, k }) =>
    fc.record({
      c: fc.constant(c),
      labels: fc.array(fc.integer({ min: 0, max: k - 1 }), { minLength: n, maxLength: n }),
      k: fc.constant(k),
      series: fc.array(
        fc.integer({ min: 1, max: 12 }).chain((t) => fc.array(f32, { minLength: t * c, maxLength: t * c })),
        { minLength: n, maxLength: n },
      ),
    }),
  );

/** A float32 value as text that reads back to the same value (`String` drops the sign of -0). */
const num = (v: number) => (Object.is(v, -0) ? "-0" : String(v));

/** Writes a dataset as UEA `.ts` (variable lengths, class labels `c0..`). */
export function writeUea(d: { c: number; k: number; labels: number[]; series: number[][] }): string {
  const classes = Array.from({ length: d.k }, (_, i) => `c${i}`);
  const lines = ["# written by test/fuzz/readers.ts", "@problemName fuzz", "@timeStamps false", "@missing false", `@univariate ${d.c === 1}`];
  if (d.c > 1) lines.push(`@dimensions ${d.c}`);
  lines.push("@equalLength false", `@classLabel true ${classes.join(" ")}`, "@data");
  d.series.forEach((s, i) => {
    const t = s.length / d.c;
    const chans = Array.from({ length: d.c }, (_, ch) => Array.from({ length: t }, (_, j) => num(s[j * d.c + ch]!)).join(","));
    lines.push(`${chans.join(":")}:${classes[d.labels[i]!]}`);
  });
  return lines.join("\n") + "\n";
}

/** Writes the first case of a dataset as CSV with a header. */
function writeCsv(s: number[], c: number, sep: string): string {
  const rows = [Array.from({ length: c }, (_, i) => `ch${i}`).join(sep)];
  for (let t = 0; t < s.length / c; t++) rows.push(s.slice(t * c, (t + 1) * c).map(num).join(sep));
  return rows.join("\n") + "\n";
}

/** Writes `[T, C]` float32 values as `.npy` version 1.0 (C order). */
export function writeNpy(s: number[], c: number, descr = "<f4"): Uint8Array {
  const t = s.length / c;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${t}, ${c}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += " ".repeat(pad % 64) + "\n";
  const out = new Uint8Array(10 + header.length + s.length * 4);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(enc.encode(header), 10);
  new Float32Array(out.buffer, 10 + header.length).set(s);
  return out;
}

/** Mutations of a valid byte string: flips, truncation, insertion, duplication of a slice. */
function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }))
    .map(([bytes, ops]) => {
      let b = Array.from(bytes);
      for (const [pos, op, val] of ops) {
        const p = b.length ? pos % (b.length + 1) : 0;
        if (op === 0 && p < b.length) b[p] = val;
        else if (op === 1) b = b.slice(0, p);
        else if (op === 2) b.splice(p, 0, val);
        else if (op === 3 && p < b.length) b.splice(p, 0, ...b.slice(p, p + (val % 16) + 1));
        else if (op === 4 && p < b.length) b.splice(p, (val % 8) + 1);
      }
      return Uint8Array.from(b);
    });
}

/** Characters that matter to the text formats, mixed into random text. */
const textChar = fc.constantFrom(..."0123456789.,:;-+eE \t\n\r#@?abcNnIifT".split(""));
const formatText = fc.oneof(
  fc.string({ maxLength: 400 }),
  fc.array(textChar, { maxLength: 600 }).map((cs) => cs.join("")),
);
const ueaText = fc.oneof(
  formatText.map((s) => "@problemName x\n@classLabel true a b\n@data\n" + s),
  formatText.map((s) => "@dimensions 2\n@univariate false\n@equalLength true\n@seriesLength 3\n@classLabel true 1 2\n@data\n" + s),
  formatText,
);

// ---------------------------------------------------------------------------------------------
// Properties (fast-check `IProperty`s; callers choose numRuns / time)

export const properties = {
  "uea: any text parses or throws DataFormatError": fc.property(ueaText, (s) => totalOn("uea", "fuzz.ts", () => parseUea(s, "fuzz.ts"), checkUea)),
  "uea: mutated valid files parse or throw DataFormatError": fc.property(mutated(dataset.map((d) => enc.encode(writeUea(d)))), (b) =>
    totalOn("uea", "fuzz.ts", () => parseUea(dec.decode(b), "fuzz.ts"), checkUea),
  ),
  "uea: round trip of random datasets": fc.property(dataset, (d) => {
    const got = parseUea(writeUea(d), "fuzz.ts");
    checkUea(got);
    assert(got.channels === d.c && got.series.length === d.series.length, "shape");
    d.series.forEach((s, i) => assert(got.series[i]!.every((v, j) => Object.is(v, s[j])), `case ${i} values`));
    assert(got.labels.every((l, i) => got.classLabels[l] === `c${d.labels[i]}`), "labels");
  }),
  "csv: any text parses or throws DataFormatError": fc.property(formatText, (s) => totalOn("csv", "fuzz.csv", () => parseCsv(s, "fuzz.csv"), checkCsv)),
  "csv: mutated valid files parse or throw DataFormatError": fc.property(
    mutated(fc.tuple(dataset, fc.constantFrom(",", ";", "\t")).map(([d, sep]) => enc.encode(writeCsv(d.series[0]!, d.c, sep)))),
    (b) => totalOn("csv", "fuzz.csv", () => parseCsv(dec.decode(b), "fuzz.csv"), checkCsv),
  ),
  "csv: round trip of random series": fc.property(dataset, fc.constantFrom(",", ";", "\t"), (d, sep) => {
    const s = d.series[0]!;
    const got = parseCsv(writeCsv(s, d.c, sep), "fuzz.csv");
    checkCsv(got);
    assert(got.channels === d.c && got.timesteps === s.length / d.c, "shape");
    assert(got.data.every((v, j) => Object.is(v, s[j])), "values");
  }),
  "npy: any bytes parse or throw DataFormatError": fc.property(fc.uint8Array({ maxLength: 300 }), (b) =>
    totalOn("npy", "fuzz.npy", () => parseNpy(b, "fuzz.npy"), checkNpy),
  ),
  "npy: mutated valid files parse or throw DataFormatError": fc.property(mutated(dataset.map((d) => writeNpy(d.series[0]!, d.c))), (b) =>
    totalOn("npy", "fuzz.npy", () => parseNpy(b, "fuzz.npy"), checkNpy),
  ),
  "npy: round trip of random arrays": fc.property(dataset, (d) => {
    const s = d.series[0]!;
    const got = parseNpy(writeNpy(s, d.c), "fuzz.npy");
    checkNpy(got);
    assert(got.shape.join() === `${s.length / d.c},${d.c}`, `shape ${got.shape}`);
    assert(got.data.every((v, j) => Object.is(v, s[j])), "values");
  }),
} as const;

/** The three fuzz targets of the long run, each a list of property names. */
export const TARGETS: Record<string, (keyof typeof properties)[]> = {
  uea: ["uea: any text parses or throws DataFormatError", "uea: mutated valid files parse or throw DataFormatError", "uea: round trip of random datasets"],
  csv: ["csv: any text parses or throws DataFormatError", "csv: mutated valid files parse or throw DataFormatError", "csv: round trip of random series"],
  npy: ["npy: any bytes parse or throw DataFormatError", "npy: mutated valid files parse or throw DataFormatError", "npy: round trip of random arrays"],
};
