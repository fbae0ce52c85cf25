#!/usr/bin/env python3
"""Turns the per-cell JSON of bench/run.sh into bench/results/latest.md (+ a small JSON)."""
import argparse
import datetime
import glob
import json
import os

TARGETS = [
    ("direct", "direct to the upstream (nginx, TLS) — ceiling"),
    ("nginx", "nginx plain TLS proxy — reference"),
    ("nginx-mtls", "nginx + client-certificate verification"),
    ("floor", "stack floor: bare proxy of Sekisho's crates (tokio, rustls, hyper), no checks"),
    ("apache", "Apache httpd + mod_auth_openidc (bearer JWT, local key)"),
    ("sekisho-public", "Sekisho (a) public route"),
    ("sekisho-bearer", "Sekisho (b) bearer JWT + policy"),
    ("sekisho-session", "Sekisho (c) session cookie + policy"),
    ("sekisho-device", "Sekisho (d) session + device cert + posture + policy"),
    ("sekisho-device-strict", "Sekisho (d) with audit `strict`"),
    ("sekisho-public-noaudit", "Sekisho (a) without `audit:` (A/B: the audit trail's cost)"),
    ("sekisho-device-noaudit", "Sekisho (d) without `audit:` (A/B: the audit trail's cost)"),
]
NOTE_KEYS = {
    "sekisho-bearer": ["level1", "bearer"],
    "sekisho-session": ["level2", "session"],
    "sekisho-device": ["level3", "device"],
    "sekisho-device-strict": ["level3", "device", "audit"],
    "apache": ["apache"],
}


def load_one(f):
    if not os.path.exists(f):
        return None
    with open(f) as fh:
        return json.load(fh)


