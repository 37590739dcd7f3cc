#!/usr/bin/env python3
"""Helpers of bench/run.sh: run a command measuring its peak RSS, turn each measurement's output
into one result row, and render the rows as the Markdown table of bench/results.md.

  report.py run PREFIX -- CMD...     CMD's stdout/stderr to PREFIX.out/.err; writes PREFIX.meta
                                     (JSON: rc, wall_s, peak_rss_mb of CMD and its children);
                                     exits with CMD's status
  report.py row RESULTS.jsonl --workload W --impl I --dtype D (--torch PREFIX... | --train PREFIX...
                | --generate PREFIX --kind prefill|decode | --na REASON) [--note N]
                                     (--torch/--train more than once: rounds; the row takes
                                     the median round and lists every round in its note)
  report.py table RESULTS.jsonl OUT.md [--head FILE] [--section TITLE=FILE ...]

A measurement that did not produce its number becomes "n/a" with the reason (the command's first
error line), never a made-up figure.
"""

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time


def run(prefix, cmd):
    t = time.time()
    with open(prefix + ".out", "wb") as out, open(prefix + ".err", "wb") as err:
        try:
            rc = subprocess.call(cmd, stdout=out, stderr=err)
        except OSError as e:
            err.write(f"{cmd[0]}: {e}\n".encode())
            rc = 127
    meta = dict(rc=rc, wall_s=round(time.time() - t, 3),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1))
    with open(prefix + ".meta", "w") as f:
        f.write(json.dumps(meta) + "\n")
    return rc


def meta(prefix):
    try:
        return json.loads(read(prefix + ".meta"))
    except ValueError:
        return dict(rc="?", wall_s=0.0, peak_rss_mb=None)


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def why_failed(prefix):
    m = meta(prefix)
    rc = m["rc"]
    if rc in (124, 137):
        return f"timed out after {m['wall_s']:.0f} s"
    err = [l.strip() for l in read(prefix + ".err").splitlines() if l.strip()]
    # the most telling line: an error message if there is one, else the last line
    for l in err:
        if re.search(r"error|not implemented|unknown|no such|not found|cannot|failed", l, re.I):
            return f"exit {rc}: {l[:160]}"
    return f"exit {rc}: {err[-1][:160]}" if err else f"exit {rc}, no output"


def parse_generate(prefix, kind):
    """tokens/s of the prefill or the decode from `yuanft generate`'s stderr (or a JSON line).
    Accepts a JSON object with a key naming the phase and 'per_second' / 'tok_s' / 'tps', or a text
    line (or ';'-separated part) naming the phase ('prefill'/'prompt' or 'decode'/'generat') with
    'N tok/s' or 'N tokens/s', e.g. "prefill: 64 tokens in 0.004 s (16319.9 tokens/s); decode: ..."."""
    text = read(prefix + ".err") + "\n" + read(prefix + ".out")
    pre, dec = ("prefill", "prompt"), ("decode", "generat", "new")
    words, other = (pre, dec) if kind == "prefill" else (dec, pre)

    def names(s):   # names this phase and not the other one ("yuanft generate: prefill ..." is prefill)
        return any(w in s for w in words) and not any(w in s for w in other)

    for obj in json_lines(text):
        for k, v in obj.items():
            kl = k.lower()
            if names(kl) and re.search(r"per_second|tok_s|tps|tokens_s", kl) and isinstance(v, (int, float)):
                return float(v)
    for line in re.split(r"[;\n]", text):      # "prefill: ... (N tokens/s); decode: ... (N tokens/s)"
        ll = re.sub(r"^\s*yuanft generate:\s*", "", line.lower())     # the program's own name is no phase
        if names(ll):
            m = re.search(r"([0-9]+(?:\.[0-9]+)?)\s*(?:tokens?|tok)\s*/\s*s", ll)
            if m:
                return float(m.group(1))
    return None


def torch_result(prefix):
    """(the run's result object, its tokens/s, its fastest step's tokens/s) or (None, None, None)"""
    objs = [o for o in json_lines(read(prefix + ".out")) if "tokens_per_second" in o]
    if not objs:
        return None, None, None
    o = objs[-1]
    steps = o.get("seconds_all_steps") or []
    fastest = None
    if o.get("mode") == "train" and len(steps) > 1 and o.get("batch") and o.get("seq"):
        fastest = o["batch"] * o["seq"] / min(steps)
    return o, o["tokens_per_second"], fastest


