#!/usr/bin/env python3
"""Lists Rust functions longer than N lines (default 100) under the given roots (default crates/).

Usage: python3 scripts/long-fns.py [N] [root ...]; exits 1 when it lists any (`npm run lint` runs it).
A function runs from its `fn` line to the line of its matching closing brace (strings, chars
and comments are skipped when matching braces). Paths under target/ are ignored.
"""
import os
import re
import sys

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)")


def strip(line, state):
    """Removes comments, strings and chars; `state` carries an open block comment."""
    out, i = [], 0
    while i < len(line):
        if state["block"]:
            j = line.find("*/", i)
            if j < 0:
                return "".join(out)
            state["block"], i = False, j + 2
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"], i = True, i + 2
            continue
        if c == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            i = j + 1
            continue
        if c == "'" and re.match(r"'(\\.|[^\\'])'", line[i:i + 4]):
            i += len(re.match(r"'(\\.|[^\\'])'", line[i:i + 4]).group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out)


def long_fns(path, limit):
    lines = open(path, encoding="utf-8").read().split("\n")
    state = {"block": False}
    clean = [strip(l, state) for l in lines]
    found = []
    for i, l in enumerate(clean):
        m = FN.match(l)
        if not m:
            continue
        depth, started = 0, False
        for j in range(i, len(clean)):
            for ch in clean[j]:
                if ch == "{":
                    depth, started = depth + 1, True
                elif ch == "}":
                    depth -= 1
                elif ch == ";" and not started and depth == 0:
                    break
            else:
                if started and depth == 0:
                    n = j - i + 1
                    if n > limit:
                        found.append((n, path, i + 1, m.group(7)))
                    break
                continue
            break
    return found


def main():
    args = sys.argv[1:]
    limit = int(args.pop(0)) if args and args[0].isdigit() else 100
    roots = args or ["crates"]
    found = []
    for root in roots:
        for d, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if x != "target"]
            for f in files:
                if f.endswith(".rs"):
                    found += long_fns(os.path.join(d, f), limit)
    for n, p, line, name in sorted(found, reverse=True):
        print(f"{n:5} {p}:{line} {name}")
    print(f"{len(found)} functions over {limit} lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
