// Data readers: UEA .ts parser, dataset resolution, standardisation, padding, CSV and .npy inputs.
// Reference values come from NumPy (fixtures made by test/fixtures-data/make_fixtures.py, and the
// JapaneseVowels channel statistics below computed with NumPy 2.4.6 from the raw text files).
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  DataFormatError,
  DataNotFoundError,
  batchIndices,
  channelStats,
  loadDataset,
  padBatch,
  parseCsv,
  parseNpy,
  parseUea,
  readCsv,
  readNpy,
  readSeriesInput,
  readUea,
  readLabelled,
  resolveDataset,
  sortClassNames,
  standardize,
  trainingData,
} from "../ts/data/index.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const fx = (name: string) => join(root, "test", "fixtures-data", name);
const tmp = mkdtempSync(join(tmpdir(), "gqa-data-test-"));

/** Expects `fn` to throw a DataFormatError at `line` whose problem matches `re`. */
async function expectFormatError(fn: () => unknown, line: number | undefined, re: RegExp): Promise<DataFormatError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DataFormatError);
  const e = err as DataFormatError;
  expect(e.line).toBe(line);
  expect(e.problem).toMatch(re);
  expect(e.code).toBe("MALFORMED_FILE");
  return e;
}

describe("UEA .ts parser on the shipped datasets", () => {
  it("JapaneseVowels: 270/370 cases, 12 channels, 9 classes, lengths 7..29", async () => {
    const ds = await loadDataset("japanese-vowels");
    expect(ds.name).toBe("japanese-vowels");
    expect(ds.train.name).toBe("JapaneseVowels");
    expect(ds.train.series.length).toBe(270);
    expect(ds.test.series.length).toBe(370);
    // Lengths 7..29 overall (train 7..26, test 7..29, counted with awk on the raw files).
    for (const [split, maxLen] of [[ds.train, 26], [ds.test, 29]] as const) {
      expect(split.channels).toBe(12);
      expect(split.classLabels).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
      expect(Math.min(...split.lengths)).toBe(7);
      expect(Math.max(...split.lengths)).toBe(maxLen);
      split.series.forEach((s, i) => expect(s.length).toBe(split.lengths[i]! * 12));
      expect(split.labels.length).toBe(split.series.length);
    }
    // Totals of time steps (NumPy: 4274 train, 5687 test).
    expect(ds.train.lengths.reduce((a, b) => a + b, 0)).toBe(4274);
    expect(ds.test.lengths.reduce((a, b) => a + b, 0)).toBe(5687);
    // 30 utterances per speaker in train; unequal test classes (31 35 88 44 29 24 40 50 29).
    const count = (labels: number[]) => labels.reduce((acc, l) => ((acc[l] = (acc[l] ?? 0) + 1), acc), [] as number[]);
    expect(count(ds.train.labels)).toEqual(new Array(9).fill(30));
    expect(count(ds.test.labels)).toEqual([31, 35, 88, 44, 29, 24, 40, 50, 29]);
    // First case: 20 steps; time-major layout t*C + c.
    const s0 = ds.train.series[0]!;
    expect(ds.train.lengths[0]).toBe(20);
    expect(s0[0]).toBeCloseTo(1.860936, 6); // t=0, channel 1
    expect(s0[1]).toBeCloseTo(-0.207383, 6); // t=0, channel 2
    expect(s0[2]).toBeCloseTo(0.261557, 6); // t=0, channel 3
    expect(s0[1 * 12 + 0]).toBeCloseTo(1.891651, 6); // t=1, channel 1
    expect(s0[19 * 12 + 11]).toBeCloseTo(-0.175986, 6); // last step, last channel
    expect(ds.train.classLabels[ds.train.labels[0]!]).toBe("1");
  });

  it("BasicMotions: 40/40 cases, 6 channels, length 100, 4 classes", async () => {
    const ds = await loadDataset("BasicMotions");
    expect(ds.name).toBe("basic-motions");
    for (const split of [ds.train, ds.test]) {
      expect(split.series.length).toBe(40);
      expect(split.channels).toBe(6);
      expect(new Set(split.lengths)).toEqual(new Set([100]));
      expect(split.classLabels).toEqual(["Standing", "Running", "Walking", "Badminton"]);
      const counts = [0, 0, 0, 0];
      split.labels.forEach((l) => counts[l]!++);
      expect(counts).toEqual([10, 10, 10, 10]);
    }
    const first = ds.train.series[0]!;
    expect(Array.from(first.subarray(0, 6))).toEqual(
      [0.079106, 0.394032, 0.551444, 0.351565, 0.02397, 0.633883].map(Math.fround),
    );
    expect(ds.train.classLabels[ds.train.labels[0]!]).toBe("Standing");
    expect(ds.train.classLabels[ds.train.labels[39]!]).toBe("Badminton");
    expect(ds.train.series[39]![99 * 6 + 5]).toBe(Math.fround(0.428803));
  });

  it("resolves names case-insensitively, directories, prefixes and single files", () => {
    const a = resolveDataset("JapaneseVowels");
    expect(resolveDataset("japanese_vowels")).toEqual(a);
    expect(resolveDataset("JAPANESE-VOWELS")).toEqual(a);
    expect(a.train).toBe(join(root, "data", "JapaneseVowels", "JapaneseVowels_TRAIN.ts"));
    const dir = resolveDataset(join(root, "data", "BasicMotions"));
    expect(dir.train).toBe(join(root, "data", "BasicMotions", "BasicMotions_TRAIN.ts"));
    expect(dir.test).toBe(join(root, "data", "BasicMotions", "BasicMotions_TEST.ts"));
    expect(resolveDataset(join(root, "data", "BasicMotions", "BasicMotions")).test).toBe(dir.test);
    expect(resolveDataset(join(root, "data", "BasicMotions", "BasicMotions_TEST.ts")).train).toBe(dir.train);
    expect(() => resolveDataset("no-such-dataset")).toThrow(DataNotFoundError);
    expect(() => resolveDataset(join(root, "data"))).toThrow(/expected one \*_TRAIN\.ts and one \*_TEST\.ts/);
  });

  it("reports a missing file as DataNotFoundError", async () => {
    await expect(readUea(join(tmp, "absent_TRAIN.ts"))).rejects.toThrow(DataNotFoundError);
    await expect(readUea(join(tmp, "absent_TRAIN.ts"))).rejects.toThrow(/no such file/);
  });
});