def train_result(prefix, warm=False):
    """(yuanft train's result object, its tokens/s) or (None, None). warm: all steps after the
    first together (their tokens / their seconds: batches of different sizes), else the median step."""
    objs = [o for o in json_lines(read(prefix + ".out")) if "train_tokens_per_second" in o]
    if not objs:
        return None, None
    o = objs[-1]
    if warm and "warm_tokens_per_second" in o:
        return o, o["warm_tokens_per_second"]
    return o, o.get("steady_tokens_per_second", o["train_tokens_per_second"])


def pick(values, notes):
    """One run: its value. Rounds (runs of every implementation taking turns, so
    that a slow or fast spell of a shared machine falls on all of them): the
    median round, each round's value in the note."""
    if len(values) == 1:
        return values[0]
    notes.append(f"median of {len(values)} interleaved rounds: " + ", ".join(fmt(x) for x in values))
    return statistics.median(values)


def row(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="report.py row")
    ap.add_argument("results")
    ap.add_argument("--workload", required=True)
    ap.add_argument("--impl", required=True)
    ap.add_argument("--dtype", required=True)
    ap.add_argument("--torch", action="append", help="a PyTorch run's log prefix; several: rounds, the median taken")
    ap.add_argument("--train", action="append", help="a yuanft train run's log prefix; several: rounds, the median taken")
    ap.add_argument("--warm", action="store_true", help="--train: tokens/s of all steps after the first together "
                    "(batches of different sizes), not the median step")
    ap.add_argument("--generate")
    ap.add_argument("--kind", choices=("prefill", "decode"))
    ap.add_argument("--na")
    ap.add_argument("--note", default="")
    ap.add_argument("--project", type=float, metavar="TOKENS", help="add to the note the wall time of 3 epochs "
                    "of TOKENS tokens each at this row's tokens/s")
    ap.add_argument("--prefill-time", action="store_true", help="--generate: add the prefill's seconds to the note")
    a = ap.parse_args(argv)
    r = dict(workload=a.workload, impl=a.impl, dtype=a.dtype, tokens_per_second=None, peak_rss_mb=None, note=a.note)
    notes = [a.note] if a.note else []
    if a.na:
        notes.append(a.na)
    elif a.torch:
        got = [torch_result(p) for p in a.torch]
        ok = [g for g in got if g[0] is not None]
        if ok:
            o = ok[-1][0]
            r.update(tokens_per_second=pick([g[1] for g in ok], notes), peak_rss_mb=max(g[0]["peak_rss_mb"] for g in ok))
            r["impl"] = f"PyTorch {o['torch']}" + (f" ({a.impl})" if a.impl else "")
            if o.get("bf16_mode"):
                notes.append(f"bf16 weights, {o['bf16_mode']}")
            t = f"{o['steps_timed']} timed after {o['warmup']} warm-up" if o.get("warmup") else f"{o['steps_timed']} timed, no warm-up"
            notes.append(t + (" each" if len(ok) > 1 else ""))
            fastest = [g[2] for g in ok if g[2] is not None]
            if fastest:
                notes.append(f"fastest step {fmt(max(fastest))}")
        for g, p in zip(got, a.torch):
            if g[0] is None:
                notes.append(why_failed(p))
    elif a.train:
        got = [train_result(p, a.warm) for p in a.train]
        ok = [g for g in got if g[0] is not None]
        if ok:
            o = ok[-1][0]
            r.update(peak_rss_mb=max((g[0].get("peak_rss_mb") or 0) for g in ok) or None)
            r.update(tokens_per_second=pick([g[1] for g in ok], notes))
            if a.warm and "warm_tokens_per_second" in o:
                notes.append("padded tokens / seconds of the steps after 1 warm-up" + (" each" if len(ok) > 1 else ""))
            elif "steady_tokens_per_second" in o:
                # timed like the PyTorch rows: the median step after the first
                if len(ok) > 1:
                    notes.append("each the median step after 1 warm-up")
                else:
                    notes.append(f"median step after 1 warm-up; {fmt(o['train_tokens_per_second'])} over all steps, "
                                 "first included")
                fastest = [g[0]["fastest_step_tokens_per_second"] for g in ok if "fastest_step_tokens_per_second" in g[0]]
                if fastest:
                    notes.append(f"fastest step {fmt(max(fastest))}")
            else:
                notes.append("Trainer tokens/s over all steps, first included (1 step)")
        for g, p in zip(got, a.train):
            if g[0] is None:
                notes.append(why_failed(p))
    elif a.generate:
        m = meta(a.generate)
        tps = parse_generate(a.generate, a.kind) if m["rc"] == 0 else None
        if tps is not None:
            r.update(tokens_per_second=tps, peak_rss_mb=m["peak_rss_mb"])
        else:
            notes.append(why_failed(a.generate) if m["rc"] != 0 else "no tokens/s found in yuanft generate's output")
    if a.project and r["tokens_per_second"]:
        h = 3 * a.project / r["tokens_per_second"] / 3600
        notes.append(f"3 epochs ({a.project:,.0f} padded tokens each) projected: {h:.1f} h")
    if a.generate and a.prefill_time:
        m = re.search(r"prefill: ([0-9]+) tokens in ([0-9.]+) s", read(a.generate + ".err") + read(a.generate + ".out"))
        if m:
            r["prefill_s"] = float(m.group(2))
            notes.append(f"prefill {m.group(1)} tokens in {float(m.group(2)):.2f} s")
    r["note"] = "; ".join(n for n in notes if n)
    with open(a.results, "a") as f:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return 0


