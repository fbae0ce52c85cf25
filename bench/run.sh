#!/usr/bin/env bash
# Sekisho side-by-side benchmark (issue 8). One command:
#
#   bench/run.sh                 # everything, 10 s per cell (+2 s warm-up)
#   DURATION=5 bench/run.sh      # shorter cells
#   CONNS="32" PROTOS="h1" bench/run.sh   # a subset
#   SKIP_INSTALL=1 SKIP_BUILD=1 bench/run.sh
#   ROUNDS=3 bench/run.sh        # all targets three times over; each cell's median is reported
#
# It installs nginx, wrk, nghttp2-client (h2load), apache2 and libapache2-mod-auth-openidc
# from Debian when missing, builds Sekisho and bench/loadgen in release (into
# ${CARGO_TARGET_DIR:-target}), makes a throw-away PKI and JWT key, starts an nginx upstream
# and every server under test on loopback only, drives all of them with the same load
# generator (bench/loadgen: TLS client certificates, HTTP/1.1 and HTTP/2), measures memory,
# and writes bench/results/latest.md (+ latest.json). Everything it starts is stopped by PID
# on exit. Needs root (apt-get, ulimit -n, Apache/nginx drop to www-data).
#
# Pinning: with ≥2 CPUs the load generator runs on the last CPU (taskset), the server under
# test and the upstream nginx on the others (CPU 0 on a 2-CPU machine); every server gets one
# worker process / its default thread count limited by that affinity.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-"32 256"}
PROTOS=${PROTOS:-"h1 h2"}
IDLE_CONNS=${IDLE_CONNS:-10000}
PACED_RATE=${PACED_RATE:-2000}   # req/s for the latency table (below every target's capacity)
ROUNDS=${ROUNDS:-1}              # >1: repeat every target's cells, report each cell's median
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a whole number of rounds, 1 or more (got '$ROUNDS')" >&2; exit 1; }
TARGETS=${TARGETS:-"direct nginx nginx-mtls floor apache sekisho-public sekisho-bearer sekisho-session sekisho-device"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=$ROOT/bench/results
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/sekisho-bench.XXXXXX)
chmod 755 "$WORK"
RES=$WORK/results
mkdir -p "$RES"
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------- processes
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    sleep 0.5
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
    done
    if [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT INT TERM

NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
    GEN_CPUS=$((NCPU - 1))
    SRV_CPUS=0-$((NCPU - 2))
    [ "$NCPU" -eq 2 ] && SRV_CPUS=0
    PIN_SRV=(taskset -c "$SRV_CPUS")
    PIN_GEN=(taskset -c "$GEN_CPUS")
    PINNING="load generator on CPU $GEN_CPUS; server under test and upstream nginx on CPU $SRV_CPUS (taskset)"
else
    PIN_SRV=()
    PIN_GEN=()
    PINNING="not pinned (1 CPU)"
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---------------------------------------------------------------------------- install
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v apache2 >/dev/null || need+=(apache2)
[ -e /usr/lib/apache2/modules/mod_auth_openidc.so ] || need+=(libapache2-mod-auth-openidc)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ] && [ -z "${SKIP_INSTALL:-}" ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts packaged daemons on install where it can; this benchmark runs its own.

# ---------------------------------------------------------------------------- build
# What is measured: the commit (and whether the crates had local changes) at build time.
BUILD_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo '+local changes')
if [ -n "${SKIP_BUILD:-}" ]; then BUILD_REV="prebuilt binary (SKIP_BUILD; HEAD $BUILD_REV)"; fi
if [ -z "${SKIP_BUILD:-}" ]; then
    log "building sekisho (release) and the load generator into $CARGO_TARGET_DIR"
    cargo build --release -q -p sekisho
    cargo build --release -q --manifest-path bench/loadgen/Cargo.toml
    cargo build --release -q --manifest-path bench/session-mint/Cargo.toml || log "session-mint did not build: no session cases"
fi
MINT=$CARGO_TARGET_DIR/release/sekisho-session-mint
if [ -x "$MINT" ]; then MINT=$(realpath "$MINT"); else MINT=""; fi
SEKISHO=$CARGO_TARGET_DIR/release/sekisho
LOADGEN=$CARGO_TARGET_DIR/release/sekisho-loadgen
[ -x "$SEKISHO" ] && [ -x "$LOADGEN" ] || { echo "missing $SEKISHO or $LOADGEN" >&2; exit 1; }
SEKISHO=$(realpath "$SEKISHO")
LOADGEN=$(realpath "$LOADGEN")

