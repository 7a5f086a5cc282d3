/**
 * Classification metrics for `gqa train` and `gqa eval`: accuracy, per-class accuracy (recall),
 * confusion matrix, and their text rendering.
 */

/** Metrics of predictions against true labels over `K` classes. */
export interface ClassificationMetrics {
  /** Fraction of correct predictions. */
  accuracy: number;
  /** Number of cases. */
  count: number;
  /** Per class `k`: correct / cases of class `k` (`null` when the class has no cases). */
  perClass: (number | null)[];
  /** `confusion[true][predicted]` counts, `K x K`. */
  confusion: number[][];
}

/**
 * Computes accuracy, per-class accuracy and the confusion matrix.
 * @throws {RangeError} when the arrays differ in length or a label is outside `[0, K)`.
 */
export function classificationMetrics(truth: readonly number[], predicted: readonly number[], numClasses: number): ClassificationMetrics {
  if (truth.length !== predicted.length) throw new RangeError(`${truth.length} labels but ${predicted.length} predictions`);
  const confusion = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  let correct = 0;
  truth.forEach((t, i) => {
    const p = predicted[i]!;
    if (!(t >= 0 && t < numClasses && p >= 0 && p < numClasses)) throw new RangeError(`label ${t} / prediction ${p} outside [0, ${numClasses})`);
    confusion[t]![p]!++;
    if (t === p) correct++;
  });
  const perClass = confusion.map((row, k) => {
    const n = row.reduce((a, b) => a + b, 0);
    return n === 0 ? null : row[k]! / n;
  });
  return { accuracy: truth.length ? correct / truth.length : 0, count: truth.length, perClass, confusion };
}

/** Index of the largest value in each row of a `[B, K]` array. */
export function argmaxRows(values: Float32Array, numClasses: number): number[] {
  const b = values.length / numClasses;
  const out: number[] = [];
  for (let i = 0; i < b; i++) {
    let best = 0;
    for (let k = 1; k < numClasses; k++) if (values[i * numClasses + k]! > values[i * numClasses + best]!) best = k;
    out.push(best);
  }
  return out;
}

/** Row-wise softmax of `[B, K]` logits (max-subtracted), as float64 numbers. */
export function softmaxRows(logits: Float32Array, numClasses: number): number[][] {
  const rows: number[][] = [];
  for (let i = 0; i < logits.length / numClasses; i++) {
    const r = Array.from(logits.subarray(i * numClasses, (i + 1) * numClasses));
    const m = Math.max(...r);
    const e = r.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    rows.push(e.map((v) => v / s));
  }
  return rows;
}

/** Renders per-class accuracy and the confusion matrix (rows = true class, columns = predicted). */
export function formatMetrics(m: ClassificationMetrics, labels: readonly string[]): string {
  const lines: string[] = [];
  lines.push(`accuracy: ${(100 * m.accuracy).toFixed(2)}% (${Math.round(m.accuracy * m.count)}/${m.count})`);
  lines.push("per-class accuracy:");
  const w = Math.max(5, ...labels.map((l) => l.length));
  m.perClass.forEach((a, k) => {
    const n = m.confusion[k]!.reduce((x, y) => x + y, 0);
    lines.push(`  ${labels[k]!.padEnd(w)}  ${a === null ? "   n/a" : `${(100 * a).toFixed(1).padStart(5)}%`}  (${m.confusion[k]![k]}/${n})`);
  });
  lines.push("confusion matrix (rows: true class, columns: predicted):");
  const cw = Math.max(4, ...labels.map((l) => l.length), ...m.confusion.flat().map((v) => String(v).length));
  lines.push(`  ${"".padEnd(w)}  ${labels.map((l) => l.padStart(cw)).join(" ")}`);
  m.confusion.forEach((row, k) => lines.push(`  ${labels[k]!.padEnd(w)}  ${row.map((v) => String(v).padStart(cw)).join(" ")}`));
  return lines.join("\n");
}