describe("UEA .ts parser on small and malformed files", () => {
  it("parses a small valid file with comments, blank lines, exponents and variable lengths", async () => {
    const d = await readUea(fx("good_small.ts"));
    expect(d.name).toBe("Tiny");
    expect(d.channels).toBe(2);
    expect(d.classLabels).toEqual(["a", "b", "c"]);
    expect(d.lengths).toEqual([3, 2, 2]);
    expect(d.labels).toEqual([0, 2, 1]);
    expect(Array.from(d.series[0]!)).toEqual([1, 4, 2, 5, 3, 6]);
    expect(Array.from(d.series[1]!)).toEqual([7, 9, 8, 10]);
    expect(Array.from(d.series[2]!)).toEqual([-15, 0, 2.5, 0.5]);
  });

  it("a case with a channel missing in JapaneseVowels: line 57, expected 12 channels, found 11", async () => {
    const path = resolveDataset("japanese-vowels").train;
    const lines = readFileSync(path, "utf8").split("\n");
    const fields = lines[56]!.split(":");
    fields.splice(3, 1); // drop channel 4 of the case on line 57
    lines[56] = fields.join(":");
    const e = await expectFormatError(() => parseUea(lines.join("\n"), "jv.ts"), 57, /^expected 12 channels, found 11$/);
    expect(e.message).toBe("jv.ts:57: expected 12 channels, found 11");
  });

  const cases: [string, number, RegExp][] = [
    ["missing_channel.ts", 10, /^expected 3 channels, found 2$/],
    ["missing_value.ts", 9, /channel 1, step 2: missing value '\?'/],
    ["bad_label.ts", 7, /class label 'z' is not one of @classLabel \(x y\)/],
    ["ragged_channels.ts", 6, /channel 2 has 2 values, channel 1 has 3/],
    ["not_a_number.ts", 8, /channel 2, step 2: 'abc' is not a finite number/],
    ["no_data.ts", 4, /missing @data/],
    ["wrong_length.ts", 8, /expected series length 3 \(@equalLength true\), found 4/],
    ["timestamps.ts", 2, /@timeStamps true is not supported/],
    ["bad_tag.ts", 2, /@dimensions expects an integer >= 1, found 'two'/],
  ];
  for (const [file, line, re] of cases) {
    it(`${file} fails at line ${line}`, async () => {
      const e = await expectFormatError(() => readUea(fx(file)), line, re);
      expect(e.file).toBe(fx(file));
      expect(e.message.startsWith(`${fx(file)}:${line}: `)).toBe(true);
    });
  }

  it("rejects other header and data faults with their line", async () => {
    const h = "@problemName P\n@dimensions 1\n@classLabel true x\n@data\n";
    await expectFormatError(() => parseUea(h + "1,2:x\n@dimensions 2\n"), 6, /header tag @dimensions after @data/);
    await expectFormatError(() => parseUea(h), 4, /no cases after @data/);
    await expectFormatError(() => parseUea("@problemName P\n1,2:x\n"), 2, /data before @data/);
    await expectFormatError(() => parseUea("@problemName P\n@problemName Q\n"), 2, /duplicate header tag/);
    await expectFormatError(() => parseUea("@problemName P\n@bogus 1\n"), 2, /unknown header tag @bogus/);
    await expectFormatError(() => parseUea("@problemName P\n@dimensions 1\n@data\n1:x\n"), 3, /missing @classLabel/);
    await expectFormatError(() => parseUea(h + "1,2,3\n"), 5, /found no ':'/);
    await expectFormatError(() => parseUea(h + "1,2:3,4\n"), 5, /is the label missing/);
    await expectFormatError(() => parseUea(h + "1,NaN:x\n"), 5, /'NaN' is not a finite number/);
    await expectFormatError(() => parseUea(h + "1,1e39:x\n"), 5, /does not fit in float32/);
    await expectFormatError(() => parseUea(h + "1,,2:x\n"), 5, /step 2: empty value/);
    await expectFormatError(() => parseUea("@classLabel true x x\n@data\n1:x\n"), 1, /listed twice/);
  });

  it("accepts CRLF line ends and @classLabel false (no labels)", () => {
    const d = parseUea("@problemName P\r\n@classLabel false\r\n@data\r\n1,2:3,4\r\n5:6\r\n");
    expect(d.channels).toBe(2);
    expect(d.labels).toEqual([]);
    expect(d.lengths).toEqual([2, 1]);
  });
});