# ---------------------------------------------------------------------------- material
log "certificates, JWT key and site in $WORK"
"$SEKISHO" certs init "$WORK/certs" --host bench.localhost --host public.localhost --host bearer.localhost \
    --host session.localhost --host device.localhost --host 127.0.0.1 >/dev/null
SEKISHO_P12_PASSWORD=bench "$SEKISHO" certs issue-device --dir "$WORK/certs" --id PC-0042 >"$WORK/device.txt"
DEV_CERT=$(ls "$WORK"/certs/devices/PC-0042-*.pem | head -1)
DEV_KEY=${DEV_CERT%.pem}.key
CA=$WORK/certs/server-ca.pem
chmod -R a+rX "$WORK/certs"
mkdir -p "$WORK/www"
python3 - "$WORK/www/index.html" <<'EOF'
import sys
body = "<!doctype html><title>upstream</title><p>" + "関所 bench upstream. " * 12 + "</p>\n"
open(sys.argv[1], "w").write(body)
EOF
BODY_BYTES=$(stat -c %s "$WORK/www/index.html")
# RS256 key, JWKS (served by the upstream nginx) and a bearer token valid for a day.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/jwt.key" 2>/dev/null
python3 - "$WORK" <<'EOF'
import base64, json, subprocess, sys, time
w = sys.argv[1]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
mod = subprocess.check_output(["openssl", "rsa", "-in", f"{w}/jwt.key", "-noout", "-modulus"]).decode().strip().split("=", 1)[1]
n = bytes.fromhex(mod)
jwks = {"keys": [{"kty": "RSA", "kid": "bench-1", "use": "sig", "alg": "RS256", "n": b64(n), "e": "AQAB"}]}
open(f"{w}/www/jwks.json", "w").write(json.dumps(jwks))
# A static discovery document so the gateway's OIDC provider (sessions) has an issuer to
# discover; no login happens in the benchmark (see bench/session-mint).
import os
os.makedirs(f"{w}/www/.well-known", exist_ok=True)
iss = "http://127.0.0.1:18080"
open(f"{w}/www/.well-known/openid-configuration", "w").write(json.dumps({
    "issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token",
    "jwks_uri": iss + "/jwks.json", "userinfo_endpoint": iss + "/userinfo",
    "response_types_supported": ["code"], "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "code_challenge_methods_supported": ["S256"]}))
now = int(time.time())
hdr = {"alg": "RS256", "typ": "at+jwt", "kid": "bench-1"}
claims = {"iss": "http://127.0.0.1:18080", "aud": "sekisho-bench", "sub": "bench-user-1",
          "email": "bench@city.sekisho.lg.jp", "name": "Bench User", "groups": ["staff"],
          "amr": ["pwd", "otp"], "iat": now - 60, "nbf": now - 60, "exp": now + 86400,
          "client_id": "bench", "jti": "bench-1", "scope": "openid"}
signing = (b64(json.dumps(hdr, separators=(",", ":")).encode()) + "." +
           b64(json.dumps(claims, separators=(",", ":")).encode()))
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{w}/jwt.key"], input=signing.encode(),
                     capture_output=True, check=True).stdout
open(f"{w}/bearer.jwt", "w").write(signing + "." + b64(sig))
EOF
JWT=$(cat "$WORK/bearer.jwt")
# The same public key as an X.509 certificate, for mod_auth_openidc's static key list.
openssl req -x509 -new -key "$WORK/jwt.key" -subj /CN=bench-jwt -days 2 -out "$WORK/jwt.crt" 2>/dev/null
chmod a+r "$WORK/jwt.crt"
head -c 32 /dev/urandom | base64 | sed 's/^/bench-1:/' >"$WORK/cookie.keys"
chmod 600 "$WORK/cookie.keys"

# ---------------------------------------------------------------------------- upstream
UP_HTTP=127.0.20.13:8080
UP_TLS=127.0.20.13:8443
mkdir -p "$WORK/up" "$WORK/px" "$WORK/ap"
cat >"$WORK/up/nginx.conf" <<EOF
# Upstream: a small static body over plain HTTP (for the proxies) and TLS (the direct ceiling).
user www-data;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log warn;
events { worker_connections 30000; }
http {
    access_log off;
    default_type text/html;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/up/tmp;
    proxy_temp_path $WORK/up/tmp;
    fastcgi_temp_path $WORK/up/tmp;
    uwsgi_temp_path $WORK/up/tmp;
    scgi_temp_path $WORK/up/tmp;
    server {
        listen $UP_HTTP;
        listen $UP_TLS ssl http2;
        ssl_certificate $WORK/certs/server.pem;
        ssl_certificate_key $WORK/certs/server.key;
        root $WORK/www;
        location / { index index.html; }
        location ~ (\.json|openid-configuration)\$ { default_type application/json; }
    }
}
EOF

# ---------------------------------------------------------------------------- nginx proxy
NGINX_PLAIN=127.0.0.1:18443
NGINX_MTLS=127.0.0.1:18444
# The stack floor: `loadgen floor`, a bare TLS reverse proxy made of the crates Sekisho is
# built from, with none of its checks (bench/loadgen/src/floor.rs).
FLOOR=127.0.0.1:18450
cat >"$WORK/px/nginx.conf" <<EOF
# nginx as a TLS reverse proxy (plain) and with client-certificate verification (mtls).
user www-data;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $WORK/px/nginx.pid;
error_log $WORK/px/error.log warn;
events { worker_connections 30000; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/px/tmp;
    proxy_temp_path $WORK/px/tmp;
    fastcgi_temp_path $WORK/px/tmp;
    uwsgi_temp_path $WORK/px/tmp;
    scgi_temp_path $WORK/px/tmp;
    ssl_certificate $WORK/certs/server.pem;
    ssl_certificate_key $WORK/certs/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    upstream up { server $UP_HTTP; keepalive 512; }
    server {
        listen $NGINX_PLAIN ssl http2;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }
    server {
        listen $NGINX_MTLS ssl http2;
        ssl_client_certificate $WORK/certs/device-ca.pem;
        ssl_crl $WORK/certs/device-ca.crl.pem;
        ssl_verify_client on;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Client-Cert-Subject \$ssl_client_s_dn;
        }
    }
}
EOF

# ---------------------------------------------------------------------------- Apache
APACHE=127.0.0.1:18445
M=/usr/lib/apache2/modules
cat >"$WORK/ap/httpd.conf" <<EOF
# Apache httpd (event MPM) + mod_auth_openidc validating an RS256 bearer JWT against a local
# key (OIDCOAuthVerifyCertFiles, kid bench-1), then mod_proxy to the upstream.
ServerRoot $WORK/ap
ServerName bench.localhost
PidFile $WORK/ap/httpd.pid
ErrorLog $WORK/ap/error.log
LogLevel warn
Mutex file:$WORK/ap default
DefaultRuntimeDir $WORK/ap
LoadModule mpm_event_module $M/mod_mpm_event.so
LoadModule authn_core_module $M/mod_authn_core.so
LoadModule authz_core_module $M/mod_authz_core.so
LoadModule authz_user_module $M/mod_authz_user.so
LoadModule socache_shmcb_module $M/mod_socache_shmcb.so
LoadModule ssl_module $M/mod_ssl.so
LoadModule http2_module $M/mod_http2.so
LoadModule proxy_module $M/mod_proxy.so
LoadModule proxy_http_module $M/mod_proxy_http.so
LoadModule auth_openidc_module $M/mod_auth_openidc.so
User www-data
Group www-data
Listen $APACHE
StartServers 2
ServerLimit 16
ThreadsPerChild 64
MaxRequestWorkers 1024
MinSpareThreads 64
MaxSpareThreads 1024
AsyncRequestWorkerFactor 16
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 300
Protocols h2 http/1.1
H2MaxSessionStreams 100
SSLSessionCache shmcb:$WORK/ap/ssl_scache(512000)
SSLProtocol -all +TLSv1.2 +TLSv1.3
OIDCCryptoPassphrase bench-only-passphrase
OIDCOAuthVerifyCertFiles bench-1#$WORK/jwt.crt
OIDCOAuthRemoteUserClaim sub
<VirtualHost $APACHE>
    SSLEngine on
    SSLCertificateFile $WORK/certs/server.pem
    SSLCertificateKeyFile $WORK/certs/server.key
    ProxyPass / http://$UP_HTTP/ keepalive=On
    <Location />
        AuthType oauth20
        Require valid-user
    </Location>
</VirtualHost>
EOF

# ---------------------------------------------------------------------------- Sekisho
SEK=127.0.0.1:19443
SEK_ADMIN=127.0.0.1:19900
mkdir -p "$WORK/sk/policies"
cat >"$WORK/sk/policies/bench.yaml" <<'EOF'
policies:
  bench-staff:
    description: bench — staff (bearer or session)
    allow:
      - name: staff
        groups: [staff]
  bench-device:
    description: bench — staff on a managed, compliant device with a certificate
    allow:
      - name: staff on a managed device
        groups: [staff]
        device: { certificate: true, managed: true, compliant: true }
EOF
now_iso=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cat >"$WORK/sk/devices.yaml" <<EOF
source: bench
exported_at: "$now_iso"
devices:
  - device_id: PC-0042
    managed: true
    ownership: corporate
    os: windows
    os_version: "11.24H2"
    disk_encryption: true
    screen_lock: true
    compliant: true
    last_check_in: "$now_iso"
EOF
sek_head() {
    cat <<EOF
instance: bench
logging: { format: text, level: warn }
admin: { listen: $SEK_ADMIN }
limits: { max_concurrent_streams: 100 }
zones:
  internet:
    description: bench
    egress: { allow: [127.0.20.0/24] }
listeners:
  bench:
    zone: internet
    listen: $SEK
    tls:
      certificates:
        - { cert: $WORK/certs/server.pem, key: $WORK/certs/server.key }
EOF
}
sek_route_public() {
    cat <<EOF
  public:
    zone: internet
    hosts: [public.localhost]
    upstreams: [http://$UP_HTTP]
    access: public
EOF
}
# Level 0: public route only. Level 1: + bearer JWT + policy. Level 2: + sessions.
# Level 3: + device certificates and posture. Audit: added to every level once the gateway
# accepts an `audit:` section (batched; strict is measured for the device case).
sek_config() {
    local level=$1 audit_mode=${2:-batched}
    sek_head
    if [ "$level" -ge 1 ]; then
        echo "policies: [$WORK/sk/policies]"
        echo "identity:"
        if [ "$level" -ge 2 ]; then
            echo "  oidc:"
            echo "    issuer: http://127.0.0.1:18080"
            echo "    client_id: sekisho-bench"
        fi
        echo "  bearer:"
        echo "    issuer: http://127.0.0.1:18080"
        echo "    audiences: [sekisho-bench]"
        echo "    jwks_uri: http://127.0.0.1:18080/jwks.json"
        # The gateway wants a cookie key ring whenever identity is configured.
        echo "  session:"
        echo "    cookie_keys_file: $WORK/cookie.keys"
    fi
    if [ "$level" -ge 3 ]; then
        cat <<EOF
devices:
  trust:
    ca_files: [$WORK/certs/device-ca.pem]
    crl_files: [$WORK/certs/device-ca.crl.pem]
    device_id: { from: san_uri, prefix: "urn:sekisho:device:" }
  inventory_files: [$WORK/sk/devices.yaml]
EOF
    fi
    if [ "${AUDIT_OK:-0}" = 1 ]; then
        echo "audit:"
        echo "  dir: $WORK/sk/audit-$audit_mode"
        echo "  durability: $audit_mode"
    fi
    echo "routes:"
    sek_route_public
    if [ "$level" -ge 1 ]; then
        cat <<EOF
  bearer:
    zone: internet
    hosts: [bearer.localhost]
    upstreams: [http://$UP_HTTP]
    policy: bench-staff
EOF
    fi
    if [ "$level" -ge 2 ]; then
        cat <<EOF
  session:
    zone: internet
    hosts: [session.localhost]
    upstreams: [http://$UP_HTTP]
    policy: bench-staff
EOF
    fi
    if [ "$level" -ge 3 ]; then
        cat <<EOF
  device:
    zone: internet
    hosts: [device.localhost]
    upstreams: [http://$UP_HTTP]
    policy: bench-device
EOF
    fi
}

# The JWKS is also offered on 127.0.0.1 (the gateway accepts plain-http JWKS only there).
sed -i "s|listen $UP_HTTP;|listen $UP_HTTP; listen 127.0.0.1:18080;|" "$WORK/up/nginx.conf"

# ---------------------------------------------------------------------------- helpers
wait_port() { # addr
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}
# Resident set of a process and all its descendants, in KiB.
tree_pids() { local p=$1 c; echo "$p"; for c in $(pgrep -P "$p" 2>/dev/null); do tree_pids "$c"; done; }
rss_kb() {
    local sum=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
SAMPLER=""
sampler_start() { # pid file
    (
        local max=0 v
        while kill -0 "$1" 2>/dev/null; do
            v=$(rss_kb "$1")
            [ "$v" -gt "$max" ] && max=$v && echo "$max" >"$2"
            sleep 0.25
        done
    ) &
    SAMPLER=$!
}
sampler_stop() { [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=""; }

start_bg() { # name cmd... — runs pinned to the server CPUs, records the PID
    local name=$1
    shift
    "${PIN_SRV[@]}" "$@" >"$WORK/$name.out" 2>&1 &
    PIDS+=($!)
    echo $!
}
stop_pid() { kill "$1" 2>/dev/null || true; local i; for i in $(seq 1 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }

LG_COMMON=(--ca "$CA")
loadgen() { RUST_BACKTRACE=0 "${PIN_GEN[@]}" "$LOADGEN" "$@"; }

# One cell: target proto conns url connect [extra args]
cell() {
    local target=$1 proto=$2 c=$3 url=$4 connect=$5
    shift 5
    local h2=() a args=()
    [ "$proto" = h2 ] && h2=(--h2)
    # A fresh session per cell: the client does not store the gateway's Set-Cookie, so an
    # old cookie would make every request a "touch" that re-seals the session.
    for a in "$@"; do
        if [[ "$a" == *@COOKIE@* ]]; then a=${a//@COOKIE@/$("$MINT" "$WORK/cookie.keys" http://127.0.0.1:18080)}; fi
        args+=("$a")
    done
    set -- "${args[@]}"
    loadgen run --url "$url" --connect "$connect" "${LG_COMMON[@]}" "${h2[@]}" "$@" \
        -c "$c" -d "$DURATION" --warmup "$WARMUP" --label "$target/$proto/c$c" \
        --json "$RES/$target-$proto-$c.json" || echo "{\"label\":\"$target/$proto/c$c\",\"failed\":true}" >"$RES/$target-$proto-$c.json"
}
# All cells of a target while sampling the server's RSS.
measure() { # target pid url connect [extra args]
    local target=$1 pid=$2
    shift 2
    echo "$(rss_kb "$pid")" >"$RES/$target.idle_rss"
    sampler_start "$pid" "$RES/$target.peak_rss"
    local c p
    for c in $CONNS; do
        for p in $PROTOS; do
            cell "$target" "$p" "$c" "$@"
        done
    done
    # Latency at a fixed, moderate load: 32 connections, HTTP/1.1, PACED_RATE req/s.
    if [ "$PACED_RATE" != 0 ]; then
        local url=$1 connect=$2 a args=()
        shift 2
        for a in "$@"; do
            if [[ "$a" == *@COOKIE@* ]]; then a=${a//@COOKIE@/$("$MINT" "$WORK/cookie.keys" http://127.0.0.1:18080)}; fi
            args+=("$a")
        done
        loadgen run --url "$url" --connect "$connect" "${LG_COMMON[@]}" "${args[@]}" -c 32 --rate "$PACED_RATE" \
            -d "$DURATION" --warmup "$WARMUP" --label "$target/paced" --json "$RES/$target.paced.json" || true
    fi
    sampler_stop
}
# RSS with IDLE_CONNS idle keep-alive connections (HTTP/1.1, one request each).
idle_rss() { # target pid url connect [extra args]
    local target=$1 pid=$2 url=$3 connect=$4
    shift 4
    [ -n "${SKIP_IDLE:-}" ] && return 0
    rm -f "$WORK/ready"
    # The resident set just before, so that the report can give memory per connection: a
    # server that ran load cells keeps some of what they used, which is not the connections'.
    local before
    before=$(rss_kb "$pid")
    loadgen idle --url "$url" --connect "$connect" "${LG_COMMON[@]}" "$@" -n "$IDLE_CONNS" --hold 6 \
        --ready-file "$WORK/ready" >"$RES/$target.idle_out" 2>&1 &
    local lg=$! i
    for i in $(seq 1 600); do [ -f "$WORK/ready" ] && break; kill -0 $lg 2>/dev/null || break; sleep 0.1; done
    sleep 2
    if [ -f "$WORK/ready" ]; then
        echo "$(rss_kb "$pid") $(cat "$WORK/ready") $before" >"$RES/$target.conn_rss"
    fi
    wait $lg || true
    sleep 1
}

# ---------------------------------------------------------------------------- run
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "pinning: $PINNING; load average $LOAD_BEFORE"
# A server left over from an earlier run (or anything else) on one of these ports would answer
# in place of the one under test: every figure would be wrong. Refuse instead.
for addr in "$UP_HTTP" "$UP_TLS" "$NGINX_PLAIN" "$NGINX_MTLS" "$FLOOR" "$APACHE" "$SEK" "$SEK_ADMIN"; do
    if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
        echo "something already listens on $addr (an earlier benchmark's server?): stop it first" >&2
        ss -ltnp 2>/dev/null | grep -F " $addr " >&2 || true
        exit 1
    fi
done
log "starting the upstream"
mkdir -p "$WORK/up/tmp" "$WORK/px/tmp"
chown -R www-data "$WORK/up/tmp" "$WORK/px/tmp" 2>/dev/null || true
UP_PID=$(start_bg upstream nginx -c "$WORK/up/nginx.conf" -g 'daemon off;')
wait_port "$UP_HTTP"
wait_port "$UP_TLS"
declare -A NOTE

want() { [[ " $TARGETS " == *" $1 "* ]]; }

# Which Sekisho features does this build accept? (`sekisho check` is the loader `serve` runs.)
check_level() { # level audit → 0 if the config checks
    sek_config "$1" "${2:-batched}" >"$WORK/sk/level$1.yaml"
    "$SEKISHO" check --config "$WORK/sk/level$1.yaml" >"$WORK/sk/check$1.txt" 2>&1
}
AUDIT_OK=1
if ! check_level 0; then
    AUDIT_OK=0
    NOTE[audit]="audit: the gateway does not accept an \`audit:\` section yet ($(grep -m1 -i 'error' "$WORK/sk/check0.txt" | cut -c1-160))"
fi
check_level 0 || { cat "$WORK/sk/check0.txt" >&2; exit 1; }
LEVEL=0
for l in 1 2 3; do
    if check_level $l; then LEVEL=$l; else
        NOTE[level$l]=$(grep -m2 -iE 'error|unknown' "$WORK/sk/check$l.txt" | tr '\n' ' ' | cut -c1-240)
        break
    fi
done
sek_config "$LEVEL" batched >"$WORK/sk/sekisho.yaml"
log "Sekisho: config level $LEVEL (0 public, 1 +bearer, 2 +session, 3 +device), audit ${AUDIT_OK}"

probe() { # url connect [args] → status code list or ok
    loadgen run --url "$1" --connect "$2" "${LG_COMMON[@]}" "${@:3}" -c 1 -d 0.5 --warmup 0 --json "$WORK/probe.json" >/dev/null 2>&1 || true
    python3 -c "import json; d=json.load(open('$WORK/probe.json')); s=d.get('statuses',{}); print('ok' if d.get('requests_ok',0)>0 and not s else ','.join(s) or 'error: '+d.get('first_error',''))" 2>/dev/null || echo "?"
}

run_sekisho() { # config-file suffix for results
    local cfg=$1 sfx=$2
    SK_PID=$(start_bg "sekisho$sfx" "$SEKISHO" serve --config "$cfg")
    wait_port "$SEK"
    sleep 0.5
    echo "$(rss_kb "$SK_PID")" >"$RES/sekisho-start$sfx.idle_rss"
    if want sekisho-public; then
        log "Sekisho (a) public route$sfx"
        measure "sekisho-public$sfx" "$SK_PID" "https://public.localhost/" "$SEK"
    fi
    if want sekisho-bearer && [ "$LEVEL" -ge 1 ]; then
        local deny ok
        deny=$(probe https://bearer.localhost/ "$SEK")
        ok=$(probe https://bearer.localhost/ "$SEK" -H "Authorization: Bearer $JWT")
        if [ "$ok" = ok ] && [ "$deny" != ok ]; then
            log "Sekisho (b) bearer JWT + policy$sfx"
            measure "sekisho-bearer$sfx" "$SK_PID" "https://bearer.localhost/" "$SEK" -H "Authorization: Bearer $JWT"
        else
            NOTE[bearer]="probe: without token $deny, with token $ok"
        fi
    fi
    if want sekisho-session && [ "$LEVEL" -ge 2 ]; then
        local deny ok
        if [ -n "$MINT" ]; then
            deny=$(probe https://session.localhost/ "$SEK")
            ok=$(probe https://session.localhost/ "$SEK" -H "Cookie: $("$MINT" "$WORK/cookie.keys" http://127.0.0.1:18080)")
            if [ "$ok" = ok ] && [ "$deny" != ok ]; then
                log "Sekisho (c) session cookie + policy$sfx"
                measure "sekisho-session$sfx" "$SK_PID" "https://session.localhost/" "$SEK" -H "Cookie: @COOKIE@"
            else
                NOTE[session]="probe: without cookie $deny, with a minted session cookie $ok"
            fi
        else
            NOTE[session]="bench/session-mint did not build"
        fi
    fi
    if want sekisho-device && [ "$LEVEL" -ge 3 ]; then
        local deny nocert ok
        if [ -n "$MINT" ]; then
            deny=$(probe https://device.localhost/ "$SEK" --cert "$DEV_CERT" --key "$DEV_KEY")
            nocert=$(probe https://device.localhost/ "$SEK" -H "Cookie: $("$MINT" "$WORK/cookie.keys" http://127.0.0.1:18080)")
            ok=$(probe https://device.localhost/ "$SEK" -H "Cookie: $("$MINT" "$WORK/cookie.keys" http://127.0.0.1:18080)" --cert "$DEV_CERT" --key "$DEV_KEY")
            if [ "$ok" = ok ] && [ "$deny" != ok ] && [ "$nocert" != ok ]; then
                log "Sekisho (d) session + device certificate + posture + policy$sfx"
                measure "sekisho-device$sfx" "$SK_PID" "https://device.localhost/" "$SEK" -H "Cookie: @COOKIE@" --cert "$DEV_CERT" --key "$DEV_KEY"
            else
                NOTE[device]="probe: no cookie $deny, no certificate $nocert, both $ok"
            fi
        else
            NOTE[device]="bench/session-mint did not build"
        fi
    fi
    if want sekisho-public && [ -z "$sfx" ]; then
        idle_rss sekisho-public "$SK_PID" "https://public.localhost/" "$SEK"
    fi
    stop_pid "$SK_PID"
    # The trail written under load is not read afterwards, and it is large (≈ 4 GB a round at
    # ≈ 1.2 KB a record): removed once its gateway has stopped, so ROUNDS=3 does not fill a
    # small disk. KEEP_TRAIL=1 keeps it (e.g. for `sekisho audit verify`).
    if [ -z "${KEEP_TRAIL:-}" ]; then rm -rf "$WORK/sk/audit-batched" "$WORK/sk/audit-strict"; fi
}

# One round: every target, one after another. With ROUNDS > 1 the rounds repeat the whole
# sequence and the report takes each cell's median over them: on a shared VM a cell swings
# by ±10 % from one minute to the next, and a median of cells spread over the run says more
# than one cell. Memory and the paced latency are measured in the first round only.
run_round() {
    if want direct; then
        log "direct (upstream nginx over TLS)"
        measure direct "$UP_PID" "https://bench.localhost/" "$UP_TLS"
    fi

    if want nginx || want nginx-mtls; then
        PX_PID=$(start_bg nginx-proxy nginx -c "$WORK/px/nginx.conf" -g 'daemon off;')
        wait_port "$NGINX_PLAIN"
        if want nginx; then
            log "nginx plain TLS proxy"
            measure nginx "$PX_PID" "https://bench.localhost/" "$NGINX_PLAIN"
        fi
        if want nginx-mtls; then
            log "nginx with client-certificate verification"
            measure nginx-mtls "$PX_PID" "https://bench.localhost/" "$NGINX_MTLS" --cert "$DEV_CERT" --key "$DEV_KEY"
        fi
        # Idle connections last, so the peaks above are not inflated by memory kept from them.
        want nginx && idle_rss nginx "$PX_PID" "https://bench.localhost/" "$NGINX_PLAIN"
        stop_pid "$PX_PID"
    fi

    if want floor; then
        # What the same crates cost with nothing of Sekisho's own on the path: the gap between
        # this row and nginx is the stack's, the gap between this row and Sekisho (a) is Sekisho's.
        FL_PID=$(start_bg floor "$LOADGEN" floor --listen "$FLOOR" --cert "$WORK/certs/server.pem" \
            --key "$WORK/certs/server.key" --upstream "$UP_HTTP")
        wait_port "$FLOOR"
        log "stack floor (bare hyper + rustls proxy)"
        measure floor "$FL_PID" "https://bench.localhost/" "$FLOOR"
        # The same crates' memory per idle connection: the part of Sekisho's that is the stack's.
        idle_rss floor "$FL_PID" "https://bench.localhost/" "$FLOOR"
        stop_pid "$FL_PID"
    fi

    if want apache; then
        if apache2 -t -f "$WORK/ap/httpd.conf" >"$WORK/ap/configtest" 2>&1; then
            AP_PID=$(start_bg apache apache2 -f "$WORK/ap/httpd.conf" -DFOREGROUND)
            wait_port "$APACHE"
            code=$(loadgen run --url https://bench.localhost/ --connect "$APACHE" "${LG_COMMON[@]}" -c 1 -d 0.5 --warmup 0 --json "$WORK/probe.json" >/dev/null 2>&1; python3 -c "import json,sys; d=json.load(open('$WORK/probe.json')); print(','.join(d['statuses']) or 'ok')" 2>/dev/null || echo "?")
            NOTE[apache]="without a token: $code"
            log "Apache + mod_auth_openidc (probe without token: $code)"
            measure apache "$AP_PID" "https://bench.localhost/" "$APACHE" -H "Authorization: Bearer $JWT"
            idle_rss apache "$AP_PID" "https://bench.localhost/" "$APACHE" -H "Authorization: Bearer $JWT"
            stop_pid "$AP_PID"
        else
            NOTE[apache]="config test failed: $(head -3 "$WORK/ap/configtest" | tr '\n' ' ')"
            log "${NOTE[apache]}"
        fi
    fi

    run_sekisho "$WORK/sk/sekisho.yaml" ""
    if [ "$AUDIT_OK" = 1 ] && [ "$LEVEL" -ge 3 ] && [ -f "$RES/sekisho-device.peak_rss" ]; then
        sek_config 3 strict >"$WORK/sk/strict.yaml"
        TARGETS="sekisho-device" run_sekisho "$WORK/sk/strict.yaml" "-strict"
    fi
    # The audit trail's cost (issue 6: under 10 % in batched mode): the same configuration without
    # `audit:`, measured in the same run. AUDIT_AB=0 skips it.
    if [ "$AUDIT_OK" = 1 ] && [ "${AUDIT_AB:-1}" = 1 ]; then
        AUDIT_OK=0 sek_config "$LEVEL" >"$WORK/sk/noaudit.yaml"
        ab=""
        want sekisho-public && ab="sekisho-public"
        want sekisho-device && ab="$ab sekisho-device"
        [ -n "$ab" ] && TARGETS="$ab" run_sekisho "$WORK/sk/noaudit.yaml" "-noaudit"
    fi
}
run_round
PACED_FIRST=$PACED_RATE SKIP_IDLE_FIRST=${SKIP_IDLE:-}
for r in $(seq 2 "$ROUNDS"); do
    log "round $r of $ROUNDS"
    RES=$WORK/results/round$r
    SKIP_IDLE=1
    PACED_RATE=0
    mkdir -p "$RES"
    run_round
done
RES=$WORK/results PACED_RATE=$PACED_FIRST SKIP_IDLE=$SKIP_IDLE_FIRST
stop_pid "$UP_PID"

# ---------------------------------------------------------------------------- report
{
    for k in "${!NOTE[@]}"; do printf '%s\t%s\n' "$k" "${NOTE[$k]}"; done
} >"$RES/notes.tsv"
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
python3 "$ROOT/bench/report.py" "$RES" \
    --machine "$CPU, $NCPU CPUs, $MEM RAM, $(uname -sr)" \
    --pinning "$PINNING" --duration "$DURATION" --warmup "$WARMUP" --body "$BODY_BYTES" \
    --sekisho "$BUILD_REV" \
    --idle-conns "$IDLE_CONNS" --paced-rate "$PACED_RATE" --load "$LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)" --out "$OUT/latest.md" --json "$OUT/latest.json"
log "wrote $OUT/latest.md"
cat "$OUT/latest.md"
