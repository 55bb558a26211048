#!/usr/bin/env python3
"""The Kubernetes side of monitoring.

deploy/k8s/monitoring renders (kubectl kustomize), passes kubernetes-validate --strict, and
its ConfigMaps hold deploy/prometheus/prometheus-k8s.yml, every rule file and every dashboard,
as they are.

The Kubernetes variant of the Prometheus configuration (deploy/prometheus/prometheus-k8s.yml)
finds every MyEvents pod of the manifests once, as its service, on its metrics port.

No Kubernetes API server can run here, and Debian's Prometheus is built without Kubernetes
discovery, so the discovery is the one part played: each overlay is rendered (kubectl
kustomize), each of its pods becomes the target group Kubernetes pod discovery would make of it
(one target per container port and per container without one, with the
__meta_kubernetes_pod_* labels of its labels, annotations and ports; the pod's address on
127.0.1.0/24, where nothing listens), handed to a real Prometheus through file discovery under
the configuration's own relabelling. Its /api/v1/targets then says what it would scrape:
exactly one target per MyEvents pod, `job` its component, at the annotated port and path, and
nothing of PostgreSQL or RabbitMQ.

Prints `ok …` / `FAILED …` per overlay; exits 1 on any failure.
"""

import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "deploy" / "prometheus" / "prometheus-k8s.yml"
MONITORING = ROOT / "deploy" / "k8s" / "monitoring"
OVERLAYS = ["all-in-one", "services"]
JOB = "myevents"


def sanitize(name):
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def pods(overlay):
    """(namespace, name, ip, template) for every pod the overlay's workloads would run."""
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        check=True, capture_output=True, text=True,
    ).stdout
    out = []
    for doc in yaml.safe_load_all(rendered):
        if not doc or doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for i in range(doc["spec"].get("replicas", 1)):
            name = f"{doc['metadata']['name']}-{i}"
            out.append((doc["metadata"]["namespace"], name, f"127.0.1.{len(out) + 1}", doc["spec"]["template"]))
    return out