describe("standardisation uses training statistics only", () => {
  it("matches NumPy's per-channel mean and population std of JapaneseVowels train", async () => {
    const { train } = await loadDataset("japanese-vowels");
    const st = channelStats(train.series, train.channels);
    // np.concatenate(train).astype(float64).mean(0) / .std(0)  (NumPy 2.4.6)
    const npMean = [0.8691055, -0.55450144, 0.24610909, -0.26729376, 0.21897663, -0.21053824, -0.17406514, -0.05170503, -0.20493131, -0.18119385, -0.02359156, 0.08621398];
    const npStd = [0.48761988, 0.39118183, 0.30090287, 0.30591239, 0.26909894, 0.16830004, 0.16122476, 0.18834022, 0.18772421, 0.11691696, 0.09763703, 0.12754669];
    st.mean.forEach((m, c) => expect(m).toBeCloseTo(npMean[c]!, 7));
    st.std.forEach((s, c) => expect(s).toBeCloseTo(npStd[c]!, 7));
  });

  it("train becomes mean 0 / std 1; test is shifted by the train statistics, not its own", async () => {
    const { train, test } = await loadDataset("japanese-vowels");
    const st = channelStats(train.series, 12);
    const [ztrain, ztest] = [standardize(train.series, st), standardize(test.series, st)];
    // Independent moments: one pass in float64 over all valid steps.
    const moments = (series: Float32Array[]) => {
      const n = new Float64Array(12), s = new Float64Array(12), s2 = new Float64Array(12);
      for (const x of series) for (let j = 0; j < x.length; j++) { n[j % 12]!++; s[j % 12]! += x[j]!; s2[j % 12]! += x[j]! * x[j]!; }
      return Array.from(n, (k, c) => ({ mean: s[c]! / k, std: Math.sqrt(s2[c]! / k - (s[c]! / k) ** 2) }));
    };
    for (const m of moments(ztrain)) {
      expect(m.mean).toBeCloseTo(0, 5);
      expect(m.std).toBeCloseTo(1, 4);
    }
    const rawTest = moments(test.series);
    const zt = moments(ztest);
    zt.forEach((m, c) => {
      expect(m.mean).toBeCloseTo((rawTest[c]!.mean - st.mean[c]!) / st.std[c]!, 5);
      expect(m.std).toBeCloseTo(rawTest[c]!.std / st.std[c]!, 4);
    });
    // The test split's own statistics differ, so a leak would be visible.
    expect(zt.some((m) => Math.abs(m.mean) > 0.01)).toBe(true);
    // Inputs are not modified.
    expect(train.series[0]![0]).toBe(Math.fround(1.860936));
  });

  it("a constant channel is centred, not divided by zero", () => {
    const st = channelStats([Float32Array.from([5, 1, 5, 3])], 2);
    expect(st.mean).toEqual([5, 2]);
    expect(st.std).toEqual([1, 1]);
    expect(Array.from(standardize([Float32Array.from([5, 1, 5, 3])], st)[0]!)).toEqual([0, -1, 0, 1]);
    expect(() => channelStats([], 2)).toThrow(RangeError);
    expect(() => channelStats([new Float32Array(3)], 2)).toThrow(/not a positive multiple/);
  });
});