def fmt(x, nd=1):
    return "n/a" if x is None else f"{x:,.{nd}f}"


def table(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="report.py table")
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--head", help="a file whose text goes above the table")
    ap.add_argument("--section", action="append", default=[], help="TITLE=FILE, appended after the table")
    a = ap.parse_args(argv)
    rows = [json.loads(l) for l in read(a.results).splitlines() if l.strip()]
    order = []
    for r in rows:
        if r["workload"] not in order:
            order.append(r["workload"])
    lines = ["| workload | implementation | dtype | tokens/s | peak RSS (MiB) | yuanft speed-up | memory vs yuanft | note |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for wl in order:
        group = [r for r in rows if r["workload"] == wl]
        for r in group:
            ref = next((y for y in group if y["impl"].startswith("yuanft") and y["dtype"] == r["dtype"]), None)
            speed = mem = "n/a"
            if ref is not None and ref["tokens_per_second"] and r["tokens_per_second"]:
                speed = f"{ref['tokens_per_second'] / r['tokens_per_second']:.2f}×"
            if ref is not None and ref["peak_rss_mb"] and r["peak_rss_mb"]:
                mem = f"{r['peak_rss_mb'] / ref['peak_rss_mb']:.2f}×"
            lines.append(f"| {wl} | {r['impl']} | {r['dtype']} | {fmt(r['tokens_per_second'])} | "
                         f"{fmt(r['peak_rss_mb'], 0)} | {speed} | {mem} | {r['note']} |")
    text = []
    if a.head:
        text.append(read(a.head).rstrip() + "\n")
    text.append("\n".join(lines) + "\n")
    text.append("yuanft speed-up: yuanft's tokens/s (same dtype) ÷ this row's; memory vs yuanft: this row's peak RSS ÷ "
                "yuanft's. n/a: not measured, with the reason in the note.\n")
    for s in a.section:
        title, _, path = s.partition("=")
        body = read(path).rstrip()
        text.append(f"## {title}\n\n{body if body else 'n/a'}\n")
    md = "\n".join(text)
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(md)
    os.replace(tmp, a.out)
    sys.stdout.write(md)
    return 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "run" and sys.argv[3] == "--":
        return run(sys.argv[2], sys.argv[4:])
    if len(sys.argv) >= 2 and sys.argv[1] == "row":
        return row(sys.argv[2:])
    if len(sys.argv) >= 2 and sys.argv[1] == "table":
        return table(sys.argv[2:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