def load(res, t, p, c):
    """A cell: with several rounds (`ROUNDS` in bench/run.sh: res/round2, res/round3, …), the
    round with the median requests/s — its latencies are that run's own, not a mix — with the
    requests/s of every round in `rounds`. A failed round counts below every other."""
    name = f"{t}-{p}-{c}.json"
    runs = [d for d in (load_one(os.path.join(r, name)) for r in [res] + round_dirs(res)) if d is not None]
    if not runs:
        return None
    ordered = sorted(runs, key=lambda d: -1 if d.get("failed") else d["rps"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["rounds"] = [None if d.get("failed") else d["rps"] for d in runs]
    return median


def round_dirs(res):
    return sorted(glob.glob(os.path.join(res, "round*")), key=lambda d: int(d.rsplit("round", 1)[1] or 0))


def load_paced(res, t):
    f = os.path.join(res, f"{t}.paced.json")
    if not os.path.exists(f):
        return None
    with open(f) as fh:
        d = json.load(fh)
    return None if d.get("failed") else d


def read(path, default=None):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return default


def mib(kb):
    try:
        return f"{int(kb) / 1024:.1f} MiB"
    except (TypeError, ValueError):
        return "—"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("res")
    ap.add_argument("--machine", required=True)
    ap.add_argument("--pinning", required=True)
    ap.add_argument("--duration", required=True)
    ap.add_argument("--warmup", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("--sekisho", required=True)
    ap.add_argument("--idle-conns", required=True)
    ap.add_argument("--load", default="")
    ap.add_argument("--paced-rate", default="0")
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    notes = {}
    for line in (read(os.path.join(a.res, "notes.tsv"), "") or "").splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            notes[k] = v

    cells = sorted({tuple(os.path.basename(f)[:-5].rsplit("-", 2)[1:]) for f in glob.glob(os.path.join(a.res, "*-h*-*.json"))},
                   key=lambda pc: (pc[0], int(pc[1])))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = []
    out.append(f"Run {now} · Sekisho {a.sekisho} · {a.machine}")
    out.append("")
    out.append(f"Closed loop, {a.duration} s measured per cell after {a.warmup} s warm-up, GET of a "
               f"{a.body}-byte static body; every target through bench/loadgen (rustls/aws-lc-rs, hyper; "
               f"HTTP/2 = 1 stream per connection); {a.pinning}. One worker process for nginx; "
               f"Apache event MPM; Sekisho's tokio runtime sees only the pinned CPU.")
    out.append("")
    rounds = 1 + len(round_dirs(a.res))
    if rounds > 1:
        out.append(f"Each cell was measured in {rounds} rounds (every target once per round, in turn); the table "
                   f"shows the round with the median requests/s, and the last column every round's requests/s.")
        out.append("")
    out.append("| target | proto | conns | req/s | × nginx proxy | p50 ms | p99 ms | p99 added vs direct | non-2xx / errors |"
               + (" req/s per round |" if rounds > 1 else ""))
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---|" + ("---|" if rounds > 1 else ""))
    summary = []
    for t, desc in TARGETS:
        rows = []
        for p, c in cells:
            d = load(a.res, t, p, c)
            if d is None:
                continue
            if d.get("failed"):
                rows.append(f"| {desc} | {p} | {c} | failed | | | | | |" + (" |" if rounds > 1 else ""))
                continue
            ref = load(a.res, "nginx", p, c)
            direct = load(a.res, "direct", p, c)
            ratio = f"{d['rps'] / ref['rps']:.2f}×" if ref and not ref.get("failed") and ref["rps"] else "—"
            added = (f"{d['latency_ms']['p99'] - direct['latency_ms']['p99']:+.2f} ms"
                     if direct and not direct.get("failed") and t != "direct" else "—")
            bad = f"{d['non_2xx']} / {d['errors']}"
            if d.get("statuses"):
                bad += " (" + ", ".join(f"{k}×{v}" for k, v in d["statuses"].items()) + ")"
            per_round = ""
            if rounds > 1:
                per_round = " " + " · ".join("failed" if r is None else f"{r:.0f}" for r in d["rounds"]) + " |"
            rows.append(f"| {desc} | {p} | {c} | {d['rps']:.0f} | {ratio} | {d['latency_ms']['p50']:.2f} | "
                        f"{d['latency_ms']['p99']:.2f} | {added} | {bad} |{per_round}")
            summary.append({"target": t, "proto": p, "conns": int(c), "rps": round(d["rps"], 1),
                            "rps_rounds": [None if r is None else round(r, 1) for r in d["rounds"]],
                            "p50_ms": d["latency_ms"]["p50"], "p99_ms": d["latency_ms"]["p99"],
                            "non_2xx": d["non_2xx"], "errors": d["errors"]})
        if not rows:
            why = "; ".join(notes[k] for k in NOTE_KEYS.get(t, []) if k in notes) or "not run"
            rows.append(f"| {desc} | — | — | **not measured** | | | | | {why} |")
        out.extend(rows)
    ab = []
    for t, desc in TARGETS:
        if not t.endswith("-noaudit"):
            continue
        with_audit = t[: -len("-noaudit")]
        for p, c in cells:
            on, off = load(a.res, with_audit, p, c), load(a.res, t, p, c)
            if not on or not off or on.get("failed") or off.get("failed") or not off["rps"]:
                continue
            ab.append(f"| {dict(TARGETS)[with_audit]} | {p} | {c} | {on['rps']:.0f} | {off['rps']:.0f} | "
                      f"{(on['rps'] / off['rps'] - 1) * 100:+.1f} % |")
    if ab:
        out.append("")
        out.append("The audit trail's cost (`batched`), same binary and run, with and without the `audit:` section "
                   "(issue 6's goal: under 10 %):")
        out.append("")
        out.append("| target | proto | conns | req/s with audit | req/s without | change |")
        out.append("|---|---|---:|---:|---:|---:|")
        out.extend(ab)
    paced = []
    d0 = load_paced(a.res, "direct")
    for t, desc in TARGETS:
        d = load_paced(a.res, t)
        if d is None:
            continue
        add50 = add99 = "—"
        if d0 and t != "direct":
            add50 = f"{d['latency_ms']['p50'] - d0['latency_ms']['p50']:+.2f} ms"
            add99 = f"{d['latency_ms']['p99'] - d0['latency_ms']['p99']:+.2f} ms"
        paced.append(f"| {desc} | {d['rps']:.0f} | {d['latency_ms']['p50']:.2f} | {d['latency_ms']['p99']:.2f} | "
                     f"{add50} | {add99} | {d['non_2xx']} / {d['errors']} |")
        summary.append({"target": t, "proto": "h1", "conns": 32, "paced_rate": float(a.paced_rate),
                        "rps": round(d["rps"], 1), "p50_ms": d["latency_ms"]["p50"], "p99_ms": d["latency_ms"]["p99"]})
    if paced:
        out.append("")
        out.append(f"Latency at a fixed load ({a.paced_rate} req/s over 32 HTTP/1.1 connections — below every "
                   f"target's capacity, so this is processing time, not queueing; the closed-loop p99 above is "
                   f"dominated by queueing at saturation):")
        out.append("")
        out.append("| target | req/s | p50 ms | p99 ms | p50 added vs direct | p99 added vs direct | non-2xx / errors |")
        out.append("|---|---:|---:|---:|---:|---:|---|")
        out.extend(paced)
    out.append("")
    out.append(f"Memory (resident set of the server's whole process tree; idle = after start, before load; "
               f"{a.idle_conns} idle = HTTP/1.1 keep-alive connections that each made one request, held open; "
               f"peak = highest 0.25 s sample during that target's load cells):")
    out.append("")
    out.append(f"| server | idle RSS | RSS with {a.idle_conns} idle connections | per idle connection | peak RSS under load |")
    out.append("|---|---:|---:|---:|---:|")
    mem = []
    # Targets that share a process with an earlier one (its idle figure is that process's).
    same = {"nginx-mtls": "nginx", "sekisho-bearer": "sekisho", "sekisho-session": "sekisho",
            "sekisho-device": "sekisho"}
    for t, desc in TARGETS:
        idle = read(os.path.join(a.res, f"{t}.idle_rss"))
        if t == "sekisho-public":
            idle = read(os.path.join(a.res, "sekisho-start.idle_rss"), idle)
        if t == "sekisho-device-strict":
            idle = read(os.path.join(a.res, "sekisho-start-strict.idle_rss"), idle)
        if t.endswith("-noaudit"):
            # Same configuration without `audit:`: only the throughput comparison matters.
            continue
        if idle is None:
            continue
        if t in same:
            peak = read(os.path.join(a.res, f"{t}.peak_rss"))
            out.append(f"| {desc} | (same process as {same[t]}) | | | {mib(peak)} |")
            mem.append({"target": t, "peak_kb": peak})
            continue
        conn = read(os.path.join(a.res, f"{t}.conn_rss"))
        conn_s = per_s = "—"
        if conn:
            kb, n, *before = conn.split()
            conn_s = mib(kb) + ("" if n == a.idle_conns else f" ({n} opened)")
            # Against the resident set just before the connections opened (older result sets
            # lack it: then against the idle figure, which overstates after load cells).
            base = float(before[0]) if before else float(idle)
            if int(n) > 0:
                per_s = f"{(float(kb) - base) / int(n):.1f} KiB"
        elif os.path.exists(os.path.join(a.res, f"{t}.idle_out")):
            conn_s = "failed: " + (read(os.path.join(a.res, f"{t}.idle_out"), "") or "").replace("\n", " ")[:120]
        peak = read(os.path.join(a.res, f"{t}.peak_rss"))
        out.append(f"| {desc} | {mib(idle)} | {conn_s} | {per_s} | {mib(peak)} |")
        mem.append({"target": t, "idle_kb": idle, "idle_conns": conn, "peak_kb": peak})
    if a.load:
        out.append("")
        out.append(f"Load average of the machine before / after the run: {a.load}.")
    if notes:
        out.append("")
        out.append("Notes from this run:")
        out.append("")
        for k in sorted(notes):
            out.append(f"- `{k}`: {notes[k]}")
    text = "\n".join(out) + "\n"
    with open(a.out, "w") as fh:
        fh.write(text)
    with open(a.json, "w") as fh:
        json.dump({"date": now, "sekisho": a.sekisho, "machine": a.machine, "pinning": a.pinning,
                   "duration_s": a.duration, "cells": summary, "memory": mem, "notes": notes}, fh, indent=1)


if __name__ == "__main__":
    main()
