#!/usr/bin/env python3
"""Static checks of deploy/ (no cluster, no container engine): run by deploy/check.sh.

Usage: check_static.py RENDERED_K8S_YAML|- REPO_ROOT
Checks the rendered Kubernetes manifests for the properties Sekisho relies on, and the
example configuration against schema/config.schema.json when the `jsonschema` module is
installed. Exits 1 with one line per problem.
"""
import json
import re
import sys
from pathlib import Path

import yaml

problems = []


def fail(msg):
    problems.append(msg)


def duration_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total = 0.0
    for n, u in re.findall(r"(\d+)\s*(ms|s|m|h|d)", str(text)):
        total += int(n) * units[u]
    return total


def check_k8s(docs, repo):
    by_kind = {}
    for d in docs:
        if not isinstance(d, dict):
            continue
        for key in ("apiVersion", "kind", "metadata"):
            if key not in d:
                fail(f"a manifest lacks `{key}`: {str(d)[:80]}")
        if "metadata" in d and not d["metadata"].get("name"):
            fail(f"{d.get('kind')}: no metadata.name")
        by_kind.setdefault(d.get("kind"), []).append(d)

    sts = by_kind.get("StatefulSet", [])
    if len(sts) != 1:
        fail(f"expected one StatefulSet, found {len(sts)}")
        return
    s = sts[0]
    spec = s["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    if spec.get("replicas", 1) < 2:
        fail("StatefulSet: fewer than 2 replicas")
    if spec["selector"]["matchLabels"].items() - labels.items():
        fail("StatefulSet: selector does not match the pod labels")
    vct = [v["metadata"]["name"] for v in spec.get("volumeClaimTemplates", [])]
    if "audit" not in vct:
        fail("StatefulSet: no `audit` volumeClaimTemplate (each replica needs its own audit directory)")
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        fail("pod: runAsNonRoot is not true")
    if pod.get("automountServiceAccountToken") is not False:
        fail("pod: the service account token is mounted (Sekisho never calls the API server)")
    (c,) = [c for c in pod["containers"] if c["name"] == "sekisho"]
    csc = c.get("securityContext", {})
    if csc.get("readOnlyRootFilesystem") is not True:
        fail("container: readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        fail("container: allowPrivilegeEscalation is not false")
    if csc.get("capabilities", {}).get("drop") != ["ALL"]:
        fail("container: capabilities are not drop [ALL]")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if "admin" not in ports:
        fail("container: no `admin` port")
    rp = c.get("readinessProbe", {}).get("httpGet", {})
    lp = c.get("livenessProbe", {}).get("httpGet", {})
    if rp.get("path") != "/readyz" or rp.get("port") not in ("admin", ports.get("admin")):
        fail("readinessProbe: not GET /readyz on the admin port")
    if lp.get("path") != "/healthz" or lp.get("port") not in ("admin", ports.get("admin")):
        fail("livenessProbe: not GET /healthz on the admin port")
    res = c.get("resources", {})
    if not res.get("requests") or not res.get("limits"):
        fail("container: resources.requests and resources.limits are needed")
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for name in mounts:
        if name not in vols and name not in vct:
            fail(f"volumeMount `{name}` has no volume")
    paths = sorted(m["mountPath"] for m in mounts.values())
    for a in paths:
        for b in paths:
            if a != b and b.startswith(a.rstrip("/") + "/"):
                fail(f"mount {b} is nested inside {a} (cannot create a mount point in a read-only volume)")
    for name, v in vols.items():
        if "secret" in v and v["secret"].get("defaultMode") != 0o400:
            fail(f"secret volume `{name}`: defaultMode is not 0400")
    if "audit" in mounts and mounts["audit"].get("readOnly"):
        fail("the audit volume is read-only")
    cms = {d["metadata"]["name"] for d in by_kind.get("ConfigMap", [])}
    for name, v in vols.items():
        if "configMap" in v and v["configMap"]["name"] not in cms:
            fail(f"volume `{name}` names ConfigMap {v['configMap']['name']}, which is not generated")

    # The configuration: its drain timeout fits the grace period; audit dir is the PVC.
    cfg_docs = [d for d in by_kind.get("ConfigMap", []) if "sekisho.yaml" in d.get("data", {})]
    if not cfg_docs:
        fail("no ConfigMap carries sekisho.yaml")
    else:
        cfg = yaml.safe_load(cfg_docs[0]["data"]["sekisho.yaml"])
        drain = duration_seconds(cfg.get("limits", {}).get("drain_timeout", "30s"))
        grace = pod.get("terminationGracePeriodSeconds", 30)
        pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if grace <= drain + pre:
            fail(f"terminationGracePeriodSeconds {grace} is not above drain_timeout {drain}s + preStop {pre}s")
        audit_dir = cfg.get("audit", {}).get("dir")
        if audit_dir != mounts.get("audit", {}).get("mountPath"):
            fail(f"audit.dir {audit_dir} is not the audit volume's mount path")
        admin = cfg.get("admin", {}).get("listen", "127.0.0.1:9900")
        if admin.startswith("127.") or admin.startswith("[::1]"):
            fail("admin.listen is on loopback: kubelet probes and Prometheus cannot reach it")
        if not admin.endswith(f":{ports.get('admin')}"):
            fail(f"admin.listen {admin} is not the container's admin port")
        listen_ports = {int(l["listen"].rsplit(":", 1)[1]) for l in cfg.get("listeners", {}).values()}
        if not listen_ports <= set(ports.values()):
            fail(f"listener ports {sorted(listen_ports)} are not all container ports")

    for svc in by_kind.get("Service", []):
        sel = svc["spec"].get("selector", {})
        if not sel or sel.items() - labels.items():
            fail(f"Service {svc['metadata']['name']}: selector does not match the pods")
        for p in svc["spec"].get("ports", []):
            t = p.get("targetPort")
            if isinstance(t, str) and t not in ports:
                fail(f"Service {svc['metadata']['name']}: targetPort {t} is not a container port")
    if s["spec"].get("serviceName") not in {x["metadata"]["name"] for x in by_kind.get("Service", [])}:
        fail("StatefulSet: serviceName names no Service")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if not pdbs:
        fail("no PodDisruptionBudget")
    for p in pdbs:
        if p["spec"]["selector"]["matchLabels"].items() - labels.items():
            fail("PodDisruptionBudget: selector does not match the pods")
    if not by_kind.get("NetworkPolicy"):
        fail("no NetworkPolicy")
    if not by_kind.get("Namespace"):
        fail("no Namespace")


def check_schema(repo):
    try:
        import jsonschema
    except ImportError:
        print("  (python jsonschema not installed: example configurations not validated here)")
        return
    schema = json.loads((repo / "schema/config.schema.json").read_text())
    v = jsonschema.Draft202012Validator(schema)
    for f in ["config/sekisho.yaml", "deploy/kubernetes/files/sekisho.yaml"]:
        data = yaml.safe_load((repo / f).read_text())
        for e in v.iter_errors(data):
            fail(f"{f}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
    print("  example configurations validate against schema/config.schema.json")


def main():
    rendered, repo = sys.argv[1], Path(sys.argv[2])
    if rendered != "-":
        docs = list(yaml.safe_load_all(Path(rendered).read_text()))
        check_k8s(docs, repo)
        print(f"  {len(docs)} Kubernetes objects checked")
    check_schema(repo)
    for p in problems:
        print(f"FAIL {p}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
