# Shared by the scripts that reuse a work directory `bench/run.sh` kept (KEEP_WORK=1):
# bench/callgrind.sh and bench/audit-ab.sh. Sourced, not run. Expects WORK, CASE and
# TARGET_DIR; sets LOADGEN, MINT, SEK, URL and CASE_ARGS, and stops what it starts on exit.

LOADGEN=$TARGET_DIR/release/sekisho-loadgen
MINT=$TARGET_DIR/release/sekisho-session-mint
SEK=127.0.0.1:19443

need_files() {
    for f in "$LOADGEN" "$MINT" "$WORK/up/nginx.conf" "$@"; do
        [ -e "$f" ] || { echo "missing $f (run bench/run.sh with KEEP_WORK=1 first)" >&2; exit 1; }
    done
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# The upstream nginx of the kept work directory; arguments go before it (e.g. taskset -c 0).
start_upstream() {
    "$@" nginx -c "$WORK/up/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
    pids+=($!)
}

wait_port() { # host:port — up to 2 minutes (a gateway under valgrind starts slowly)
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
        sleep 0.2
    done
    echo "nothing listening on $1" >&2
    return 1
}

# The route of CASE and the client certificate it needs.
CASE_ARGS=()
case $CASE in
public) URL=https://public.localhost/ ;;
session) URL=https://session.localhost/ ;;
device)
    URL=https://device.localhost/
    dev=$(ls "$WORK"/certs/devices/PC-0042-*.pem | head -1)
    CASE_ARGS=(--cert "$dev" --key "${dev%.pem}.key")
    ;;
*) echo "CASE is public, session or device" >&2; exit 1 ;;
esac

# Loadgen arguments for one run: a freshly minted session cookie unless CASE is public.
load_args() {
    LOAD_ARGS=("${CASE_ARGS[@]}")
    [ "$CASE" = public ] || LOAD_ARGS+=(-H "Cookie: $("$MINT" "$WORK/cookie.keys" http://127.0.0.1:18080)")
}
