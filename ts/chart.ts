/**
 * Line charts as SVG text: the one chart module, shared by `gqa train`'s training-curve plot
 * (`ts/cli/plot.ts`, a standalone `.svg` file written in Node) and the demo page's input-series
 * chart (`demo/src/charts.ts`, parsed into the page). No DOM, so the same code runs in Node,
 * Deno and browsers. Hand-written: the npm chart libraries that render SVG without a browser
 * (vega, echarts' server-side renderer) are several MB of dependencies for two line charts.
 */

/** Categorical palette (Tableau 10). */
export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/** `s` with `&`, `<`, `>` and `"` escaped for SVG text and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Round-number ticks (steps of 1, 2 or 5 times a power of ten) covering `[lo, hi]`, about 5 of them. */
export function niceTicks(lo: number, hi: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** One line of a chart: `points` are `[x, y]` in data units, drawn in order. */
export interface LineSeries {
  name: string;
  /** CSS colour of the line, its markers and its legend entry. */
  color: string;
  points: [number, number][];
}

/** Where and how {@link linePanelSvg} draws. Lengths in SVG user units (px at scale 1). */
export interface LinePanel {
  /** Left edge of the panel in the document. */
  x0?: number;
  /** Panel width, margins included. */
  width: number;
  /** Panel height down to the x-axis label, margins included (the legend row goes below it). */
  height: number;
  /** Space for the y tick labels and the y label, above (title) and below (x ticks and label). */
  margin: { left: number; top: number; right: number; bottom: number };
  /** x range shown; a single value (`lo === hi`) is centred. */
  xRange: [number, number];
  /** y range shown (default: the data's range; a flat series gets +-0.5). */
  yRange?: [number, number];
  /** x tick positions (default {@link niceTicks}) and their labels (default the number). */
  xTicks?: number[];
  xTickLabel?: (x: number) => string;
  /** y tick positions (default {@link niceTicks}) and their labels (default the number). */
  yTicks?: number[];
  yTickLabel?: (y: number) => string;
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** A border around the plot area. Default false. */
  frame?: boolean;
  /** A dot at every point. Default false. */
  markers?: boolean;
  /** Line width. Default 2. */
  strokeWidth?: number;
  /** A legend row under the panel (one entry per non-empty series). Default false. */
  legend?: boolean;
}

const fmt = (v: number) => v.toFixed(1);

/**
 * One line-chart panel as SVG elements (no `<svg>` wrapper; see {@link svgDocument}): light grid
 * lines at the y ticks, tick labels, axis labels, one `<path>` per non-empty series (and a
 * `<circle>` per point with `markers`), and an optional legend row at `height + 12`.
 */
export function linePanelSvg(series: readonly LineSeries[], p: LinePanel): string {
  const x0 = p.x0 ?? 0;
  const { left, top, right, bottom } = p.margin;
  const pw = p.width - left - right, ph = p.height - top - bottom;
  let [ylo, yhi] = p.yRange ?? [Math.min(...series.flatMap((s) => s.points.map((q) => q[1]))), Math.max(...series.flatMap((s) => s.points.map((q) => q[1])))];
  if (!Number.isFinite(ylo) || !Number.isFinite(yhi)) [ylo, yhi] = [0, 1];
  if (!(yhi > ylo)) [ylo, yhi] = [ylo - 0.5, yhi + 0.5];
  const [xlo, xhi] = p.xRange;
  const sx = (x: number) => x0 + left + (xhi > xlo ? ((x - xlo) / (xhi - xlo)) * pw : pw / 2);
  const sy = (y: number) => top + ph - ((y - ylo) / (yhi - ylo)) * ph;
  const xLabel = p.xTickLabel ?? String;
  const yLabel = p.yTickLabel ?? String;
  const out: string[] = [];
  if (p.title) out.push(`<text x="${x0 + left + pw / 2}" y="18" text-anchor="middle" font-size="14">${escapeXml(p.title)}</text>`);
  if (p.frame) out.push(`<rect x="${x0 + left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  for (const t of p.yTicks ?? niceTicks(ylo, yhi)) {
    out.push(`<line x1="${x0 + left}" x2="${x0 + left + pw}" y1="${fmt(sy(t))}" y2="${fmt(sy(t))}" stroke="#e3e5ee"/>`);
    out.push(`<text x="${x0 + left - 5}" y="${fmt(sy(t) + 4)}" text-anchor="end" font-size="11" fill="#555">${escapeXml(yLabel(t))}</text>`);
  }
  for (const t of p.xTicks ?? niceTicks(xlo, xhi)) {
    out.push(`<text x="${fmt(sx(t))}" y="${top + ph + 15}" text-anchor="middle" font-size="11" fill="#555">${escapeXml(xLabel(t))}</text>`);
  }
  if (p.xLabel) out.push(`<text x="${x0 + left + pw / 2}" y="${top + ph + 32}" text-anchor="middle" font-size="12">${escapeXml(p.xLabel)}</text>`);
  if (p.yLabel) out.push(`<text transform="translate(${x0 + 14},${top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(p.yLabel)}</text>`);
  series.filter((s) => s.points.length > 0).forEach((s, i) => {
    const d = s.points.map(([x, y], j) => `${j ? "L" : "M"}${fmt(sx(x))},${fmt(sy(y))}`).join(" ");
    out.push(`<path d="${d}" fill="none" stroke="${escapeXml(s.color)}" stroke-width="${p.strokeWidth ?? 2}"/>`);
    if (p.markers) for (const [x, y] of s.points) out.push(`<circle cx="${fmt(sx(x))}" cy="${fmt(sy(y))}" r="2.5" fill="${escapeXml(s.color)}"/>`);
    if (p.legend) {
      const lx = x0 + left + 105 * i, ly = p.height + 12;
      out.push(`<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="${escapeXml(s.color)}" stroke-width="2"/>`);
      out.push(`<text x="${lx + 22}" y="${ly + 4}" font-size="11">${escapeXml(s.name)}</text>`);
    }
  });
  return out.join("\n");
}

/**
 * A standalone SVG document `width x height` with a white background and `<title>`, around
 * `body` (e.g. one or more {@link linePanelSvg} panels). `attrs` are added to the `<svg>` element
 * (e.g. `{width: "100%", role: "img"}` to let a page scale it).
 */
export function svgDocument(width: number, height: number, title: string, body: string, attrs: Record<string, string> = {}): string {
  const a = { width: String(width), height: String(height), ...attrs };
  const extra = Object.entries(a).map(([k, v]) => ` ${k}="${escapeXml(v)}"`).join("");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg"${extra} viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    body,
    `</svg>`,
    "",
  ].join("\n");
}