describe("padding and batching", () => {
  it("pads variable-length series left-aligned into [B, Tmax, C]", () => {
    const b = padBatch([Float32Array.from([1, 2, 3, 4, 5, 6]), Float32Array.from([7, 8])], 2, { padValue: -9 });
    expect(b.dims).toEqual([2, 3, 2]);
    expect(b.lengths).toEqual([3, 1]);
    expect(Array.from(b.data)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, -9, -9, -9, -9]);
    expect(padBatch([Float32Array.from([1])], 1, { maxLen: 3 }).dims).toEqual([1, 3, 1]);
    expect(() => padBatch([Float32Array.from([1, 2])], 1, { maxLen: 1 })).toThrow(/shorter than the longest/);
    expect(() => padBatch([Float32Array.from([1, 2, 3])], 2)).toThrow(RangeError);
    expect(padBatch([], 3).dims).toEqual([0, 0, 3]);
  });

  it("batchIndices covers every index once; shuffling is seeded", () => {
    expect(batchIndices(5, 2)).toEqual([[0, 1], [2, 3], [4]]);
    const s1 = batchIndices(100, 32, 7), s2 = batchIndices(100, 32, 7), s3 = batchIndices(100, 32, 8);
    expect(s1).toEqual(s2);
    expect(s1).not.toEqual(s3);
    expect(s1.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(s1.map((b) => b.length)).toEqual([32, 32, 32, 4]);
  });
});

describe("CSV input", () => {
  it("reads rows as time steps and columns as channels, with or without header", async () => {
    const p = join(tmp, "x.csv");
    writeFileSync(p, "acc_x,acc_y,\"gyro\"\n0.5,1,-2\n\n3e-1, 4 ,5\n");
    const s = await readCsv(p);
    expect(s.columns).toEqual(["acc_x", "acc_y", "gyro"]);
    expect([s.timesteps, s.channels]).toEqual([2, 3]);
    expect(Array.from(s.data)).toEqual([0.5, 1, -2, 0.3, 4, 5].map(Math.fround));
    const n = parseCsv("1;2\r\n3;4\r\n");
    expect(n.columns).toBeUndefined();
    expect(Array.from(n.data)).toEqual([1, 2, 3, 4]);
  });

  it("names the line of a ragged row or a bad value", async () => {
    await expectFormatError(() => parseCsv("a,b\n1,2\n3\n"), 3, /^expected 2 columns, found 1$/);
    await expectFormatError(() => parseCsv("1,2\n3,x\n"), 2, /column 2: 'x' is not a finite number/);
    await expectFormatError(() => parseCsv("a,b\n"), 2, /no data rows/);
    await expect(readCsv(join(tmp, "nope.csv"))).rejects.toThrow(DataNotFoundError);
  });
});

