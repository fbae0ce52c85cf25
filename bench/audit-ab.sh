#!/usr/bin/env bash
# The audit trail's cost (issue 6: under 10 % of request throughput in `batched` mode),
# measured as pairs: the same binary and route without and with the trail, PAIRS times back
# to back, which goes first alternating from pair to pair. On a shared VM neighbouring runs
# differ by more than the effect; pairs close in time, and their median, say more than two
# cells minutes apart.
#
#   KEEP_WORK=1 SKIP_INSTALL=1 TARGETS=sekisho-device CONNS=32 PROTOS=h1 DURATION=2 bench/run.sh
#   bench/audit-ab.sh /tmp/sekisho-bench.XXXXXX              # 8 pairs, (d) h1/32, 8 s each
#   PAIRS=12 SECS=5 CASE=public bench/audit-ab.sh WORK [BIN]
#   VS=/tmp/sekisho-old CONFIG=noaudit bench/audit-ab.sh WORK BIN  # two builds, same config
#   PROTO=h2 CONNS=256 PAIRS=20 SECS=4 bench/audit-ab.sh WORK BIN  # HTTP/2
#
# With VS set, each pair is the build VS against BIN, both with CONFIG (noaudit, sekisho or
# strict; default noaudit): the change a commit made, in requests/s, on this noisy host.
# Pinning as in bench/run.sh on 2 CPUs: the upstream nginx and the gateway on CPU 0, the load
# generator on CPU 1. Printed per run: requests/s and the gateway process's CPU time per
# request (user + system, all its threads, from /proc); per pair: the change with the trail.
# Then the median change, its interquartile range and a bootstrap 95 % interval of the median
# (how far the median itself may be off on this host). Everything listens on 127.0.0.1 only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:?usage: bench/audit-ab.sh WORK_DIR [BINARY]}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${2:-$TARGET_DIR/release/sekisho}
CASE=${CASE:-device}   # public | session | device
PAIRS=${PAIRS:-8}
SECS=${SECS:-8}
CONNS=${CONNS:-32}
PROTO=${PROTO:-h1}     # h1 | h2
case $PROTO in h1 | h2) ;; *) echo "PROTO is h1 or h2" >&2; exit 1 ;; esac
# shellcheck source=bench/kept-work.sh
. "$ROOT/bench/kept-work.sh"
need_files "$BIN" "$WORK/sk/sekisho.yaml" "$WORK/sk/noaudit.yaml"
LAST=$(($(nproc) - 1))
[ "$LAST" -ge 1 ] || { echo "needs 2 CPUs: one for the servers, one for the load generator" >&2; exit 1; }
start_upstream taskset -c 0

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one() { # config [binary] → "req/s cpu_us_per_request"
    rm -rf "$WORK/sk/audit-batched" "$WORK/sk/audit-strict"
    taskset -c 0 "${2:-$BIN}" serve --config "$WORK/sk/$1.yaml" >"$WORK/audit-ab.$1.log" 2>&1 &
    local sk=$!
    pids+=($sk)
    wait_port "$SEK"
    sleep 0.3
    load_args
    if [ "$PROTO" = h2 ]; then LOAD_ARGS+=(--h2); fi
    local c0 c1
    c0=$(cpu_ticks "$sk")
    taskset -c "$LAST" "$LOADGEN" run --url "$URL" --connect "$SEK" --ca "$WORK/certs/server-ca.pem" \
        "${LOAD_ARGS[@]}" -c "$CONNS" -d "$SECS" --warmup 0 \
        --json "$WORK/audit-ab-load.json" >/dev/null
    c1=$(cpu_ticks "$sk")
    kill "$sk"; wait "$sk" 2>/dev/null || true
    python3 - "$WORK/audit-ab-load.json" "$c0" "$c1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ok, ticks, hz = d["requests_ok"], int(sys.argv[3]) - int(sys.argv[2]), int(sys.argv[4])
if d["non_2xx"] or d["errors"] or not ok:
    sys.exit(f"load failed: ok {ok}, non-2xx {d['non_2xx']}, errors {d['errors']}")
print(f"{d['rps']:.0f} {ticks / hz / ok * 1e6:.1f}")
PY
}

if [ -n "${VS:-}" ]; then
    need_files "$VS"
    CONFIG=${CONFIG:-noaudit}
    A=(one "$CONFIG" "$VS")
    B=(one "$CONFIG" "$BIN")
    echo "== $BIN against $VS ($CONFIG), case $CASE, $PROTO/$CONNS, $SECS s per run, $PAIRS pairs (order alternating)"
    what="with $BIN"; before=before; after=after
else
    A=(one noaudit)
    B=(one sekisho)
    echo "== $BIN, case $CASE, $PROTO/$CONNS, $SECS s per run, $PAIRS pairs (order alternating)"
    what="with the trail"; before=without; after=with
fi
changes=()
for i in $(seq "$PAIRS"); do
    # Odd pairs run A (without the trail, or the old build) first, even pairs B first, so
    # that whatever the second run of a pair inherits (page cache, the upstream's state, a
    # neighbour's load) falls on both sides equally.
    if [ $((i % 2)) = 1 ]; then
        read -r off_rps off_cpu < <("${A[@]}")
        read -r on_rps on_cpu < <("${B[@]}")
    else
        read -r on_rps on_cpu < <("${B[@]}")
        read -r off_rps off_cpu < <("${A[@]}")
    fi
    change=$(python3 -c "print(f'{($on_rps / $off_rps - 1) * 100:+.1f}')")
    changes+=("$change")
    printf '   pair %2d: %s %6s req/s (%5s µs CPU/req), %s %6s req/s (%5s µs CPU/req): %s %%\n' \
        "$i" "$before" "$off_rps" "$off_cpu" "$after" "$on_rps" "$on_cpu" "$change"
done
python3 -c "
import random, statistics, sys
c = sorted(float(x) for x in sys.argv[1:])
print(f'   median change $what: {statistics.median(c):+.1f} % (range {c[0]:+.1f} to {c[-1]:+.1f} %)')
if len(c) >= 4:
    q = statistics.quantiles(c, n=4)
    # Resampling the pairs (a fixed seed, so the same pairs give the same interval).
    rng = random.Random(1)
    b = sorted(statistics.median(rng.choices(c, k=len(c))) for _ in range(10000))
    print(f'   interquartile {q[0]:+.1f} to {q[2]:+.1f} %; 95 % interval of the median '
          f'{b[250]:+.1f} to {b[9749]:+.1f} % ({len(c)} pairs)')
" "${changes[@]}"
