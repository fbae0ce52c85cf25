#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS (default 60) and prints executions and crashes.
#
#   fuzz/run.sh [SECONDS] [TARGET…]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Only the stable toolchain is assumed:
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags. Sanitizers are off (`-s none`): the
# crates forbid `unsafe`, so the targets look for panics, overflows (debug assertions are on)
# and broken properties. Not part of CI. Crashes land in fuzz/artifacts/<target>/; minimise
# with `cargo fuzz tmin <target> <file>` and copy small reproducers to fuzz/artifacts-found/.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:-60}"
shift || true
ALL=(canon_path h1guard config_yaml policy_yaml session_cookie bearer_jwt device_cert audit_verify)
TARGETS=("${@:-${ALL[@]}}")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
export RUSTC_BOOTSTRAP=1

seed() {
  local t=$1 d=corpus/$1
  mkdir -p "$d"
  [ -n "$(ls -A "$d" 2>/dev/null)" ] && return 0
  case $t in
    canon_path)
      for p in / /a/b/../c //admin /%2e%2e/admin /public/..%3b/admin /%e6%97%a5 /a%20b/ "/a/./b/"; do
        printf '%s' "$p" > "$d/$(printf '%s' "$p" | sha1sum | cut -c1-12)"
      done ;;
    h1guard)
      printf '\x00\x03\x05\x07GET / HTTP/1.1\r\nHost: a\r\n\r\n' > "$d/get"
      printf '\x00\x02\x09\x11POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n' > "$d/chunked"
      printf '\x00\x01\x04POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n' > "$d/pipelined"
      printf '\x01\x00PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' > "$d/h2" ;;
    config_yaml) cp ../config/sekisho.yaml "$d/example.yaml" ;;
    policy_yaml) for f in ../policies/*.yaml; do cp "$f" "$d/"; done ;;
    session_cookie) printf '\x00__Host-sekisho=1~AAAA; other=1' > "$d/a"; printf '\x01\x10\x41\x80\x42' > "$d/b" ;;
    bearer_jwt)
      printf '\x00eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.' > "$d/none"
      printf '\x01{"alg":"ES256","kid":"k1"}\xff{"iss":"https://idp.city.example.jp","aud":"https://api.city.example.jp","sub":"a","exp":1795000600}' > "$d/signed"
      printf '\x02\x10\x41' > "$d/mutated" ;;
    device_cert)
      local tmp; tmp=$(mktemp -d)
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/k" \
        -subj "/CN=PC-0042" -addext "subjectAltName=URI:urn:sekisho:device:PC-0042,DNS:pc-0042.devices.city.example.jp" \
        -days 1 -outform DER -out "$d/device.der" 2>/dev/null || true
      rm -rf "$tmp" ;;
    audit_verify) printf '\x00\x00\x10\x00X' > "$d/a"; printf '\x00\x04\x80\x00\x01' > "$d/b" ;;
  esac
}

printf '%-16s %8s %14s %8s\n' target seconds executions crashes
for t in "${TARGETS[@]}"; do
  seed "$t"
  log=$(mktemp)
  cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$SECONDS_PER_TARGET" \
    -print_final_stats=1 -max_len=8192 >"$log" 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=$(ls "artifacts/$t" 2>/dev/null | grep -c -E '^(crash|oom|timeout|leak)-' || true)
  printf '%-16s %8s %14s %8s\n' "$t" "$SECONDS_PER_TARGET" "${execs:-?}" "${crashes:-0}"
  if grep -q 'panicked at' "$log"; then
    grep -m1 -A2 'panicked at' "$log" | sed 's/^/    /'
  fi
  cp "$log" "/tmp/sekisho-fuzz-$t.log"
  rm -f "$log"
done
