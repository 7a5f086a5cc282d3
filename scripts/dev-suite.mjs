#!/usr/bin/env node
/**
 * Reproduces the development-suite table of docs/training.md ("The automatic recipe"): runs
 * `gqa train --recipe auto` and `--recipe fixed` on every dataset of the suite for the given seeds
 * (one process at a time, `--threads` compute threads), keeps each run's metrics.json under
 * `--out/<dataset>/<recipe>-seed<s>/`, and prints the table from every run found there (so runs
 * made by several invocations add up), next to InceptionTime and HIVE-COTE 2 from
 * data/dev-suite/results.json.
 *
 * Prerequisites: `npm run build:ts`, the native addon, `python3 scripts/fetch-dev-suite.py`.
 * Usage: node scripts/dev-suite.mjs [--seeds 0,1,2,3,4] [--recipes auto,fixed] [--datasets A,B]
 *        [--threads 1] [--out runs/dev-suite] [--table] (--table: print the table, run nothing)
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

const suite = "data/dev-suite";
/** The suite: name -> `gqa train` data arguments. */
const DATASETS = {
  JapaneseVowels: ["--data", "japanese-vowels"],
  BasicMotions: ["--data", "basic-motions"],
  UnitTest: ["--data", join(suite, "UnitTest")],
  Coffee: ["--data", join(suite, "Coffee")],
  PigCVP: ["--data", join(suite, "PigCVP")],
  PLAID: ["--data", join(suite, "PLAID")],
  Tecator: ["--task", "regression", "--data", join(suite, "Tecator", "Tecator_TRAIN.csv"), "--test-data", join(suite, "Tecator", "Tecator_TEST.csv"), "--label-column", "target"],
};

const { values: a } = parseArgs({
  options: {
    seeds: { type: "string", default: "0" },
    recipes: { type: "string", default: "auto,fixed" },
    datasets: { type: "string", default: Object.keys(DATASETS).join(",") },
    threads: { type: "string", default: "1" },
    out: { type: "string", default: "runs/dev-suite" },
    timeout: { type: "string", default: "900" },
    table: { type: "boolean", default: false },
  },
});

if (!a.table) {
  for (const seed of a.seeds.split(",")) {
    for (const name of a.datasets.split(",")) {
      for (const recipe of a.recipes.split(",")) {
        const out = join(a.out, name, `${recipe}-seed${seed}`);
        const args = ["dist/cli/index.js", "train", ...DATASETS[name], "--recipe", recipe, "--seed", seed, "--threads", a.threads, "--no-progress", "--out", out];
        const t0 = performance.now();
        const r = spawnSync(process.execPath, args, { encoding: "utf8", timeout: Number(a.timeout) * 1000 });
        const s = ((performance.now() - t0) / 1000).toFixed(1);
        process.stderr.write(`${name} ${recipe} seed ${seed}: exit ${r.status ?? r.signal} in ${s} s${r.status === 0 ? "" : `\n${r.stderr.slice(-800)}`}\n`);
        // A run that failed or hit --timeout leaves stopped.json (and no metrics.json) for the table.
        if (r.status !== 0) {
          mkdirSync(out, { recursive: true });
          rmSync(join(out, "metrics.json"), { force: true });
          writeFileSync(join(out, "stopped.json"), JSON.stringify({ exit: r.status ?? r.signal, seconds: Number(s) }) + "\n");
        } else rmSync(join(out, "stopped.json"), { force: true });
      }
    }
  }
}

/** Every finished run under --out: {dataset, recipe, seed, test score, CV score, seconds}. */
function runs() {
  const rows = [];
  if (!existsSync(a.out)) return rows;
  for (const name of readdirSync(a.out)) {
    for (const dir of readdirSync(join(a.out, name))) {
      const f = join(a.out, name, dir, "metrics.json");
      const [recipe0, seed0] = dir.split("-seed");
      const stopped = join(a.out, name, dir, "stopped.json");
      if (existsSync(stopped)) rows.push({ name, recipe: recipe0, seed: Number(seed0), stopped: JSON.parse(readFileSync(stopped, "utf8")) });
      if (!existsSync(f)) continue;
      const m = JSON.parse(readFileSync(f, "utf8"));
      const [recipe, seed] = dir.split("-seed");
      const test = m.test?.accuracy ?? m.test?.rmse;
      const cv = m.recipe?.candidates.find((c) => c.status === "chosen")?.cvScore;
      rows.push({ name, recipe, seed: Number(seed), test, cv, seconds: m.recipe?.seconds ?? m.training.seconds, metric: m.test?.accuracy !== undefined ? "accuracy" : "rmse", chosen: m.recipe?.chosen.name });
    }
  }
  return rows;
}

const fmt = (xs, d = 3) => {
  if (!xs.length) return "";
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  return xs.length === 1 ? xs[0].toFixed(d) : `${mean.toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)}, n=${xs.length})`;
};
const published = existsSync(join(suite, "results.json")) ? JSON.parse(readFileSync(join(suite, "results.json"), "utf8")) : { published: {}, resultNames: {} };
const pub = (method, name) => {
  const r = published.published[method]?.[published.resultNames[name] ?? name];
  return r ? `${r.split0.toFixed(3)} (mean30 ${r.mean30.toFixed(3)})` : "n/a";
};
const all = runs();
const lines = ["| dataset | metric | gqa auto: test | gqa auto: CV | gqa auto: s | gqa fixed: test | gqa fixed: s | InceptionTime | HC2 |", "|---|---|---|---|---|---|---|---|---|"];
for (const name of Object.keys(DATASETS)) {
  const of = (recipe) => all.filter((r) => r.name === name && r.recipe === recipe);
  const done = (recipe) => of(recipe).filter((r) => !r.stopped);
  const stop = (recipe) => of(recipe).filter((r) => r.stopped).map((r) => `stopped after ${r.stopped.seconds.toFixed(0)} s (${r.stopped.exit})`);
  const au = done("auto"), fx = done("fixed");
  if (!au.length && !fx.length) continue;
  const metric = (au[0] ?? fx[0]).metric;
  const fxTest = [fmt(fx.map((r) => r.test)), ...stop("fixed")].filter(Boolean).join("; ");
  lines.push(`| ${name} | ${metric === "rmse" ? "RMSE" : "accuracy"} | ${fmt(au.map((r) => r.test))} | ${fmt(au.filter((r) => r.cv !== undefined).map((r) => r.cv))} | ${fmt(au.map((r) => r.seconds), 0)} | ${fxTest} | ${fmt(fx.map((r) => r.seconds), 0)} | ${pub("InceptionTime", name)} | ${pub("HC2", name)} |`);
}
process.stdout.write(lines.join("\n") + "\n");
for (const r of all.filter((x) => x.recipe === "auto").sort((x, y) => x.name.localeCompare(y.name) || x.seed - y.seed)) process.stdout.write(`${r.name} seed ${r.seed}: chosen ${r.chosen}\n`);