describe(".npy input", () => {
  const expectedCsv = (name: string) =>
    readFileSync(fx(name), "utf8").trim().split(/\s*[\n,]\s*/).map((v) => Math.fround(Number(v)));

  it("reads NumPy-written float32/float64, C and Fortran order, big endian", async () => {
    const a = await readNpy(fx("f4_T4_C3.npy"));
    expect(a.shape).toEqual([4, 3]);
    expect(a.dtype).toBe("f4");
    expect(Array.from(a.data)).toEqual(expectedCsv("f4_T4_C3.expected.csv"));
    const f = await readNpy(fx("f4_fortran_T4_C3.npy"));
    expect(Array.from(f.data)).toEqual(Array.from(a.data));
    const be = await readNpy(fx("f8_bigendian_T4_C3.npy"));
    expect(be.dtype).toBe("f8");
    expect(Array.from(be.data)).toEqual(Array.from(a.data));
    const b = await readNpy(fx("f8_B2_T3_C2.npy"));
    expect(b.shape).toEqual([2, 3, 2]);
    expect(Array.from(b.data)).toEqual(expectedCsv("f8_B2_T3_C2.expected.csv"));
  });

  it("readSeriesInput turns [T,C] and [B,T,C] into batches", async () => {
    const one = await readSeriesInput(fx("f4_T4_C3.npy"));
    expect(one.dims).toEqual([1, 4, 3]);
    expect(one.lengths).toEqual([4]);
    const many = await readSeriesInput(fx("f8_B2_T3_C2.npy"));
    expect(many.dims).toEqual([2, 3, 2]);
    expect(many.series.map((s) => s.length)).toEqual([6, 6]);
    expect(Array.from(many.series[1]!)).toEqual(expectedCsv("f8_B2_T3_C2.expected.csv").slice(6));
    const ts = await readSeriesInput(fx("good_small.ts"));
    expect(ts.dims).toEqual([3, 3, 2]);
    expect(ts.lengths).toEqual([3, 2, 2]);
    expect(ts.classLabels).toEqual(["a", "b", "c"]);
    await expectFormatError(() => readSeriesInput(fx("missing_channel.ts")), 10, /expected 3 channels/);
    await expectFormatError(() => readSeriesInput(fx("good_small.xyz")), undefined, /unknown input format/);
  });

  /** A v1.0 .npy writer, used to make malformed files. */
  function npyBytes(header: string, data: Uint8Array, magic = "\x93NUMPY"): Uint8Array {
    let h = header;
    while ((10 + h.length + 1) % 64 !== 0) h += " ";
    h += "\n";
    const out = new Uint8Array(10 + h.length + data.length);
    for (let i = 0; i < 6; i++) out[i] = magic.charCodeAt(i);
    out[6] = 1;
    out[7] = 0;
    new DataView(out.buffer).setUint16(8, h.length, true);
    for (let i = 0; i < h.length; i++) out[10 + i] = h.charCodeAt(i);
    out.set(data, 10 + h.length);
    return out;
  }
  const f32 = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);

  it("parses a hand-written header and rejects malformed files", async () => {
    const ok = parseNpy(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", f32([1, 2, 3, 4])));
    expect(Array.from(ok.data)).toEqual([1, 2, 3, 4]);
    const hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
    await expectFormatError(() => parseNpy(npyBytes(hdr, f32([1, 2, 3]))), undefined, /truncated data: shape \(2, 2\) f4 needs 16 bytes, file has 12/);
    await expectFormatError(() => parseNpy(npyBytes(hdr, f32([1, 2, 3, 4, 5]))), undefined, /4 trailing bytes/);
    // The bad element is named by its index in the array (stored order C: flat 1 = [0, 1]; Fortran: [1, 0]).
    await expectFormatError(() => parseNpy(npyBytes(hdr, f32([1, NaN, 3, 4]))), undefined, /non-finite .* at index \[0, 1\] \(flat index 1\)/);
    const fhdr = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
    await expectFormatError(() => parseNpy(npyBytes(fhdr, f32([1, 2, 3, 4, Infinity, 6]))), undefined, /non-finite .* at index \[0, 2\] \(flat index 4\)/);
    await expectFormatError(() => parseNpy(npyBytes(hdr, f32([1, 2, 3, 4]), "XNUMPY")), undefined, /not an \.npy file/);
    await expectFormatError(() => parseNpy(npyBytes("{'descr': '<f4'}", f32([1]))), undefined, /malformed header/);
    await expectFormatError(() => readNpy(fx("i4_T2_C2.npy")), undefined, /unsupported dtype '<i4'/);
    const p3 = join(tmp, "rank1.npy");
    writeFileSync(p3, npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f32([1, 2, 3])));
    await expectFormatError(() => readSeriesInput(p3), undefined, /expected shape \[T, C\] or \[B, T, C\], found \(3\)/);
    await expect(readNpy(join(tmp, "none.npy"))).rejects.toThrow(DataNotFoundError);
  });
});

