#!/bin/sh
# Prints the include graph of src/ between folders (layer -> layer it
# includes), and any include cycle between files. Used to check that
# dependencies point one way (README, Layout).
# usage: scripts/deps-graph.sh   (exit 1 when a file-level cycle exists)
cd "$(dirname "$0")/.." || exit 2
python3 - <<'PY'
import os, re, sys
edges = {}
for root, _, files in os.walk("src"):
    for f in files:
        if not f.endswith((".c", ".h")): continue
        p = os.path.join(root, f)[4:]
        edges[p] = [m for m in re.findall(r'^#include "([^"]+)"', open("src/" + p).read(), re.M)]
def folder(p): return os.path.dirname(p)
fe = sorted({(folder(a), folder(b)) for a, bs in edges.items() for b in bs if folder(a) != folder(b)})
for a, b in fe: print(f"{a} -> {b}")
# module-level cycles: a module is a header, the .c files beside it and its
# private header (name_internal.h / name_impl.h)
def mod(p): return re.sub(r"_(internal|impl)$", "", os.path.splitext(p)[0])
g = {}
for a, bs in edges.items():
    g.setdefault(mod(a), set()).update(mod(b) for b in bs if mod(b) != mod(a))
state, stack, cyc = {}, [], []
def dfs(u):
    state[u] = 1; stack.append(u)
    for v in sorted(g.get(u, ())):
        if state.get(v) == 1: cyc.append(stack[stack.index(v):] + [v])
        elif v not in state: dfs(v)
    stack.pop(); state[u] = 2
for u in sorted(g): 
    if u not in state: dfs(u)
fc = {}
for a, b in fe: fc.setdefault(a, set()).add(b)
bad = [(a, b) for a, b in fe if a in fc.get(b, ())]
for c in cyc: print("module cycle:", " -> ".join(c))
for a, b in bad: print("folder cycle:", a, "<->", b)
sys.exit(1 if cyc or bad else 0)
PY
