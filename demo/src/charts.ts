// The input-series line chart (drawn by the shared chart module, ts/chart.ts, which also draws
// `gqa train`'s training curves) and canvas heatmaps of attention maps.

import { linePanelSvg, PALETTE, svgDocument } from "../../ts/chart.js";

export { PALETTE };

/**
 * Line chart of a multichannel series: `values` time-major `[T, C]` (`values[t*C + c]`), one line
 * per channel, shared y axis, x = time step; an HTML legend below.
 */
export function lineChart(values: Float32Array, steps: number, channels: number, names: string[]): HTMLElement {
  const W = 560, H = 230;
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (!(hi > lo)) hi = lo + 1;
  const series = Array.from({ length: channels }, (_, c) => ({
    name: names[c] ?? `channel ${c}`,
    color: PALETTE[c % PALETTE.length]!,
    points: Array.from({ length: steps }, (_, t): [number, number] => [t, values[t * channels + c]!]),
  }));
  const body = linePanelSvg(series, {
    width: W,
    height: H,
    margin: { left: 40, top: 8, right: 18, bottom: 22 },
    xRange: [0, Math.max(0, steps - 1)],
    yRange: [lo, hi],
    xTicks: [...new Set([0, Math.floor((steps - 1) / 2), steps - 1])],
    xTickLabel: (t) => `t=${t}`,
    yTicks: [lo, (lo + hi) / 2, hi],
    yTickLabel: (v) => v.toFixed(1),
    strokeWidth: 1.3,
  });
  const box = document.createElement("div");
  const tpl = document.createElement("template");
  tpl.innerHTML = svgDocument(W, H, "input series", body, { width: "100%", height: "auto", role: "img", "aria-label": "input series" });
  const legend = document.createElement("div");
  legend.className = "legend";
  legend.innerHTML = names.map((n, c) => `<span><i style="background:${PALETTE[c % PALETTE.length]}"></i>${n}</span>`).join("");
  box.append(tpl.content, legend);
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
