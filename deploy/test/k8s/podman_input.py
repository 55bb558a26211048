#!/usr/bin/env python3
"""Splits a rendered overlay into what `podman kube play` (podman 4.3) can play, for
deploy/test/k8s/play.sh:

  OUT/play.yaml        the Deployments (with the changes podman needs, see playable), the
                       PersistentVolumeClaims and the ConfigMaps
  OUT/secrets/NAME     each Secret's values, base64 in a JSON object: podman resolves a
                       secretKeyRef from its own secret store, where play.sh puts these
  OUT/pods.env         shell settings for play.sh: the pods, the HTTP port of each role, the
                       organiser's sign-in for the walk-through

and says what it leaves out and why: podman plays no Service, Ingress, NetworkPolicy,
PodDisruptionBudget, StatefulSet, Job or Namespace (with host networking each pod is reached on
its own port instead of through a Service; the services overlay's PostgreSQL and RabbitMQ are
the host's), and one replica of each Deployment (see playable).

Usage: podman_input.py RENDERED.yaml OUT
"""

import base64
import json
import shlex
import sys
from pathlib import Path

import yaml

PLAYED = ("Deployment", "PersistentVolumeClaim", "ConfigMap")
WHY_NOT = {
    "Namespace": "podman has no namespaces",
    "Service": "podman has no Services: with host networking each pod is reached on its own port",
    "Ingress": "no ingress controller: check.py checks its routes against a model of ingress-nginx",
    "NetworkPolicy": "podman enforces no network policies",
    "PodDisruptionBudget": "nothing evicts pods here",
    "StatefulSet": "podman 4.3 plays no StatefulSets: the services use the host's PostgreSQL and RabbitMQ",
    "Secret": "not a kind podman 4.3 plays: given to podman's secret store instead",
}


def playable(deployment):
    """The three changes podman 4.3 needs to play a Deployment on the host's network.

    It publishes every declared container port on the host, which host networking refuses
    ("PortMappings can only be used with Bridge or slirp4netns networking"); with host
    networking a process is reached where it listens anyway. So the ports go, and the probes
    that named them get their numbers.

    It gives init containers the pod's restart policy: under Always (a Deployment's) a finished
    migration starts again and again and the server never starts. OnFailure retries a failing
    init container, as Kubernetes does, and lets a finished one finish.

    It runs every replica, each in a pod of its own, but on the host's network every replica
    would listen on the same ports: one replica only."""
    deployment["spec"]["replicas"] = 1
    spec = deployment["spec"]["template"]["spec"]
    spec["restartPolicy"] = "OnFailure"
    for c in spec.get("initContainers", []) + spec["containers"]:
        ports = {p.get("name"): p["containerPort"] for p in c.pop("ports", None) or []}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            for action in ("httpGet", "tcpSocket"):
                target = (c.get(probe) or {}).get(action)
                if target and isinstance(target["port"], str):
                    target["port"] = ports[target["port"]]


def main(rendered, out):
    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    out = Path(out)
    (out / "secrets").mkdir(parents=True, exist_ok=True)

    settings = {"PODS": [], "SECRETS": [], "VOLUMES": []}
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind == "Secret":
            data = dict(d.get("data") or {})
            for key, value in (d.get("stringData") or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            # podman 4.3 reads a secretKeyRef's Secret as a JSON object of base64 values.
            (out / "secrets" / name).write_text(json.dumps(data))
            settings["SECRETS"].append(name)
            if name == "myevents":
                settings["ADMIN_EMAIL"] = base64.b64decode(data["admin-email"]).decode()
                settings["ADMIN_PASSWORD"] = base64.b64decode(data["admin-password"]).decode()
        elif kind == "PersistentVolumeClaim":
            settings["VOLUMES"].append(name)
        elif kind == "Deployment":
            # podman 4.3 names the pods of a Deployment after it and their replica number.
            settings["PODS"].append(f"{name}-pod-0")
            component = d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
            container = next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "myevents")
            port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
            settings[f"PORT_{component.replace('-', '_')}"] = port
            replicas = d["spec"].get("replicas", 1)
            if replicas > 1:
                print(
                    f"played as one pod: Deployment/{name} (of {replicas} replicas: with host"
                    " networking each would need the same ports)"
                )
        if kind not in PLAYED:
            print(f"not played: {kind}/{name} ({WHY_NOT.get(kind, 'not a kind podman plays')})")

    played = [d for d in docs if d["kind"] in PLAYED]
    for d in played:
        if d["kind"] == "Deployment":
            playable(d)
    (out / "play.yaml").write_text(yaml.safe_dump_all(played, sort_keys=False))

    lines = []
    for key, value in settings.items():
        if isinstance(value, list):
            lines.append(f"{key}=({' '.join(shlex.quote(v) for v in value)})")
        else:
            lines.append(f"{key}={shlex.quote(str(value))}")
    (out / "pods.env").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
