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
  report.py isa-summary RESULTS.jsonl --isa avx512|avx2 --kernels FILE --membw-gb-s X --threads N
                --model-bytes bf16=BYTES --model-bytes fp32=BYTES
                                     (BENCH_ISA runs: the issue's targets against the rows measured:
                                     faster mode against faster mode, --bf16 against exact, the step's
                                     GFLOP/s against the FMA peak bench-kernels measured, prefill
                                     against PyTorch fp32, decode against the bandwidth bound)

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
            if o.get("cpu_capability") and os.environ.get("ATEN_CPU_CAPABILITY"):
                notes.append(f"ATen {o['cpu_capability']}")
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



# ---------------------------------------------------------------- BENCH_ISA summary

# The 2-layer bench model (bench/configs/yuan2b-2layer.json) and its LoRA step (run.sh).
STEP = dict(D=2048, I=8192, V=135040, L=2, B=1, T=384, r=8)


def step_gflop(D, I, V, L, B, T, r, ckpt=False):
    """The products a LoRA step must do, in GFLOP (2 per multiply-add): each layer's projections
    (q k v o, the localized filter's two convolutions, gate up down) forward and their input
    gradients (none for the first layer's q, k, v and filter: nothing below them needs one), causal
    attention (half of the T x T scores; backward twice the forward), the LM head over the scored
    rows forward and backward, and LoRA's rank-r products on the seven projections; with
    gradient checkpointing the layers' forward once more."""
    N, Ns = B * T, B * (T - 1)
    per_layer = 6 * D * D + 3 * D * I                 # 4 D^2 attention, D^2 + D^2 filter, 3 D I MLP
    fwd = 2 * N * L * per_layer
    bwd = 2 * N * (L * per_layer - 5 * D * D)
    attn = L * (2 * B * T * T * D) * 3                # forward + backward (2x)
    head = 2 * 2 * Ns * V * D
    sides = 4 * (D + D) + 2 * (D + I) + (I + D)       # in + out of the seven projections
    lora = L * (2 * N * r * sides) * 3                # forward, and 2x in the backward
    total = fwd + bwd + attn + head + lora + (fwd + 2 * B * T * T * D * L if ckpt else 0)
    return total / 1e9


def find_row(rows, workload, impl_has, dtype):
    for r in rows:
        if r["workload"] == workload and impl_has in r["impl"] and r["dtype"] == dtype and r["tokens_per_second"]:
            return r["tokens_per_second"]
    return None


def isa_summary(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="report.py isa-summary")
    ap.add_argument("results")
    ap.add_argument("--isa", required=True, choices=("avx512", "avx2"))
    ap.add_argument("--kernels", required=True, help="build/bench-kernels output")
    ap.add_argument("--membw-gb-s", type=float)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--model-bytes", action="append", default=[], help="DTYPE=BYTES of the 2-layer model folder")
    a = ap.parse_args(argv)
    rows = [json.loads(l) for l in read(a.results).splitlines() if l.strip()]
    kern = read(a.kernels)
    m = re.search(r"AVX-512 FMA ([0-9.]+) GFLOP/s", kern)
    core_peak = float(m.group(1)) if m else None
    m2 = re.search(r"AVX2 FMA ([0-9.]+) GFLOP/s", kern)  # measured since fc1bccc: half the AVX-512
    if a.isa == "avx2":                                  # peak on Intel cores, the same on Zen 4
        core_peak = float(m2.group(1)) if m2 else core_peak / 2 if core_peak is not None else None
    out = []

    def line(what, value, target):
        out.append(f"| {what} | {value} | {target} |")

    wl = "2-layer train B1 T384"
    yx, yb = find_row(rows, wl, "yuanft", "fp32"), find_row(rows, wl, "yuanft", "bf16")
    px, pb = find_row(rows, wl, "PyPI", "fp32"), find_row(rows, wl, "PyPI", "bf16")
    ybest = max([v for v in (yx, yb) if v] or [None]) if (yx or yb) else None
    pbest = max([v for v in (px, pb) if v] or [None]) if (px or pb) else None
    target = "≥ 1.3× (moonshot 1.5×)" if a.isa == "avx512" else "≥ 1.3×"
    if ybest and pbest:
        line("step: yuanft's faster mode ÷ PyTorch 2.15's faster mode",
             f"{ybest / pbest:.2f}× ({fmt(ybest)} ÷ {fmt(pbest)} tokens/s)", target)
    else:
        line("step: yuanft's faster mode ÷ PyTorch 2.15's faster mode", "n/a", target)
    line("step: `--bf16` ÷ exact", f"{yb / yx:.2f}×" if yx and yb else "n/a", "≥ 0.97×")
    gf = step_gflop(**STEP)
    if ybest and core_peak:
        rate = gf * ybest / (STEP["B"] * STEP["T"])
        peak = core_peak * a.threads
        line("step: GFLOP/s of the faster mode ÷ the FMA peak",
             f"{100 * rate / peak:.0f}% ({rate:.0f} of {peak:.0f} GFLOP/s; {gf:.0f} GFLOP a step)", "≥ 75%")
    else:
        line("step: GFLOP/s of the faster mode ÷ the FMA peak", "n/a", "≥ 75%")
    wl = "2-layer prefill T384"
    yp = max([v for v in (find_row(rows, wl, "yuanft", "fp32"), find_row(rows, wl, "yuanft", "bf16")) if v] or [0])
    pp = find_row(rows, wl, "PyPI", "fp32")
    line("prefill: yuanft's faster mode ÷ PyTorch 2.15 fp32",
         f"{yp / pp:.2f}× ({fmt(yp)} ÷ {fmt(pp)} tokens/s)" if yp and pp else "n/a", "≥ 1.2×")
    bytes_of = dict(b.split("=", 1) for b in a.model_bytes)
    wl = "2-layer decode 32 after 384"
    for dt in ("bf16", "fp32"):
        d = find_row(rows, wl, "yuanft", dt)
        nb = float(bytes_of.get(dt, 0) or 0)
        if d and nb and a.membw_gb_s:
            bound = a.membw_gb_s * 1e9 / nb
            line(f"decode ({dt} model): yuanft ÷ the bandwidth bound", f"{100 * d / bound:.0f}% ({fmt(d)} of "
                 f"{fmt(bound)} tokens/s)", "≥ 95%")
        else:
            line(f"decode ({dt} model): yuanft ÷ the bandwidth bound", "n/a", "≥ 95%")
    text = ["| target | measured | goal |", "| --- | --- | --- |"] + out
    text.append("")
    text.append(f"Peak: the register-resident FMA rate bench-kernels measured on one core"
                f"{' (AVX2, measured with its own loop)' if a.isa == 'avx2' else ''}, x {a.threads} threads. "
                f"Step GFLOP: the products a LoRA step must do ({gf:.0f} GFLOP; report.py step_gflop). "
                "Decode bound: the read bandwidth bench-membw measured over the model file's bytes "
                "(every weight read once a token).")
    sys.stdout.write("\n".join(text) + "\n")
    return 0

def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "run" and sys.argv[3] == "--":
        return run(sys.argv[2], sys.argv[4:])
    if len(sys.argv) >= 2 and sys.argv[1] == "row":
        return row(sys.argv[2:])
    if len(sys.argv) >= 2 and sys.argv[1] == "table":
        return table(sys.argv[2:])
    if len(sys.argv) >= 2 and sys.argv[1] == "isa-summary":
        return isa_summary(sys.argv[2:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
