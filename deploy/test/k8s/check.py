#!/usr/bin/env python3
"""Checks of the Kubernetes manifests (deploy/k8s): each overlay rendered by `kubectl kustomize`
must pass `kubernetes-validate --strict` for Kubernetes 1.33 and a checkov policy scan (no failed
check; every skip gives its reason), and what schemas cannot see must hold:

  selectors    every workload, Service, PodDisruptionBudget and NetworkPolicy selects the pods
               it means (a Service exactly the pods of its own role)
  ports        every named port a Service, probe, Ingress or NetworkPolicy refers to exists, and
               the ports the processes are told to listen on are the ports declared
  containers   probes (not for init containers), requests and limits, the restricted context
  references   every Secret, ConfigMap, key, claim and volume a pod names exists
  secrets      secret settings come from Secrets, and every service checks tokens with one key
  shape        replicas, strategies, budgets and migrations as the issue asks
  ingress      every path of every role's /openapi.json, asked of the real binary, reaches a
               Service whose pods run that role, on both hosts; the UI is at www's /; a real
               nginx configured as ingress-nginx would be routes the same requests the same way
  test overlay the overlays deploy/test/k8s/play.sh plays change only ports, image, backends

The Ingress checks are in routes.py, the model of Kubernetes and ingress-nginx in model.py.
Prints `ok NAME` or `FAILED NAME: why` per check and a summary; exits non-zero on any failure.
Needs kubectl, nginx (Debian nginx-light), kubernetes-validate and checkov (pip install
kubernetes-validate checkov), PyYAML, and the binary: MYEVENTS_BIN, by default
$CARGO_TARGET_DIR/debug/myevents (target/debug/myevents without CARGO_TARGET_DIR).
"""

import base64
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model  # noqa: E402
import routes  # noqa: E402
from model import containers, find, kind_name, of_kind, pod_labels, pod_spec, workloads  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
TESTS = ROOT / "deploy" / "test" / "k8s"
OVERLAYS = {"all-in-one": K8S / "overlays/all-in-one", "services": K8S / "overlays/services"}
# The overlays play.sh plays, and the overlay each one must leave unchanged but for its ports,
# image and backends.
TEST_OVERLAYS = {
    "podman-all-in-one": (TESTS / "overlays/podman-all-in-one", "all-in-one"),
    "podman-services": (TESTS / "overlays/podman-services", "services"),
}
KUBERNETES = "1.33.0"


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, problems):
        problems = list(problems)
        if problems:
            self.failed += 1
            shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            print(f"FAILED {name}: {shown}", flush=True)
        else:
            self.passed += 1
            print(f"ok {name}", flush=True)


def render(directory):
    out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip() or "kubectl kustomize failed")
    return out.stdout, [d for d in yaml.safe_load_all(out.stdout) if d]


# ---- schemas and policies ----------------------------------------------------------------------


def schema_problems(path):
    out = subprocess.run(
        ["kubernetes-validate", "--strict", "-k", KUBERNETES, str(path)], capture_output=True, text=True
    )
    errors = [l for l in (out.stdout + out.stderr).splitlines() if not l.startswith("INFO")]
    if out.returncode != 0 or errors:
        yield " / ".join(errors) or f"kubernetes-validate exited {out.returncode}"


