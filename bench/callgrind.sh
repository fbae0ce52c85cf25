#!/usr/bin/env bash
# Instructions per request, counted by callgrind: a deterministic figure for comparing two
# builds on a machine too noisy for requests/s to show a change of a few per cent.
#
#   KEEP_WORK=1 SKIP_INSTALL=1 TARGETS=sekisho-device CONNS=32 PROTOS=h1 DURATION=2 bench/run.sh
#   bench/callgrind.sh /tmp/sekisho-bench.XXXXXX                   # (d), audit on, release build
#   CASE=public CONFIG=noaudit bench/callgrind.sh WORK BIN_A BIN_B  # two builds side by side
#   PROTO=h2 CONFIG=noaudit bench/callgrind.sh WORK                 # HTTP/2 requests
#
# The work directory is one that `bench/run.sh` kept (certificates, configurations, the
# upstream nginx's configuration). For each binary (default: the release build in
# ${CARGO_TARGET_DIR:-target}) the gateway runs under `valgrind --tool=callgrind` on 127.0.0.1,
# takes WARMUP seconds of requests, has its counters zeroed, serves REQUESTS more over 4 keep-alive
# connections at a paced rate, and is dumped. Those 4 connections are new (another client run),
# so their TLS handshakes and first checks are counted too: on (d) ≈ 15 million instructions,
# ≈ 15,000 a request at REQUESTS=1000 and ≈ 3,800 at 4000 (86,664 against 75,389 per request,
# 0192bd0). Both builds of a comparison pay them alike; for a figure per request on its own,
# take two REQUESTS and solve, or use a large REQUESTS. Printed: instructions (Ir) per request for the
# whole process (gateway thread, audit writer, every other thread) and the functions with the
# most inclusive Ir per request. Callgrind output stays in the work directory for
# `callgrind_annotate` or KCachegrind. The upstream nginx runs natively and is not counted.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:?usage: bench/callgrind.sh WORK_DIR [BINARY ...]}
shift
CASE=${CASE:-device}            # public | session | device
CONFIG=${CONFIG:-sekisho}       # sekisho (audit batched) | noaudit | strict
PROTO=${PROTO:-h1}              # h1 | h2 (one stream per connection, as in bench/run.sh)
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-5}             # seconds: TLS handshakes, pools and caches first
RATE=${RATE:-100}
TOP=${TOP:-25}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# shellcheck source=bench/kept-work.sh
. "$ROOT/bench/kept-work.sh"
[ $# -gt 0 ] || set -- "$TARGET_DIR/release/sekisho"
for tool in valgrind callgrind_control callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "needs $tool (Debian: valgrind)" >&2; exit 1; }
done
need_files "$WORK/sk/$CONFIG.yaml"
start_upstream

load() { # seconds
    load_args
    [ "$PROTO" = h2 ] && LOAD_ARGS+=(--h2)
    "$LOADGEN" run --url "$URL" --connect "$SEK" --ca "$WORK/certs/server-ca.pem" "${LOAD_ARGS[@]}" \
        -c 4 --rate "$RATE" -d "$1" --warmup 0 \
        --json "$WORK/callgrind-load.json" >/dev/null
    python3 -c "import json; d=json.load(open('$WORK/callgrind-load.json')); print(d['requests_ok'], d['non_2xx'], d['errors'])"
}

n=0
for bin in "$@"; do
    n=$((n + 1))
    out=$WORK/callgrind.$n.out
    rm -f "$out"*
    # One CPU, as in bench/run.sh's pinning: the gateway then runs tokio's current-thread
    # scheduler, the configuration measured there.
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no --collect-atstart=yes \
        "$bin" serve --config "$WORK/sk/$CONFIG.yaml" >"$WORK/callgrind.$n.log" 2>&1 &
    vg=$!
    pids+=($vg)
    wait_port "$SEK"
    load "$WARMUP" >/dev/null
    callgrind_control -z "$vg" >/dev/null
    read -r ok non2xx errors < <(load "$(python3 -c "print($REQUESTS / $RATE)")")
    callgrind_control -d "$vg" >/dev/null
    kill "$vg"; wait "$vg" 2>/dev/null || true
    dump=$(ls -t "$out".* 2>/dev/null | head -1)
    [ -n "$dump" ] || { echo "no callgrind dump for $bin" >&2; exit 1; }
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    echo "== $bin ($CASE, $CONFIG, $PROTO): $ok requests answered 2xx (non-2xx $non2xx, errors $errors)"
    python3 -c "print(f'   {int($total) / max($ok, 1):,.0f} instructions per request (whole process)')"
    for mode in no yes; do
        callgrind_annotate --inclusive=$mode --threshold=100 "$dump" 2>/dev/null >"$out.annotate-$mode"
    done
    python3 - "$out" "$ok" "$TOP" "$total" <<'PY'
import re, sys
out, ok, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
total = int(sys.argv[4]) / ok
def rows(mode):
    for line in open(f"{out}.annotate-{mode}"):
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        name = m.group(2)
        name = re.sub(r"^\S*?\.(rs|c|S|h):", "", name)       # source file
        name = re.sub(r"\s*\[[^\]]*\]$", "", name)          # object file
        yield int(m.group(1).replace(",", "")) / ok, name
print("   self (exclusive) instructions per request:")
# Frames that were on the stack when the counters were zeroed (main, the runtime's loop) show
# the whole run as their own cost: a callgrind artefact, left out.
own = [(ir, name) for ir, name in rows("no") if ir < 0.5 * total]
for ir, name in own[:top]:
    print(f"   {ir:10.0f}  {name[:130]}")
print("   Sekisho's own functions, inclusive, per request:")
seen = set()
for ir, name in rows("yes"):
    if name.startswith("sekisho_") and name not in seen and "{{closure}}" not in name.split("::")[-1:]:
        seen.add(name)
        print(f"   {ir:10.0f}  {name[:130]}")
        if len(seen) >= top:
            break
PY
done
