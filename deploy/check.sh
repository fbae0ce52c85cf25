#!/usr/bin/env bash
# Static checks of deploy/ — no cluster, no container engine, no network:
#   bash deploy/check.sh
# Runs what is installed and says what it skipped: YAML and JSON parse, the Kubernetes
# manifests rendered by kustomize (kubectl kustomize) and checked by check_static.py
# (plus kubeconform if present), systemd-analyze verify on the unit, promtool on the
# alert rules and their unit tests, and a look at the Containerfile.
set -u
cd "$(dirname "$0")/.."
repo=$(pwd)
failed=0
passed=0
skipped=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step() { printf '== %s\n' "$1"; }
ok() { passed=$((passed + 1)); }
bad() { echo "FAIL: $1"; failed=$((failed + 1)); }

step "YAML parses"
if python3 - <<'PY'
import sys, yaml, pathlib
bad = 0
for p in sorted(pathlib.Path("deploy").rglob("*.yaml")) + [pathlib.Path("config/sekisho.yaml")]:
    try:
        list(yaml.safe_load_all(p.read_text()))
    except Exception as e:
        print(f"FAIL {p}: {e}"); bad += 1
sys.exit(bad)
PY
then ok; else bad "YAML"; fi

step "JSON parses"
if python3 -c '
import json, sys, pathlib
for p in ["deploy/grafana/sekisho-dashboard.json", "schema/config.schema.json"]:
    d = json.loads(pathlib.Path(p).read_text())
d = json.loads(pathlib.Path("deploy/grafana/sekisho-dashboard.json").read_text())
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "duplicate panel ids"
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
assert all("sekisho_" in e for e in exprs), "a panel query names no sekisho metric"
print("  dashboard: %d panels, %d queries" % (len(d["panels"]), len(exprs)))
'; then ok; else bad "JSON"; fi

step "Kubernetes manifests"
if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize deploy/kubernetes >"$tmp/k8s.yaml" 2>"$tmp/k8s.err"; then
    if python3 deploy/check_static.py "$tmp/k8s.yaml" "$repo"; then ok; else bad "Kubernetes manifests"; fi
  else
    cat "$tmp/k8s.err"; bad "kubectl kustomize"
  fi
else
  skipped+=("kubectl (kustomize build)")
  if python3 deploy/check_static.py - "$repo"; then ok; else bad "schema"; fi
fi
if command -v kubeconform >/dev/null 2>&1 && [ -s "$tmp/k8s.yaml" ]; then
  if kubeconform -strict -summary "$tmp/k8s.yaml"; then ok; else bad "kubeconform"; fi
else
  skipped+=("kubeconform (not installed; it also needs its JSON schemas from the network)")
fi

step "systemd unit"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants the binary to exist: check a copy that points at a stand-in.
  mkdir -p "$tmp/unit"
  printf '#!/bin/sh\nexit 0\n' >"$tmp/sekisho" && chmod +x "$tmp/sekisho"
  sed "s#/usr/local/bin/sekisho#$tmp/sekisho#g" deploy/systemd/sekisho.service >"$tmp/unit/sekisho.service"
  if out=$(systemd-analyze verify "$tmp/unit/sekisho.service" 2>&1) && [ -z "$out" ]; then
    echo "  systemd-analyze verify: clean"; ok
  else
    echo "$out"; bad "systemd-analyze verify"
  fi
  stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s*$/\1/p' deploy/systemd/sekisho.service)
  if [ "${stop:-0}" -gt 30 ]; then ok; else bad "TimeoutStopSec (${stop:-unset}) must exceed drain_timeout (30s)"; fi
else
  skipped+=("systemd-analyze")
fi

step "Prometheus rules"
if command -v promtool >/dev/null 2>&1; then
  if promtool check rules deploy/prometheus/alerts.yaml && (cd deploy/prometheus && promtool test rules alerts.test.yaml); then ok; else bad "promtool"; fi
else
  skipped+=("promtool (Debian package prometheus)")
fi

step "Containerfile"
cf=deploy/container/Containerfile
if [ "$(grep -c '^FROM ' "$cf")" -ge 2 ] \
  && grep -q '^COPY --from=build /out/sekisho /usr/local/bin/sekisho' "$cf" \
  && grep -Eq '^USER [1-9][0-9]*' "$cf" \
  && grep -q 'cargo build --locked --release -p sekisho' "$cf"; then
  echo "  multi-stage, binary only, non-root user"; ok
else
  bad "Containerfile: expected a multi-stage build, COPY of the binary only, a numeric non-root USER"
fi
skipped+=("container build (no container engine here)")

for s in "${skipped[@]}"; do echo "skipped: $s"; done
echo "deploy checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