def target_group(namespace, name, ip, template):
    """The target group Kubernetes pod discovery makes of one running, ready pod."""
    meta = template["metadata"]
    labels = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_phase": "Running",
    }
    for key, value in (meta.get("labels") or {}).items():
        labels[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
        labels[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
    for key, value in (meta.get("annotations") or {}).items():
        labels[f"__meta_kubernetes_pod_annotation_{sanitize(key)}"] = value
        labels[f"__meta_kubernetes_pod_annotationpresent_{sanitize(key)}"] = "true"
    spec = template["spec"]
    groups = []
    for init, containers in ((False, spec.get("containers") or []), (True, spec.get("initContainers") or [])):
        for c in containers:
            container = {
                "__meta_kubernetes_pod_container_name": c["name"],
                "__meta_kubernetes_pod_container_image": c.get("image", ""),
                "__meta_kubernetes_pod_container_init": str(init).lower(),
            }
            ports = c.get("ports") or []
            if not ports:
                groups.append({"targets": [ip], "labels": {**labels, **container}})
            for p in ports:
                groups.append({
                    "targets": [f"{ip}:{p['containerPort']}"],
                    "labels": {
                        **labels, **container,
                        "__meta_kubernetes_pod_container_port_name": p.get("name", ""),
                        "__meta_kubernetes_pod_container_port_number": str(p["containerPort"]),
                        "__meta_kubernetes_pod_container_port_protocol": p.get("protocol", "TCP"),
                    },
                })
    return groups


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected(pod_list):
    """{pod name: (job, address, path)} of the pods Prometheus must scrape."""
    out = {}
    for namespace, name, ip, template in pod_list:
        meta = template["metadata"]
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        if labels.get("app.kubernetes.io/name") == "myevents" and annotations.get("prometheus.io/scrape") == "true":
            out[name] = (labels["app.kubernetes.io/component"], f"{ip}:{annotations['prometheus.io/port']}",
                         annotations.get("prometheus.io/path", "/metrics"))
    return out


def check_overlay(overlay, tmp):
    pod_list = pods(overlay)
    want = expected(pod_list)
    if not want:
        return [f"the overlay {overlay} has no MyEvents pod with scrape annotations"]
    sd = tmp / f"{overlay}-pods.json"
    sd.write_text(json.dumps([g for pod in pod_list for g in target_group(*pod)]))
    config = yaml.safe_load(CONFIG.read_text())
    config.pop("rule_files", None)  # the rules are checked elsewhere; here only discovery
    jobs = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    if len(jobs) != 1 or "kubernetes_sd_configs" not in jobs[0]:
        return [f"{CONFIG.name} has no job {JOB} with kubernetes_sd_configs"]
    roles = {sd_config.get("role") for sd_config in jobs[0].pop("kubernetes_sd_configs")}
    if roles != {"pod"}:
        return [f"job {JOB} discovers {roles}, this test plays pod discovery only"]
    jobs[0]["file_sd_configs"] = [{"files": [str(sd)], "refresh_interval": "1s"}]
    config["scrape_configs"] = jobs
    path = tmp / f"{overlay}-prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    checked = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    if checked.returncode != 0:
        return [f"promtool check config: {checked.stdout}{checked.stderr}"]

    port = free_port()
    log = open(tmp / f"{overlay}-prometheus.log", "w")
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={path}", f"--storage.tsdb.path={tmp / overlay}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        # Discovery hands its targets over in one update, a few seconds after the start: the
        # first answer that has any is the whole of it (the same one second later, to be sure).
        active, previous = None, None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets?state=any", timeout=5) as r:
                    data = json.load(r)["data"]
                current = sorted(t["scrapeUrl"] for t in data["activeTargets"])
                if current and current == previous:
                    active = data["activeTargets"]
                    break
                previous = current
            except OSError:
                pass
            time.sleep(1)
        if active is None:
            return [f"Prometheus did not take up the discovered pods within 60 s (log: {tmp / overlay}-prometheus.log)"]
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()

    problems = []
    got = {}
    for t in active:
        pod = t["labels"].get("pod")
        if pod in got:
            problems.append(f"pod {pod} is scraped twice: {got[pod]} and {t['scrapeUrl']}")
        got[pod] = t["scrapeUrl"]
        if pod not in want:
            problems.append(f"{t['scrapeUrl']} (pod {pod}) is no MyEvents pod")
            continue
        job, address, path = want[pod]
        labels = t["labels"]
        if labels.get("job") != job:
            problems.append(f"pod {pod}: job {labels.get('job')}, want {job}")
        if t["scrapeUrl"] != f"http://{address}{path}":
            problems.append(f"pod {pod}: scraped at {t['scrapeUrl']}, want http://{address}{path}")
        if labels.get("namespace") != "myevents" or labels.get("instance") != pod:
            problems.append(f"pod {pod}: labels {labels}")
    for pod in sorted(set(want) - set(got)):
        problems.append(f"MyEvents pod {pod} is not scraped")
    return problems


def monitoring_problems(tmp):
    rendered = subprocess.run(["kubectl", "kustomize", str(MONITORING)], capture_output=True, text=True)
    if rendered.returncode != 0:
        return [f"kubectl kustomize: {rendered.stderr}"]
    path = tmp / "monitoring.yaml"
    path.write_text(rendered.stdout)
    valid = subprocess.run(["kubernetes-validate", "--strict", "--quiet", str(path)], capture_output=True, text=True)
    problems = [f"kubernetes-validate: {valid.stdout}{valid.stderr}"] if valid.returncode != 0 else []
    maps = {d["metadata"]["name"]: d.get("data") or {} for d in yaml.safe_load_all(rendered.stdout) if d}
    prometheus = ROOT / "deploy" / "prometheus"
    want = {
        "myevents-prometheus": {"prometheus.yml": CONFIG},
        "myevents-prometheus-rules": {p.name: p for p in (prometheus / "rules").glob("*.yml")},
        "myevents-grafana-dashboards": {p.name: p for p in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")},
    }
    for name, files in want.items():
        data = maps.get(name, {})
        if set(data) != set(files):
            problems.append(f"ConfigMap {name} holds {sorted(data)}, the folder {sorted(files)}")
        for key, file in files.items():
            if key in data and data[key] != file.read_text():
                problems.append(f"ConfigMap {name} key {key} differs from {file.relative_to(ROOT)}")
    return problems


def main():
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        checks = [("deploy/k8s/monitoring: valid, its ConfigMaps hold the configuration, every rule file and dashboard",
                   lambda: monitoring_problems(Path(tmp)))]
        checks += [(f"{CONFIG.name} scrapes each MyEvents pod of {overlay} once, as its service",
                    lambda overlay=overlay: check_overlay(overlay, Path(tmp))) for overlay in OVERLAYS]
        for what, run in checks:
            problems = run()
            if problems:
                failed += 1
                print(f"FAILED {what}")
                for p in problems:
                    print(f"       {p}")
            else:
                print(f"ok     {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