def policy_problems(path):
    out = subprocess.run(
        ["checkov", "-f", str(path), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
    )
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        yield f"checkov gave no report (exit {out.returncode}): {out.stderr.strip()[-300:]}"
        return
    summary = report.get("summary", {})
    if summary.get("parsing_errors"):
        yield f"checkov could not parse {summary['parsing_errors']} resources"
    if not summary.get("passed"):
        yield "checkov ran no check"
    results = report.get("results", {})
    for c in results.get("failed_checks", []):
        yield f"{c['check_id']} ({c['check_name']}) on {c['resource']}"
    for c in results.get("skipped_checks", []):
        why = (c.get("check_result") or {}).get("suppress_comment") or ""
        if len(why) < 20 or why == "No comment provided":
            yield f"{c['check_id']} skipped on {c['resource']} without a reason"


# ---- selectors ---------------------------------------------------------------------------------


def selector_problems(docs):
    for w in workloads(docs):
        selector = w["spec"].get("selector")
        if not model.matches(selector, pod_labels(w)):
            yield f"{kind_name(w)}: its selector does not match its own pod labels"
        others = [kind_name(o) for o in model.selected(docs, selector) if o is not w]
        if others:
            yield f"{kind_name(w)}: its selector also matches the pods of {', '.join(others)}"
    for s in of_kind(docs, "Service"):
        selector = s["spec"].get("selector")
        picked = model.selected(docs, selector) if selector else []
        if len(picked) != 1:
            names = ", ".join(kind_name(w) for w in picked) or "no pods"
            yield f"{kind_name(s)} selects {names}, not the pods of exactly one workload"
            continue
        own = (s["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
        theirs = pod_labels(picked[0]).get("app.kubernetes.io/component")
        if own != theirs:
            yield f"{kind_name(s)} (component {own}) selects the pods of component {theirs}"
    for p in of_kind(docs, "PodDisruptionBudget"):
        if not model.selected(docs, p["spec"].get("selector")):
            yield f"{kind_name(p)} selects no pods"
    for n in of_kind(docs, "NetworkPolicy"):
        if not model.selected(docs, n["spec"].get("podSelector")):
            yield f"{kind_name(n)} applies to no pods"
        rules = [("from", r) for r in n["spec"].get("ingress") or []]
        rules += [("to", r) for r in n["spec"].get("egress") or []]
        for direction, rule in rules:
            for peer in rule.get(direction) or []:
                # A peer with a namespaceSelector names pods of another namespace.
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    if not model.selected(docs, peer["podSelector"]):
                        yield f"{kind_name(n)}: a '{direction}' peer selects no pods"


# ---- ports -------------------------------------------------------------------------------------


def container_ports(container):
    return {p.get("name"): p["containerPort"] for p in container.get("ports") or []}


def has_port(workload, port):
    for c, init in containers(workload, init=False):
        ports = container_ports(c)
        if port in ports or port in ports.values():
            return True
    return False


def probe_ports(container):
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(kind) or {}
        for action in ("httpGet", "tcpSocket", "grpc"):
            if action in probe:
                yield kind, probe[action]["port"]


def listen_port(container, variable):
    for e in container.get("env") or []:
        if e["name"] == variable and "value" in e:
            return int(e["value"].rsplit(":", 1)[1])
    return None


def port_problems(docs):
    for s in of_kind(docs, "Service"):
        for w in model.selected(docs, s["spec"].get("selector")):
            for p in s["spec"].get("ports") or []:
                target = p.get("targetPort", p["port"])
                if not has_port(w, target):
                    yield f"{kind_name(s)} port {p.get('name')} targets {target}, which {kind_name(w)} does not declare"
    for w in workloads(docs):
        for c, init in containers(w):
            ports = container_ports(c)
            for kind, port in probe_ports(c):
                if isinstance(port, str) and port not in ports:
                    yield f"{kind_name(w)} container {c['name']}: {kind} uses port {port}, which it does not declare"
            # MyEvents listens where its environment says: it must be the port declared.
            for variable, name in (
                ("MYEVENTS_LISTEN", "http"),
                ("MYEVENTS_METRICS_LISTEN", "metrics"),
                ("MYEVENTS_GRPC_LISTEN", "grpc"),
            ):
                listen = listen_port(c, variable)
                if listen is not None and name in ports and ports[name] != listen:
                    yield f"{kind_name(w)} container {c['name']}: {variable} is port {listen}, port {name} is {ports[name]}"
                if not init and listen is None and name in ports:
                    yield f"{kind_name(w)} container {c['name']}: declares port {name} but does not set {variable}"
    for ing in of_kind(docs, "Ingress"):
        for r in ing["spec"].get("rules") or []:
            for p in (r.get("http") or {}).get("paths") or []:
                backend = p["backend"]["service"]
                service = find(docs, "Service", backend["name"])
                if service is None:
                    yield (
                        f"{kind_name(ing)}: {r.get('host')}{p['path']} goes to Service"
                        f" {backend['name']}, which does not exist"
                    )
                    continue
                names = {sp.get("name") for sp in service["spec"]["ports"]}
                numbers = {sp["port"] for sp in service["spec"]["ports"]}
                port = backend["port"]
                if port.get("name") not in names and port.get("number") not in numbers:
                    yield (
                        f"{kind_name(ing)}: {r.get('host')}{p['path']} uses port {port} of Service"
                        f" {backend['name']}, which has {sorted(names)}"
                    )
    for n in of_kind(docs, "NetworkPolicy"):
        pods = model.selected(docs, n["spec"].get("podSelector"))
        for rule in n["spec"].get("ingress") or []:
            for p in rule.get("ports") or []:
                if isinstance(p.get("port"), str):
                    for w in pods:
                        if not has_port(w, p["port"]):
                            yield f"{kind_name(n)} opens port {p['port']}, which {kind_name(w)} does not declare"


# ---- containers --------------------------------------------------------------------------------


def context_problems(workload, container):
    """The restricted Pod Security Standard, with the container's settings over the pod's."""
    pod = pod_spec(workload).get("securityContext") or {}
    own = container.get("securityContext") or {}

    def setting(key):
        return own[key] if key in own else pod.get(key)

    if setting("runAsNonRoot") is not True:
        yield "runAsNonRoot is not true"
    if setting("runAsUser") == 0:
        yield "runs as user 0"
    if own.get("readOnlyRootFilesystem") is not True:
        yield "the root filesystem is not read-only"
    if own.get("allowPrivilegeEscalation") is not False:
        yield "allowPrivilegeEscalation is not false"
    if own.get("privileged"):
        yield "privileged"
    if "ALL" not in ((own.get("capabilities") or {}).get("drop") or []):
        yield "capabilities are not all dropped"
    if (own.get("capabilities") or {}).get("add"):
        yield "adds capabilities"
    if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
        yield "seccomp profile is not RuntimeDefault"


def container_problems(docs):
    for w in workloads(docs):
        for c, init in containers(w):
            where = f"{kind_name(w)} {'init container' if init else 'container'} {c['name']}"
            if not init:
                for probe in ("livenessProbe", "readinessProbe"):
                    if not c.get(probe):
                        yield f"{where}: no {probe}"
            resources = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(kind) or {}):
                        yield f"{where}: no {resource} in {kind}"
            for problem in context_problems(w, c):
                yield f"{where}: {problem}"


# ---- references --------------------------------------------------------------------------------


def data_keys(doc):
    return set((doc.get("data") or {}).keys()) | set((doc.get("stringData") or {}).keys())


def reference_problems(docs):
    def source(kind, name, key=None):
        doc = find(docs, kind, name)
        if doc is None:
            return f"{kind} {name} does not exist"
        if key is not None and key not in data_keys(doc):
            return f"{kind} {name} has no key {key}"
        return None

    for w in workloads(docs):
        spec = pod_spec(w)
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        templates = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates") or []}
        for v in volumes.values():
            problem = None
            if "secret" in v:
                problem = source("Secret", v["secret"]["secretName"])
                for item in v["secret"].get("items") or []:
                    problem = problem or source("Secret", v["secret"]["secretName"], item["key"])
            elif "configMap" in v:
                problem = source("ConfigMap", v["configMap"]["name"])
            elif "persistentVolumeClaim" in v:
                problem = source("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
            if problem:
                yield f"{kind_name(w)} volume {v['name']}: {problem}"
        for c, init in containers(w):
            where = f"{kind_name(w)} container {c['name']}"
            for e in c.get("env") or []:
                ref = e.get("valueFrom") or {}
                if "secretKeyRef" in ref:
                    problem = source("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
                elif "configMapKeyRef" in ref:
                    problem = source("ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"])
                else:
                    problem = None
                if problem:
                    yield f"{where} {e['name']}: {problem}"
            for e in c.get("envFrom") or []:
                if "secretRef" in e:
                    problem = source("Secret", e["secretRef"]["name"])
                else:
                    problem = source("ConfigMap", e["configMapRef"]["name"])
                if problem:
                    yield f"{where} envFrom: {problem}"
            for m in c.get("volumeMounts") or []:
                if m["name"] not in volumes and m["name"] not in templates:
                    yield f"{where} mounts {m['name']}, which is no volume of the pod"


# ---- secrets -----------------------------------------------------------------------------------

SECRET_SETTING = re.compile(r"(SECRET|PASSWORD|PASS|STORAGE_URL|BROKER_URL|MAIL_URL)$")


def secret_problems(docs):
    jwt = set()
    for w in workloads(docs):
        for c, init in containers(w):
            for e in c.get("env") or []:
                if SECRET_SETTING.search(e["name"]) and "secretKeyRef" not in (e.get("valueFrom") or {}):
                    yield f"{kind_name(w)} container {c['name']}: {e['name']} is not read from a Secret"
                if e["name"] == "MYEVENTS_JWT_SECRET":
                    ref = e["valueFrom"]["secretKeyRef"]
                    jwt.add((ref["name"], ref["key"]))
    if len(jwt) > 1:
        yield f"the services read the JWT secret from different places: {sorted(jwt)}"
    for name, key in jwt:
        secret = find(docs, "Secret", name) or {}
        value = (secret.get("stringData") or {}).get(key) or ""
        if not value and key in (secret.get("data") or {}):
            value = base64.b64decode(secret["data"][key]).decode()
        if len(value) < 16:
            yield f"Secret {name} key {key}: MyEvents refuses a JWT secret shorter than 16 characters"
    for cm in of_kind(docs, "ConfigMap"):
        for key in data_keys(cm):
            if SECRET_SETTING.search(key):
                yield f"{kind_name(cm)} holds {key}, which belongs in a Secret"


# ---- shape -------------------------------------------------------------------------------------


def myevents_workloads(docs):
    return [w for w in workloads(docs) if pod_labels(w).get("app.kubernetes.io/name") == "myevents"]


def main_container(w):
    return next(c for c, init in containers(w, init=False) if c["name"] == "myevents")


def shape_problems(docs, overlay):
    apps = myevents_workloads(docs)
    budgets = of_kind(docs, "PodDisruptionBudget")
    for w in apps:
        name, replicas = kind_name(w), w["spec"].get("replicas", 1)
        strategy = (w["spec"].get("strategy") or {}).get("type", "RollingUpdate")
        roles = model.roles_of(main_container(w))
        covered = any(model.matches(b["spec"]["selector"], pod_labels(w)) for b in budgets)
        if roles & {"notifications"} or overlay == "all-in-one":
            # One sender of mail (notifications), one writer of the SQLite files (all-in-one).
            if replicas != 1 or strategy != "Recreate":
                yield f"{name} runs {sorted(roles)}: needs 1 replica and Recreate, has {replicas} and {strategy}"
        elif replicas < 2 or not covered:
            yield (
                f"{name} is stateless: needs at least 2 replicas and a PodDisruptionBudget,"
                f" has {replicas} and {'one' if covered else 'none'}"
            )
        stateful = roles - {"web"}
        migrations = [c for c, init in containers(w) if init and (c.get("args") or [None])[0] == "migrate"]
        # `migrate` without --role migrates every service; web has nothing to migrate.
        if stateful and (len(migrations) != 1 or model.roles_of(migrations[0]) - {"web"} != stateful):
            yield f"{name} runs {sorted(stateful)} without an init container migrating exactly them"
        if overlay == "all-in-one":
            data = next((v for v in pod_spec(w).get("volumes") or [] if v["name"] == "data"), {})
            if "persistentVolumeClaim" not in data:
                yield f"{name} keeps its SQLite files on no PersistentVolumeClaim"
        annotations = w["spec"]["template"]["metadata"].get("annotations") or {}
        metrics = container_ports(main_container(w)).get("metrics")
        if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/path") != "/metrics":
            yield f"{name}: no prometheus.io/scrape and path annotations"
        if annotations.get("prometheus.io/port") != str(metrics):
            yield f"{name}: prometheus.io/port is {annotations.get('prometheus.io/port')}, the metrics port is {metrics}"
    served = set().union(*(model.roles_of(main_container(w)) for w in apps)) if apps else set()
    if served != set(model.ALL_ROLES):
        yield f"the roles {sorted(set(model.ALL_ROLES) - served)} run nowhere"
    if overlay == "all-in-one" and len(apps) != 1:
        yield f"{len(apps)} MyEvents workloads, not one"
    if overlay == "services":
        for w in apps:
            if len(model.roles_of(main_container(w))) != 1:
                yield f"{kind_name(w)} runs several roles"
        for name in ("postgresql", "rabbitmq"):
            sets = [s for s in of_kind(docs, "StatefulSet") if pod_labels(s).get("app.kubernetes.io/name") == name]
            if not sets or not sets[0]["spec"].get("volumeClaimTemplates"):
                yield f"no {name} StatefulSet with a volume"


# ---- test overlays -----------------------------------------------------------------------------

# What a test overlay may change: ports (the listen settings, the declared ports, the scrape
# port), the image and its pull policy, the backends the services are pointed at, and the
# secrets (the shipped placeholders are refused by myevents, as every deployment must replace them).
LISTEN = {"MYEVENTS_LISTEN", "MYEVENTS_METRICS_LISTEN", "MYEVENTS_GRPC_LISTEN"}
BACKEND_KEYS = {("Secret", "myevents-backends"): {"storage-url", "broker-url", "mail-url"},
                ("Secret", "myevents"): {"jwt-secret", "admin-password"},
                ("ConfigMap", "myevents"): {"MYEVENTS_BROKER_NAMESPACE"}}


def without_allowed_changes(doc):
    doc = copy.deepcopy(doc)
    for key in BACKEND_KEYS.get((doc["kind"], doc["metadata"]["name"]), ()):
        for field in ("data", "stringData"):
            (doc.get(field) or {}).pop(key, None)
    if doc["kind"] in model.WORKLOAD_KINDS:
        (doc["spec"]["template"]["metadata"].get("annotations") or {}).pop("prometheus.io/port", None)
        for c, init in containers(doc):
            for key in ("image", "imagePullPolicy", "ports"):
                c.pop(key, None)
            for e in c.get("env") or []:
                if e["name"] in LISTEN:
                    e["value"] = "<port>"
            # A patch moves the variables it sets to the front; nothing here depends on the order.
            c.get("env", []).sort(key=lambda e: e["name"])
    return doc


def test_overlay_problems(test_docs, real_docs):
    real = {kind_name(d): without_allowed_changes(d) for d in real_docs}
    test = {kind_name(d): without_allowed_changes(d) for d in test_docs}
    for name in sorted(set(real) ^ set(test)):
        yield f"{name} is only in the {'real' if name in real else 'test'} overlay"
    for name in sorted(set(real) & set(test)):
        if real[name] != test[name]:
            yield f"{name} differs in more than ports, image and backends: {first_difference(real[name], test[name])}"
    for d in test_docs:
        for c, init in containers(d) if d["kind"] in model.WORKLOAD_KINDS else []:
            if "myevents" in c.get("image", "") and c.get("imagePullPolicy") != "Never":
                yield f"{kind_name(d)} container {c['name']} may pull the image"


def first_difference(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path or '.'}: {json.dumps(a)[:80]} became {json.dumps(b)[:80]}"


# ---- main --------------------------------------------------------------------------------------


def main():
    report = Report()
    binary = os.environ.get("MYEVENTS_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "myevents"
    )
    openapi, errors = routes.fetch_openapi(binary, model.ALL_ROLES)
    for role in model.ALL_ROLES:
        report.check(f"openapi of role {role}", [errors[role]] if role in errors else [])

    rendered = {}
    with tempfile.TemporaryDirectory() as tmp:
        for overlay, directory in OVERLAYS.items():
            try:
                text, docs = render(directory)
            except RuntimeError as e:
                report.check(f"render {overlay}", [str(e)])
                continue
            report.check(f"render {overlay}", [] if docs else ["renders nothing"])
            rendered[overlay] = docs
            path = Path(tmp) / f"{overlay}.yaml"
            path.write_text(text)
            report.check(f"schema {overlay} (kubernetes-validate --strict, {KUBERNETES})", schema_problems(path))
            report.check(f"policies {overlay} (checkov)", policy_problems(path))
            report.check(f"selectors {overlay}", selector_problems(docs))
            report.check(f"ports {overlay}", port_problems(docs))
            report.check(f"probes, resources and security context {overlay}", container_problems(docs))
            report.check(f"references {overlay}", reference_problems(docs))
            report.check(f"secrets {overlay}", secret_problems(docs))
            report.check(f"shape {overlay}", shape_problems(docs, overlay))
            if len(openapi) == len(model.ALL_ROLES):
                report.check(f"ingress routes {overlay}", routes.ingress_problems(docs, openapi))
                uris = routes.sample_uris(openapi) + ["/", "/index.html", "/EVENTS/abc/BOOKINGS", "/Events/abc"]
                report.check(f"ingress routes {overlay} through nginx", routes.nginx_problems(docs, uris))
            else:
                report.check(f"ingress routes {overlay}", ["no /openapi.json to check the routes against"])

    for overlay, (directory, real) in TEST_OVERLAYS.items():
        try:
            _, docs = render(directory)
        except RuntimeError as e:
            report.check(f"test overlay {overlay}", [str(e)])
            continue
        problems = list(test_overlay_problems(docs, rendered.get(real, [])))
        # What it keeps must still hold together with the ports it changed.
        problems += [f"ports: {p}" for p in port_problems(docs)] + [f"selectors: {p}" for p in selector_problems(docs)]
        report.check(f"test overlay {overlay} changes only ports, image and backends", problems)

    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
