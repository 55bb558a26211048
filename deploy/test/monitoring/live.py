#!/usr/bin/env python3
"""The live test of deploy/prometheus and deploy/grafana: a real Prometheus (Debian's), with
the rules of deploy/prometheus/rules, scrapes a running `myevents serve` (every service in one
process, SQLite and the embedded broker) every second while a short sale runs through the API:
an event of 30 seats, 45 guests asking for one each. Then, from Prometheus' HTTP API:

- the counters say what the sale did (30 booked, 15 sold out, 30 seats of that event), and the
  recording rules return it (booked and sold-out answers per second, seats per second of that
  event, events published and applied, mails sent, no server error);
- every recording rule, alert expression and dashboard query reads only metrics MyEvents
  exports, and every recording rule and dashboard query returns data, but for those reading a
  metric of not-exported-yet.txt, which are reported by name as "not exported yet" (and each
  metric of that list must indeed not be exported yet);
- alert expressions: the server-error and not-ready alerts' return nothing during the healthy
  sale; once MyEvents is stopped, MyEventsTargetDown's returns the stopped process, and
  Prometheus' own evaluation has the alert pending.

    python3 deploy/test/monitoring/live.py [BINARY]     (default $CARGO_TARGET_DIR/debug/myevents)

Bounded: every wait gives up after WAIT seconds (default 60). Both processes are stopped on exit.
Prints `ok …` / `FAILED …` / `todo …` lines and `monitoring-live: N passed, M failed`.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import promql  # noqa: E402

ROOT = promql.ROOT
WAIT = float(os.environ.get("WAIT", "60"))
JOB = "all-in-one"
SEATS, GUESTS = 30, 45
BOOKINGS_ROUTE = 'method="POST", route="/events/{id}/bookings"'
ADMIN = ("admin@example.com", "admin-password")


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, what, problem=None):
        """ok when problem is None or empty, otherwise FAILED with it."""
        if problem:
            self.failed += 1
            print(f"FAILED {what}")
            for line in problem if isinstance(problem, list) else [problem]:
                print(f"       {line}")
        else:
            self.passed += 1
            print(f"ok     {what}")

    @staticmethod
    def todo(what):
        print(f"todo   {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    """(status, parsed JSON body or text)"""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def eventually(what, condition):
    """Polls condition() until it returns something true, for WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {WAIT:.0f} s")
        time.sleep(0.25)


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr):
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.load(r)
        if answer["status"] != "success":
            raise ValueError(f"{expr}: {answer}")
        return answer["data"]["result"]

    def value(self, expr):
        """The one value expr returns, or None."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def rule_health(self, name):
        """What Prometheus says of the recording rule `name` and of its group, as lines."""
        with urllib.request.urlopen(f"{self.base}/api/v1/rules?type=record", timeout=10) as r:
            groups = json.load(r)["data"]["groups"]
        lines = []
        for group in groups:
            for rule in group["rules"]:
                if rule["name"] == name:
                    lines.append(f"group {group['name']}: last evaluated {group.get('lastEvaluation')}")
                    lines.append(f"rule: health {rule.get('health')}, last error {rule.get('lastError') or 'none'}, "
                                 f"last evaluated {rule.get('lastEvaluation')}")
        return lines or [f"Prometheus has no recording rule {name}"]

    def alerts(self):
        with urllib.request.urlopen(f"{self.base}/api/v1/alerts", timeout=10) as r:
            return json.load(r)["data"]["alerts"]


def prometheus_config(tmp, metrics_port):
    """deploy/prometheus/prometheus.yml with its rules, scraping only this MyEvents, every second."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    base = ROOT / "deploy/prometheus"
    config["rule_files"] = [str(base / pattern) for pattern in config["rule_files"]]
    config["scrape_configs"] = [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def on_sale(api, name, seats):
    """A new event of `seats` seats, on sale: its ID."""
    status, body = http("POST", f"{api}/auth/login", {"Email": ADMIN[0], "Password": ADMIN[1]})
    assert status == 200, f"admin sign-in: {status} {body}"
    auth = {"Authorization": f"Bearer {body['Token']}"}
    status, body = http("POST", f"{api}/locations", {
        "Name": f"{name} hall", "Address": "1 Main St", "Country": "NZ", "OpenTime": 9, "CloseTime": 23,
        "Halls": [{"name": "Main", "location": "ground floor", "capacity": seats}]}, auth)
    assert status == 201, f"create a location: {status} {body}"
    status, body = http("POST", f"{api}/events", {
        "Name": name, "StartDate": 1900000000, "EndDate": 1900007200,
        "Location": {"ID": body["ID"]}, "Hall": "Main"}, auth)
    assert status == 201, f"create an event: {status} {body}"
    event = body["ID"]
    eventually(f"the bookings service has {name} on sale",
               lambda: http("GET", f"{api}/events/{event}/availability")[1].get("Available") == seats)
    return event


def book(api, event, guests):
    """`guests` guests ask for one seat each: how many answers of each status."""
    answers = {}
    for i in range(guests):
        status, _ = http("POST", f"{api}/events/{event}/bookings", {"seats": 1, "email": f"guest{i}@example.com"})
        answers[status] = answers.get(status, 0) + 1
    return answers


def exported_families(metrics_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "myevents")
    report = Report()
    tmp = Path(tempfile.mkdtemp(prefix="myevents-monitoring-"))
    processes = {}
    try:
        run_test(binary, report, tmp, processes)
    except (AssertionError, TimeoutError, OSError, ValueError) as e:
        report.check("the live test ran to its end", str(e))
        for name in processes:
            log = tmp / f"{name}.log"
            if log.exists():
                print(f"       --- last lines of {name}'s log")
                for line in log.read_text(errors="replace").splitlines()[-20:]:
                    print(f"       {line}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"monitoring-live: {report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 and report.passed > 0 else 1


def start(processes, tmp, name, command, env=None):
    log = open(tmp / f"{name}.log", "w")
    processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)


def run_test(binary, report, tmp, processes):
    api_port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYEVENTS_", "OTEL_"))}
    env.update({
        "MYEVENTS_DATA_DIR": str(tmp / "data"),
        "MYEVENTS_LISTEN": f"127.0.0.1:{api_port}",
        "MYEVENTS_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "MYEVENTS_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
        "MYEVENTS_ADMIN_EMAIL": ADMIN[0],
        "MYEVENTS_ADMIN_PASSWORD": ADMIN[1],
    })
    start(processes, tmp, "myevents", [binary, "serve"], env)
    start(processes, tmp, "prometheus", [
        "prometheus", f"--config.file={prometheus_config(tmp, metrics_port)}",
        f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prometheus_port}"])
    prometheus = Prometheus(prometheus_port)
    eventually("myevents answers /health/ready", lambda: http("GET", f"{api}/health/ready")[0] == 200)
    eventually("Prometheus is ready", lambda: http("GET", f"{prometheus.base}/-/ready")[0] == 200)

    # A counter's first sample is where rate() starts counting: before the sale, one booking
    # of the sale's event and a sold-out answer (an event of one seat, booked twice) make the
    # series the sale counts, and Prometheus scrapes them.
    event = f"Monitored sale {os.getpid()}"
    sale_id = on_sale(api, event, SEATS + 1)
    warm_up = on_sale(api, f"Warm-up {os.getpid()}", 1)
    answers = [book(api, sale_id, 1), book(api, warm_up, 2)]
    assert answers == [{201: 1}, {201: 1, 409: 1}], f"warm-up answers by status: {answers}"
    # (counter, its value after the warm-up, how much the sale adds to it)
    counted = [
        (f'sum(myevents_http_requests_total{{job="{JOB}", {BOOKINGS_ROUTE}, status="201"}})', 2, SEATS),
        (f'sum(myevents_http_requests_total{{job="{JOB}", {BOOKINGS_ROUTE}, status="409"}})', 1, GUESTS - SEATS),
        (f'sum(myevents_bookings_count{{job="{JOB}", eventName="{event}"}})', 1, SEATS),
        (f'sum(myevents_events_published_total{{job="{JOB}", type="eventBooked"}})', 2, SEATS),
        (f'sum(myevents_events_applied_total{{job="{JOB}", consumer="events", type="eventBooked", outcome="applied"}})', 2, SEATS),
        (f'sum(myevents_events_applied_total{{job="{JOB}", consumer="notifications", type="eventBooked", outcome="applied"}})', 2, SEATS),
        # The organiser's welcome and the two bookings' confirmations.
        (f'sum(myevents_mails_total{{job="{JOB}", outcome="sent"}})', 3, SEATS),
    ]
    for expr, warm, _ in counted:
        try:
            eventually(f"Prometheus counts the warm-up: {expr} = {warm}", lambda: prometheus.value(expr) == warm)
        except TimeoutError as e:
            raise TimeoutError(f"{e} (it says {prometheus.query(expr)})") from None

    answers = book(api, sale_id, GUESTS)
    # Readiness probes, as a kubelet would send: the not-ready alert has answers to read.
    for _ in range(3):
        http("GET", f"{api}/health/ready")
    report.check(f"the sale: {SEATS} of {GUESTS} guests booked, the others sold out",
                 None if answers == {201: SEATS, 409: GUESTS - SEATS} else f"answers by status: {answers}")

    # What the sale did, once Prometheus has scraped all of it (and the mails are out).
    for expr, warm, sale in counted:
        what = f"Prometheus counts what the sale did: {expr} = {warm} + {sale}"
        try:
            eventually(what, lambda: prometheus.value(expr) == warm + sale)
            report.check(what)
        except TimeoutError:
            report.check(what, f"got {prometheus.query(expr)}")

    # The recording rules return the sale: every series below exists and is above zero.
    positive = [
        f'job_route_status:myevents_http_requests:rate5m{{job="{JOB}", {BOOKINGS_ROUTE}, status="201"}}',
        f'job_route_status:myevents_http_requests:rate5m{{job="{JOB}", {BOOKINGS_ROUTE}, status="409"}}',
        f'job_route:myevents_http_request_duration_seconds:p99_rate5m{{job="{JOB}", {BOOKINGS_ROUTE}}}',
        f'event:myevents_seats_booked:rate5m{{eventName="{event}"}}',
        f'job_type:myevents_events_published:rate5m{{job="{JOB}", type="eventBooked"}}',
        'consumer_outcome:myevents_events_applied:rate5m{consumer="notifications", outcome="applied"}',
        'consumer_outcome:myevents_events_applied:rate5m{consumer="events", outcome="applied"}',
        'outcome:myevents_mails:rate5m{outcome="sent"}',
    ]
    # (Rules are evaluated every second, each group on its own: the first results may take that.)
    zero = [f'job:myevents_http_5xx:ratio_rate5m{{job="{JOB}"}}',
            f'job_route:myevents_http_5xx:ratio_rate5m{{job="{JOB}", {BOOKINGS_ROUTE}}}']
    for expr, what, holds in [(e, f"recording rule returns the sale: {e} > 0", lambda v: v > 0) for e in positive] + \
            [(e, f"recording rule: no server error in the sale: {e} = 0", lambda v: v == 0) for e in zero]:
        try:
            eventually(what, lambda: (prometheus.value(expr) is not None) and holds(prometheus.value(expr)))
            report.check(what)
        except TimeoutError:
            report.check(what, f"got {prometheus.query(expr)}")

    recorded, alerts = promql.rules()
    exported = exported_families(f"{metrics_port}")
    not_yet = promql.not_exported()
    check_not_exported_list(report, exported, not_yet)

    def missing(expr):
        """(metrics not exported yet, metrics neither exported nor listed) that expr reads."""
        later, unknown = set(), set()
        for metric in promql.metrics_of(expr, recorded):
            names = {metric, promql.family(metric)}
            if names & exported:
                continue
            (later if names & not_yet else unknown).add(metric)
        return sorted(later), sorted(unknown)

    for name, expr in recorded.items():
        returns(report, prometheus, f"recording rule {name}", expr=name, missing=missing(expr))
    for q in promql.queries():
        returns(report, prometheus, f"dashboard {q}", expr=q.expr, missing=missing(q.expr))
    for name, expr in alerts.items():
        later, unknown = missing(expr)
        if unknown:
            report.check(f"alert {name} reads exported metrics", f"MyEvents does not export {', '.join(unknown)}")
        elif later:
            report.todo(f"alert {name}: not exported yet: {', '.join(later)}")
        else:
            report.check(f"alert {name} reads exported metrics")

    # Alert expressions against what happened: a healthy sale, then a stopped process.
    for name in ("MyEventsHighServerErrorRatio", "MyEventsNotReady"):
        result = prometheus.query(alerts[name])
        report.check(f"alert {name}'s expression returns nothing during the healthy sale",
                     None if result == [] else f"got {result}")
    up = prometheus.query(alerts["MyEventsTargetDown"])
    report.check("alert MyEventsTargetDown's expression returns nothing while MyEvents runs",
                 None if up == [] else f"got {up}")
    processes["myevents"].terminate()
    processes["myevents"].wait(timeout=60)
    down = eventually("MyEventsTargetDown's expression returns the stopped process",
                      lambda: prometheus.query(alerts["MyEventsTargetDown"]))
    report.check("alert MyEventsTargetDown's expression returns the stopped process",
                 None if [(r["metric"]["job"], r["metric"]["instance"]) for r in down] == [(JOB, f"127.0.0.1:{metrics_port}")]
                 else f"got {down}")
    pending = eventually("Prometheus has MyEventsTargetDown pending", lambda: [
        a for a in prometheus.alerts() if a["labels"]["alertname"] == "MyEventsTargetDown"])
    report.check("Prometheus evaluates MyEventsTargetDown: pending for its 2 minutes",
                 None if [(a["state"], a["labels"]["job"], a["labels"]["severity"]) for a in pending]
                 == [("pending", JOB, "critical")] else f"got {pending}")


def check_not_exported_list(report, exported, not_yet):
    now = sorted(not_yet & exported)
    report.check("every metric of not-exported-yet.txt is indeed not exported yet",
                 None if not now else f"exported now, remove from deploy/test/monitoring/not-exported-yet.txt: {', '.join(now)}")


def returns(report, prometheus, what, expr, missing):
    later, unknown = missing
    if unknown:
        report.check(f"{what} reads exported metrics", f"MyEvents does not export {', '.join(unknown)}")
    elif later:
        report.todo(f"{what}: not exported yet: {', '.join(later)}")
    else:
        # Each rule group is evaluated on its own schedule: give a group that has not yet
        # evaluated since the sale the time to do so.
        try:
            eventually(what, lambda: prometheus.query(expr))
            report.check(f"{what} returns data")
        except TimeoutError:
            report.check(f"{what} returns data", [f"no data for {expr}"] + prometheus.rule_health(expr))


if __name__ == "__main__":
    sys.exit(main())
