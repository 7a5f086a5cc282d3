// Small inline-SVG line chart and canvas heatmaps (no chart library needed for this size).

const SVG = "http://www.w3.org/2000/svg";
/** Categorical palette (Tableau 10). */
export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

function el<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/**
 * Line chart of a multichannel series: `values` time-major `[T, C]` (`values[t*C + c]`), one line
 * per channel, shared y axis, x = time step.
 */
export function lineChart(values: Float32Array, steps: number, channels: number, names: string[]): HTMLElement {
  const W = 560, H = 230, L = 40, R = 8, T = 8, B = 22;
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (!(hi > lo)) hi = lo + 1;
  const x = (t: number) => L + ((W - L - R) * t) / Math.max(1, steps - 1);
  const y = (v: number) => T + ((H - T - B) * (hi - v)) / (hi - lo);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "input series" });
  for (const v of [lo, (lo + hi) / 2, hi]) {
    svg.append(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e5ee" }));
    const t = el("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#667" });
    t.textContent = v.toFixed(1);
    svg.append(t);
  }
  for (const s of [0, Math.floor((steps - 1) / 2), steps - 1]) {
    const anchor = s === 0 ? "start" : s === steps - 1 ? "end" : "middle";
    const t = el("text", { x: x(s), y: H - 6, "text-anchor": anchor, "font-size": 10, fill: "#667" });
    t.textContent = `t=${s}`;
    svg.append(t);
  }
  for (let c = 0; c < channels; c++) {
    const pts: string[] = [];
    for (let s = 0; s < steps; s++) pts.push(`${x(s).toFixed(1)},${y(values[s * channels + c]!).toFixed(1)}`);
    svg.append(el("polyline", { points: pts.join(" "), fill: "none", stroke: PALETTE[c % PALETTE.length]!, "stroke-width": 1.3 }));
  }
  const box = document.createElement("div");
  const legend = document.createElement("div");
  legend.className = "legend";
  legend.innerHTML = names.map((n, c) => `<span><i style="background:${PALETTE[c % PALETTE.length]}"></i>${n}</span>`).join("");
  box.append(svg, legend);
  return box;
}

/** Viridis at 5 stops, linearly interpolated; `v` in [0, 1]. */
const VIRIDIS = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];
function viridis(v: number): [number, number, number] {
  const p = Math.min(1, Math.max(0, v)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(p));
  const f = p - i;
  const a = VIRIDIS[i]!, b = VIRIDIS[i + 1]!;
  return [a[0]! + f * (b[0]! - a[0]!), a[1]! + f * (b[1]! - a[1]!), a[2]! + f * (b[2]! - a[2]!)];
}

/**
 * Heatmap of one `[T, T]` attention map (`map[q*T + k]`), colour scaled to the map's maximum;
 * masked (future) keys stay white. One canvas pixel per (query, key), scaled up by CSS.
 */
export function heatmap(map: Float32Array, t: number): HTMLCanvasElement {
  const canvas = document.createElement("canvas");
  canvas.width = t;
  canvas.height = t;
  canvas.className = "map";
  const ctx = canvas.getContext("2d")!;
  const img = ctx.createImageData(t, t);
  let max = 0;
  for (const v of map) max = Math.max(max, v);
  for (let q = 0; q < t; q++) {
    for (let k = 0; k < t; k++) {
      const o = (q * t + k) * 4;
      const v = map[q * t + k]!;
      const [r, g, b] = k > q ? [255, 255, 255] : viridis(max > 0 ? Math.sqrt(v / max) : 0);
      img.data[o] = r;
      img.data[o + 1] = g;
      img.data[o + 2] = b;
      img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}
