#!/usr/bin/env python3
"""Checks that the Compose deployment's files agree with each other and with the code, beyond
what `docker-compose config` can know:

- every MyEvents service runs the one image with `serve --role <its name>`, as uid 65532 on a
  read-only root filesystem with no capabilities, restarts, keeps /data on a volume of its own,
  and (but the web role) starts after `migrate` has completed;
- no secret has a default: each *_PASSWORD / *_SECRET the file interpolates is `${VAR:?…}`, and
  no service but the gateway publishes a port on every interface;
- Prometheus scrapes exactly the MyEvents services, on the metrics port they listen on;
- the gateway is given exactly the variables its template uses, each upstream a MyEvents
  service on its API port;
- Grafana's provisioned data source is the one the dashboards name, the dashboards provider
  reads the folder the dashboards are mounted at, and every metric a dashboard queries is one
  the code registers (crates/**/*.rs) or one deploy/test/monitoring/not-exported-yet.txt lists.

Usage: check_deploy.py COMPOSE_CONFIG_JSON (the output of `docker-compose config --format json`,
with test values for the required variables). Prints `ok …` / `FAILED …` per check; exits 1 on
any failure."""

import json
import pathlib
import re
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
DEPLOY = HERE.parent.parent
ROOT = DEPLOY.parent
ROLES = ["events", "bookings", "users", "notifications", "web"]
SERVICES = ["events", "bookings", "users", "notifications"]

failures = 0


def check(what, problems):
    global failures
    if problems:
        failures += 1
        print(f"FAILED {what}")
        for problem in problems:
            print(f"       {problem}")
    else:
        print(f"ok     {what}")


def port_of(address):
    return address.rsplit(":", 1)[1]


