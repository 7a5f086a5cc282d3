/**
 * The training-curve plot of `gqa train`: a standalone SVG, hand-written (no charting library:
 * the npm chart libraries that render SVG in Node without a browser, such as vega or echarts'
 * server-side renderer, are several MB of dependencies for two line charts).
 *
 * Left panel: training (and validation) loss per epoch. Right panel (classification): training,
 * validation and test accuracy per epoch (0..1). Regression: the loss panel only. Legends sit in a
 * row under each panel, clear of the lines.
 */

/** One epoch of the training history. */
export interface CurvePoint {
  epoch: number;
  trainLoss: number;
  /** Classification only. */
  trainAccuracy?: number;
  /** With `--val-split`: loss and accuracy on the held-out part of the training split. */
  valLoss?: number;
  valAccuracy?: number;
  testAccuracy?: number;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Round-number ticks covering `[lo, hi]` (about 5). */
function ticks(lo: number, hi: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

function panel(x0: number, title: string, yLabel: string, series: Series[], yRange: [number, number] | undefined, epochs: number): string {
  const w = 380, h = 260, left = 55, top = 30, pw = w - left - 15, ph = h - top - 45;
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  let [ylo, yhi] = yRange ?? [Math.min(...ys), Math.max(...ys)];
  if (!(yhi > ylo)) [ylo, yhi] = [ylo - 0.5, yhi + 0.5];
  const sx = (e: number) => x0 + left + (epochs <= 1 ? pw / 2 : ((e - 1) / (epochs - 1)) * pw);
  const sy = (v: number) => top + ph - ((v - ylo) / (yhi - ylo)) * ph;
  const parts: string[] = [];
  parts.push(`<text x="${x0 + left + pw / 2}" y="18" text-anchor="middle" font-size="14">${esc(title)}</text>`);
  parts.push(`<rect x="${x0 + left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  for (const t of ticks(ylo, yhi)) {
    parts.push(`<line x1="${x0 + left}" x2="${x0 + left + pw}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${x0 + left - 5}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end" font-size="11">${t}</text>`);
  }
  for (const t of ticks(1, Math.max(epochs, 1)).filter((v) => Number.isInteger(v))) {
    parts.push(`<text x="${sx(t).toFixed(1)}" y="${top + ph + 15}" text-anchor="middle" font-size="11">${t}</text>`);
  }
  parts.push(`<text x="${x0 + left + pw / 2}" y="${top + ph + 32}" text-anchor="middle" font-size="12">epoch</text>`);
  parts.push(`<text transform="translate(${x0 + 14},${top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>`);
  series.filter((s) => s.points.length > 0).forEach((s, i) => {
    const d = s.points.map(([e, v], j) => `${j ? "L" : "M"}${sx(e).toFixed(1)},${sy(v).toFixed(1)}`).join(" ");
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    for (const [e, v] of s.points) parts.push(`<circle cx="${sx(e).toFixed(1)}" cy="${sy(v).toFixed(1)}" r="2.5" fill="${s.color}"/>`);
    const lx = x0 + left + 105 * i;
    const ly = h + 12;
    parts.push(`<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"/>`);
    parts.push(`<text x="${lx + 22}" y="${ly + 4}" font-size="11">${esc(s.name)}</text>`);
  });
  return parts.join("\n");
}

/**
 * Renders the training curves as an SVG document (760 x 285 px; 380 x 285 for regression).
 * @param title shown above nothing; used as the document `<title>`.
 * @param regressionLoss when given, a regression run: only the loss panel, with this y label.
 */
export function trainingCurveSvg(history: readonly CurvePoint[], title: string, regressionLoss?: string): string {
  const epochs = history.length ? Math.max(...history.map((h) => h.epoch)) : 1;
  const val = (f: (h: CurvePoint) => number | undefined): [number, number][] =>
    history.filter((h) => f(h) !== undefined).map((h) => [h.epoch, f(h)!]);
  const loss: Series[] = [
    { name: "train loss", color: "#1f77b4", points: history.map((h) => [h.epoch, h.trainLoss]) },
    { name: "val loss", color: "#ff7f0e", points: val((h) => h.valLoss) },
  ];
  const acc: Series[] = [
    { name: "train accuracy", color: "#1f77b4", points: val((h) => h.trainAccuracy) },
    { name: "val accuracy", color: "#ff7f0e", points: val((h) => h.valAccuracy) },
    {
      name: "test accuracy",
      color: "#d62728",
      points: history.filter((h) => h.testAccuracy !== undefined).map((h) => [h.epoch, h.testAccuracy!]),
    },
  ];
  const w = regressionLoss === undefined ? 760 : 380;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="285" viewBox="0 0 ${w} 285" font-family="sans-serif">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${w}" height="285" fill="white"/>`,
    panel(0, "loss", regressionLoss ?? "cross-entropy", loss, undefined, epochs),
    ...(regressionLoss === undefined ? [panel(380, "accuracy", "accuracy", acc, [0, 1], epochs)] : []),
    `</svg>`,
    "",
  ].join("\n");
}