describe("labelled files into training data (gqa/data)", () => {
  it("readLabelled + sortClassNames + trainingData give padded cases and class indices; task is required", async () => {
    const f = join(tmp, "labelled.csv");
    writeFileSync(f, "id,label,x,y\na,10,1,2\na,10,3,4\nb,9,5,6\nc,10,7,8\nc,10,9,10\nc,10,11,12\n");
    const d = await readLabelled(f, { task: "classification" });
    expect(d.classNames).toEqual(["10", "9", "10"]);
    const classLabels = sortClassNames(d.classNames!);
    expect(classLabels).toEqual(["9", "10"]); // numeric names sort as numbers
    const t = trainingData(d.series, d.channels, d.classNames!.map((n) => classLabels.indexOf(n)));
    expect(t.dims).toEqual([3, 3, 2]);
    expect(t.lengths).toEqual([2, 1, 3]);
    expect(t.labels).toEqual([1, 0, 1]);
    expect(Array.from(t.x)).toEqual([1, 2, 3, 4, 0, 0, 5, 6, 0, 0, 0, 0, 7, 8, 9, 10, 11, 12]);
    await expect(readLabelled(f, {} as never)).rejects.toThrow(/labelled\.csv: options\.task must be "classification", "regression" or "unlabelled", found nothing/);
    expect(() => trainingData(d.series, d.channels, [0, 1])).toThrow(RangeError);
  });

  it("readSeriesInput reads gqa train's CSV (id column, optional labels) as one case per id; task unlabelled needs no labels", async () => {
    const f = join(tmp, "long.csv");
    writeFileSync(f, "id,label,x,y\na,u,1,2\na,u,3,4\nb,v,5,6\n");
    const withLabels = await readSeriesInput(f);
    expect(withLabels.ids).toEqual(["a", "b"]);
    expect(withLabels.dims).toEqual([2, 2, 2]);
    expect(withLabels.lengths).toEqual([2, 1]);
    expect(Array.from(withLabels.data)).toEqual([1, 2, 3, 4, 5, 6, 0, 0]);
    const g = join(tmp, "long-unlabelled.csv");
    writeFileSync(g, "case,x,y\na,1,2\na,3,4\nb,5,6\n");
    const noLabels = await readSeriesInput(g, { idColumn: "case" });
    expect(noLabels.ids).toEqual(["a", "b"]);
    expect(Array.from(noLabels.data)).toEqual(Array.from(withLabels.data));
    // A header naming neither column: one series, every column a channel; a text value there
    // points at --id-column.
    await expectFormatError(() => readSeriesInput(g), 2, /column 1: 'a' is not a finite number \(a CSV of several cases needs an id column: name it with --id-column, default 'id'\)/);
    const h = join(tmp, "one-series.csv");
    writeFileSync(h, "x,y,z\n1,2,3\n4,5,6\n");
    const plain = await readSeriesInput(h);
    expect(plain.ids).toBeUndefined();
    expect(plain.dims).toEqual([1, 2, 3]);
    const u = await readLabelled(fx("f8_B2_T3_C2.npy"), { task: "unlabelled" });
    expect([u.series.length, u.channels, u.classNames, u.targets]).toEqual([2, 2, undefined, undefined]);
  });
});
