/**
 * The training-curve plot of `gqa train`: a standalone SVG drawn with the shared chart module
 * (`ts/chart.ts`, which the demo page's chart uses too).
 *
 * Left panel: training (and validation) loss per epoch. Right panel (classification): training,
 * validation and test accuracy per epoch (0..1). Regression: the loss panel only. Legends sit in a
 * row under each panel, clear of the lines.
 */

import { type LinePanel, type LineSeries, linePanelSvg, niceTicks, svgDocument } from "../chart.js";

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

/** Geometry of one panel: 380 wide, plot area 310 x 185 under a title, legend row below. */
function panel(x0: number, title: string, yLabel: string, series: LineSeries[], yRange: [number, number] | undefined, epochs: number): string {
  const p: LinePanel = {
    x0,
    width: 380,
    height: 260,
    margin: { left: 55, top: 30, right: 15, bottom: 45 },
    xRange: [1, Math.max(epochs, 1)],
    xTicks: niceTicks(1, Math.max(epochs, 1)).filter((v) => Number.isInteger(v)),
    title,
    xLabel: "epoch",
    yLabel,
    frame: true,
    markers: true,
    legend: true,
  };
  if (yRange) p.yRange = yRange;
  return linePanelSvg(series, p);
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
  const loss: LineSeries[] = [
    { name: "train loss", color: "#1f77b4", points: history.map((h) => [h.epoch, h.trainLoss]) },
    { name: "val loss", color: "#ff7f0e", points: val((h) => h.valLoss) },
  ];
  const acc: LineSeries[] = [
    { name: "train accuracy", color: "#1f77b4", points: val((h) => h.trainAccuracy) },
    { name: "val accuracy", color: "#ff7f0e", points: val((h) => h.valAccuracy) },
    {
      name: "test accuracy",
      color: "#d62728",
      points: history.filter((h) => h.testAccuracy !== undefined).map((h) => [h.epoch, h.testAccuracy!]),
    },
  ];
  const w = regressionLoss === undefined ? 760 : 380;
  const body = [panel(0, "loss", regressionLoss ?? "cross-entropy", loss, undefined, epochs), ...(regressionLoss === undefined ? [panel(380, "accuracy", "accuracy", acc, [0, 1], epochs)] : [])];
  return svgDocument(w, 285, title, body.join("\n"));
}
