"""The Ingress checks of deploy/test/k8s/check.py: every path of every role's /openapi.json,
asked of the real binary, must reach a Service whose pods run that role, on both hosts, under the
model of ingress-nginx in model.py; and a real nginx, configured as ingress-nginx would be from
the same Ingresses, must send the same requests to the same Services."""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import model
from model import of_kind

HOSTS = ("api.myevents.example", "www.myevents.example")
SAMPLE_ID = "0192aaaa-bbbb"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch_openapi(binary, roles):
    """Starts `myevents serve --role R` for each role on free loopback ports and reads its
    /openapi.json; returns {role: [path templates]} and {role: error}."""
    if not os.access(binary, os.X_OK):
        return {}, {r: f"no binary at {binary} (set MYEVENTS_BIN)" for r in roles}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYEVENTS_")}
    processes, found, errors = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for role in roles:
                data = Path(tmp) / role
                data.mkdir()
                port = free_port()
                log = open(data / "log", "w")
                args = [binary, "serve", "--role", role, "--listen", f"127.0.0.1:{port}",
                        "--metrics-listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data)]
                role_env = dict(env, MYEVENTS_BROKER_URL=f"embedded:{data}/bus.db",
                                MYEVENTS_GRPC_LISTEN=f"127.0.0.1:{free_port()}")
                processes[role] = (subprocess.Popen(args, env=role_env, stdout=log, stderr=log), port, data)
            deadline = time.time() + 60
            for role, (process, port, data) in processes.items():
                while role not in found and role not in errors:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2) as r:
                            found[role] = sorted(json.load(r)["paths"])
                    except OSError:
                        if process.poll() is not None or time.time() > deadline:
                            tail = (data / "log").read_text()[-400:].strip()
                            errors[role] = f"`myevents serve --role {role}` did not answer: {tail}"
                        else:
                            time.sleep(0.2)
        finally:
            for process, _, _ in processes.values():
                process.terminate()
            for process, _, _ in processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
    return found, errors


def sample_uris(openapi):
    """Every path template with its parameters filled in: with a sample ID, and with each static
    word another template has at the same place (/events/{id}/availability as
    /events/name/availability: the events service's lookup of an event named "availability")."""
    templates = [t.strip("/").split("/") for t in sorted({t for paths in openapi.values() for t in paths})]
    param = model.PARAM.match

    def words_at(segments, i):
        # Static words of the templates that agree with this one before place i.
        return {
            other[i]
            for other in templates
            if len(other) > i and not param(other[i])
            and all(a == b or param(a) or param(b) for a, b in zip(segments[:i], other[:i]))
        }

    uris = set()
    for segments in templates:
        filled = [SAMPLE_ID if param(s) else s for s in segments]
        uris.add("/" + "/".join(filled))
        for i, s in enumerate(segments):
            for word in words_at(segments, i) if param(s) else ():
                uris.add("/" + "/".join(filled[:i] + [word] + filled[i + 1:]))
    # The paths of the issue, whatever the templates are.
    uris |= {"/events/abc/bookings", "/events/abc/availability", "/events/abc", "/events/abc/sales"}
    return sorted(uris)


def ingress_problems(docs, openapi):
    ingresses = of_kind(docs, "Ingress")
    hosts = {r.get("host") for ing in ingresses for r in ing["spec"].get("rules") or []}
    tls = {h for ing in ingresses for t in ing["spec"].get("tls") or [] if t.get("secretName") for h in t.get("hosts") or []}
    for host in HOSTS:
        if host not in hosts:
            yield f"no rule for {host}"
        if host not in tls:
            yield f"no TLS certificate for {host}"
    expected = {"/events/abc/bookings": "bookings", "/events/abc/availability": "bookings",
                "/events/abc": "events", "/events/abc/sales": "events"}
    for host in HOSTS:
        for uri in sample_uris(openapi):
            want = model.owners(openapi, uri)
            if uri in expected and want != {expected[uri]}:
                yield f"{uri} is served by {sorted(want)} in one process, not by {expected[uri]}"
            if not want:
                continue
            backend = model.route(ingresses, host, uri)
            if backend is None:
                yield f"{host}{uri} matches no rule (served by {'/'.join(sorted(want))})"
                continue
            name = backend["service"]["name"]
            got = model.roles_behind_service(docs, name)
            if not got & want:
                running = "/".join(sorted(got)) or "no MyEvents pods"
                yield f"{host}{uri} goes to {name} ({running}), not to {'/'.join(sorted(want))}"
    # The UI's files: only the web role (alone, or in the all-in-one process) serves them.
    for uri in ("/", "/index.html", "/assets/index.js"):
        backend = model.route(ingresses, "www.myevents.example", uri)
        name = backend["service"]["name"] if backend else None
        if "web" not in model.roles_behind_service(docs, name):
            yield f"www.myevents.example{uri} goes to {name}, which does not serve the UI"


def nginx_problems(docs, uris):
    """The same requests through a real nginx, configured as ingress-nginx configures it from
    these Ingresses (regex locations `~* "^path"` in the controller's order, or prefix and exact
    locations), each location answering with the name of its Service: nginx must pick what the
    model of `route` picks, so the model (PCRE, case, first match) is nginx's own behaviour."""
    ingresses = of_kind(docs, "Ingress")
    hosts = sorted({r.get("host") for ing in ingresses for r in ing["spec"].get("rules") or []} - {None})
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        servers = []
        for host in hosts:
            regex, locations = model.host_locations(ingresses, host)
            blocks = []
            if regex:
                ordered = sorted(locations, key=lambda l: l[0], reverse=True)
                for path, _, backend in sorted(ordered, key=lambda l: len(l[0]), reverse=True):
                    blocks.append(f'location ~* "^{path}" {{ return 200 "{backend["service"]["name"]}"; }}')
            else:
                for path, path_type, backend in locations:
                    answer = f'{{ return 200 "{backend["service"]["name"]}"; }}'
                    if path_type == "Exact" or path != "/":
                        blocks.append(f"location = {path} {answer}")
                    if path_type != "Exact":
                        blocks.append(f"location {path.rstrip('/')}/ {answer}")
            servers.append(f"server {{ listen 127.0.0.1:{port}; server_name {host}; {' '.join(blocks)} }}")
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(
            f"pid {tmp}/nginx.pid; error_log {tmp}/error.log; worker_processes 1;"
            " events { worker_connections 64; }"
            f" http {{ access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp};"
            f" fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};"
            f" default_type text/plain; {' '.join(servers)} }}\n"
        )
        nginx = subprocess.Popen(["nginx", "-p", tmp, "-c", str(conf), "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if nginx.poll() is not None:
                        yield f"nginx refused the configuration: {nginx.stderr.read().strip()[-300:]}"
                        return
                    time.sleep(0.1)
            for host in hosts:
                for uri in uris:
                    request = urllib.request.Request(f"http://127.0.0.1:{port}{uri}", headers={"Host": host})
                    try:
                        with urllib.request.urlopen(request, timeout=5) as r:
                            got = r.read().decode()
                    except urllib.error.HTTPError as e:
                        got = None if e.code == 404 else f"HTTP {e.code}"
                    backend = model.route(ingresses, host, uri)
                    want = backend["service"]["name"] if backend else None
                    if got != want:
                        yield f"{host}{uri}: nginx sends it to {got}, the model to {want}"
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