def main():
    config = json.loads(pathlib.Path(sys.argv[1]).read_text())
    services = config["services"]
    image = services["events"]["image"]

    problems = []
    for name in ROLES + ["migrate"]:
        svc = services.get(name)
        if svc is None:
            problems.append(f"no service {name}")
            continue
        want_cmd = ["migrate"] if name == "migrate" else ["serve", "--role", name]
        if svc.get("command") != want_cmd:
            problems.append(f"{name}: command {svc.get('command')}, not {want_cmd}")
        if svc.get("image") != image:
            problems.append(f"{name}: image {svc.get('image')}, not the one image {image}")
        if str(svc.get("user")) != "65532:65532":
            problems.append(f"{name}: user {svc.get('user')}")
        if svc.get("read_only") is not True:
            problems.append(f"{name}: root filesystem not read-only")
        if svc.get("cap_drop") != ["ALL"]:
            problems.append(f"{name}: cap_drop {svc.get('cap_drop')}")
        if name != "migrate" and svc.get("restart") not in ("unless-stopped", "always"):
            problems.append(f"{name}: restart {svc.get('restart')}")
        if svc.get("ports"):
            problems.append(f"{name}: publishes {svc['ports']} (only the gateway should)")
    check("every MyEvents role runs the one image as 65532, read-only, no capabilities, restarting", problems)

    problems = []
    for name in SERVICES:
        svc = services[name]
        volumes = [v for v in svc.get("volumes", []) if v.get("target") == "/data"]
        if not volumes or volumes[0].get("type") != "volume" or volumes[0].get("source") != f"{name}-data":
            problems.append(f"{name}: /data is not the volume {name}-data: {volumes}")
        deps = svc.get("depends_on", {})
        if deps.get("migrate", {}).get("condition") != "service_completed_successfully":
            problems.append(f"{name}: does not wait for migrate to complete: {deps}")
        env = svc["environment"]
        url = env.get(f"MYEVENTS_{name.upper()}_STORAGE_URL", "")
        if not re.fullmatch(rf"postgres://[^@]+@postgres:5432/{name}", url):
            problems.append(f"{name}: storage {url!r} is not its own database on postgres")
        for other in SERVICES:
            if other != name and f"MYEVENTS_{other.upper()}_STORAGE_URL" in env:
                problems.append(f"{name}: is given {other}'s database")
        if len(env.get("MYEVENTS_JWT_SECRET", "")) < 16:
            problems.append(f"{name}: no JWT secret of 16 characters or more")
    secrets = {services[n]["environment"].get("MYEVENTS_JWT_SECRET") for n in SERVICES}
    if len(secrets) != 1:
        problems.append("the services do not share one JWT secret")
    migrate_env = services["migrate"]["environment"]
    if sorted(migrate_env.get("MYEVENTS_ROLES", "").split(",")) != sorted(SERVICES):
        problems.append(f"migrate: roles {migrate_env.get('MYEVENTS_ROLES')}")
    for name in SERVICES:
        key = f"MYEVENTS_{name.upper()}_STORAGE_URL"
        if migrate_env.get(key) != services[name]["environment"].get(key):
            problems.append(f"migrate: {key} differs from the {name} service's")
    check("each service: its own /data volume and database, one JWT secret, migrate first", problems)

    raw = (DEPLOY / "compose.yaml").read_text()
    problems = []
    forms = {}
    for name, form in re.findall(r"\$\{([A-Z_]*(?:PASSWORD|SECRET))(:\?|:-|-|\?|)", raw):
        forms.setdefault(name, set()).add(form)
    if not forms:
        problems.append("no secret is interpolated at all")
    for name, seen in sorted(forms.items()):
        if ":?" not in seen:
            problems.append(f"${{{name}}} is never required with ${{{name}:?…}}")
        if seen & {":-", "-"}:
            problems.append(f"${{{name}}} has a default somewhere")
    for name, svc in services.items():
        for port in svc.get("ports", []):
            if port.get("host_ip") not in ("127.0.0.1", None) or (port.get("host_ip") is None and name != "gateway"):
                problems.append(f"{name}: publishes {port} beyond this host")
    check("secrets have no defaults; only the gateway is published beyond 127.0.0.1", problems)

    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {}
    for job in prom["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                targets[job["job_name"]] = target
    problems = []
    for name in ROLES:
        metrics = services[name]["environment"].get("MYEVENTS_METRICS_LISTEN", "0.0.0.0:9100")
        want = f"{name}:{port_of(metrics)}"
        if targets.get(name) != want:
            problems.append(f"job {name}: target {targets.get(name)}, want {want}")
    for job, target in targets.items():
        host = target.split(":")[0]
        if host not in services and host != "localhost":
            problems.append(f"job {job}: {target} is no service of compose.yaml")
    check("Prometheus scrapes every MyEvents role on its metrics port", problems)

    template = (DEPLOY / "gateway" / "default.conf.template").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)\}", template))
    gateway_env = services["gateway"]["environment"]
    problems = []
    given = {k for k in gateway_env if k in used or k.endswith("_UPSTREAM") or k == "GATEWAY_LISTEN"}
    if given != used:
        problems.append(f"the template uses {sorted(used)}, the gateway is given {sorted(given)}")
    for key in sorted(used - {"GATEWAY_LISTEN"}):
        role = key.removesuffix("_UPSTREAM").lower()
        listen = services.get(role, {}).get("environment", {}).get("MYEVENTS_LISTEN", "0.0.0.0:8181")
        want = f"{role}:{port_of(listen)}"
        if gateway_env.get(key) != want:
            problems.append(f"{key}={gateway_env.get(key)}, want {want}")
    mounts = [v for v in services["gateway"].get("volumes", []) if v.get("target", "").startswith("/etc/nginx/templates/")]
    if not mounts or pathlib.Path(mounts[0]["source"]).resolve() != (DEPLOY / "gateway" / "default.conf.template").resolve():
        problems.append(f"the template is not mounted into /etc/nginx/templates: {mounts}")
    listen = gateway_env.get("GATEWAY_LISTEN")
    if not any(str(p.get("target")) == str(listen) for p in services["gateway"].get("ports", [])):
        problems.append(f"the gateway listens on {listen} but publishes {services['gateway'].get('ports')}")
    check("the gateway gets exactly its template's variables, each a service's API port", problems)

    problems = []
    grafana = services["grafana"]
    mount_of = {pathlib.Path(v["source"]).resolve(): v["target"] for v in grafana.get("volumes", []) if v.get("type") == "bind"}
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/datasources.yaml").read_text())
    uids = {d["uid"] for d in datasources["datasources"]}
    for d in datasources["datasources"]:
        host = re.match(r"http://([^:/]+)", d["url"]).group(1)
        if host not in services:
            problems.append(f"data source {d['name']}: {d['url']} is no service")
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/myevents.yaml").read_text())
    dash_dir = mount_of.get((DEPLOY / "grafana" / "dashboards").resolve())
    if mount_of.get((DEPLOY / "grafana" / "provisioning").resolve()) != "/etc/grafana/provisioning":
        problems.append("grafana/provisioning is not mounted at /etc/grafana/provisioning")
    for provider in providers["providers"]:
        if provider["options"]["path"] != dash_dir:
            problems.append(f"provider {provider['name']} reads {provider['options']['path']}, the dashboards are at {dash_dir}")
    registered = set()
    for source in ROOT.glob("crates/**/src/**/*.rs"):
        registered |= set(re.findall(r'"(myevents_[a-z_]+)"', source.read_text()))
    not_yet = DEPLOY / "test" / "monitoring" / "not-exported-yet.txt"
    registered |= {line.strip() for line in not_yet.read_text().splitlines() if line.strip() and not line.startswith("#")}
    dashboards = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    if not dashboards:
        problems.append("no dashboard")
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        exprs = []
        def walk(node):
            if isinstance(node, dict):
                ds = node.get("datasource")
                if isinstance(ds, dict) and ds.get("uid") not in uids and not str(ds.get("uid", "")).startswith("$"):
                    problems.append(f"{path.name}: data source uid {ds.get('uid')} is not provisioned")
                if "expr" in node:
                    exprs.append(node["expr"])
                if isinstance(node.get("query"), dict) and "query" in node["query"]:
                    exprs.append(node["query"]["query"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)
        walk(dashboard)
        if len(exprs) < 3:
            problems.append(f"{path.name}: only {len(exprs)} queries")
        for expr in exprs:
            # Whole names only: a recording rule's (level:metric:operations) is not a metric.
            for metric in re.findall(r"(?<![\w:])(myevents_\w+)(?![\w:])", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                if metric not in registered and base not in registered:
                    problems.append(f"{path.name}: {metric} is not a metric the code registers")
        if dashboard.get("uid") == "myevents-overview":
            for needed in ("myevents_http_requests_total", "myevents_http_request_duration_seconds_bucket"):
                if not any(needed in e for e in exprs):
                    problems.append(f"{path.name}: nothing queries {needed}")
    check("Grafana: provisioned data source and dashboards folder, every queried metric exists in the code", problems)

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
