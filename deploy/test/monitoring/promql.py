"""What the monitoring tests read out of deploy/prometheus and deploy/grafana: every PromQL
expression of the dashboards (with their variables given values), the recording rules and
alerts, the metrics each expression reads in the end, and the list of metrics not exported yet.

    python3 promql.py rule-file OUT   writes every dashboard query as a recording rule, for
                                      `promtool check rules OUT` (promtool parses each one)
    python3 promql.py alerts          checks that every alert has a severity, a summary, a
                                      description and a runbook, and unit tests
                                      (deploy/prometheus/tests) where it fires and where it
                                      stays silent; prints what is missing, exits 1 if anything
"""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RULES = ROOT / "deploy" / "prometheus" / "rules"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests"
NOT_EXPORTED = Path(__file__).resolve().parent / "not-exported-yet.txt"

# Values for Grafana's own variables: what it would use on a dashboard showing the last hour
# of a Prometheus scraped every 15 s (the live test's scrapes every second).
BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
# A dashboard variable (every one here is a multi-value one with "All") stands for all values.
ALL = ".+"


class Query:
    def __init__(self, dashboard, panel, ref, expr):
        self.dashboard, self.panel, self.ref, self.expr = dashboard, panel, ref, expr

    def __str__(self):
        return f"{self.dashboard}: {self.panel} ({self.ref})"


def substitute(expr, variables):
    def value(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in variables:
            return ALL
        raise ValueError(f"unknown variable ${name} in {expr}")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


def label_values(query):
    """label_values(METRIC, LABEL) as PromQL that returns a series per value."""
    match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", query)
    if not match:
        raise ValueError(f"not a label_values() query: {query}")
    return f"group by ({match.group(2)}) ({match.group(1)})"


def queries():
    """Every query of every dashboard, the variables' queries included, ready to run."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
        for name, v in variables.items():
            if v["type"] != "query":
                continue  # a data source variable, say: no PromQL
            query = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
            out.append(Query(path.name, f"variable ${name}", name, substitute(label_values(query), variables)))

        def panels(items):
            for p in items:
                yield p
                yield from panels(p.get("panels") or [])

        for panel in panels(dashboard.get("panels", [])):
            for target in panel.get("targets") or []:
                if "expr" in target:
                    out.append(Query(path.name, panel["title"], target["refId"], substitute(target["expr"], variables)))
    return out


def rules():
    """(recording rules {name: expr}, alerts {name: expr}) of deploy/prometheus/rules."""
    recorded, alerts = {}, {}
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    recorded[rule["record"]] = rule["expr"]
                else:
                    alerts[rule["alert"]] = rule["expr"]
    return recorded, alerts


def metrics_of(expr, recorded):
    """The MyEvents metrics an expression reads, through the recording rules it names."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values are not names
    found = set()
    for name in re.findall(r"(?<![\w:])([a-zA-Z_:][\w:]*)", expr):
        if name in recorded:
            found |= metrics_of(recorded[name], recorded)
        elif name.startswith("myevents_"):
            found.add(name)
        elif ":" in name:
            raise ValueError(f"{name} is no recording rule of deploy/prometheus/rules")
    return found


def family(metric):
    """The metric family a series name belongs to (a histogram's _bucket, _sum, _count)."""
    return re.sub(r"_(bucket|sum|count)$", "", metric)


def not_exported():
    return {
        line.strip()
        for line in NOT_EXPORTED.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def rule_file(out):
    """Every dashboard query as a recording rule: `promtool check rules` parses each one."""
    rules = []
    for i, q in enumerate(queries()):
        name = re.sub(r"\W", "_", f"{Path(q.dashboard).stem}_{i}_{q.ref}")
        rules.append({"record": f"dashboard_query:{name}", "expr": q.expr})
    Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False))
    return len(rules)


def alert_problems():
    fires, silent = set(), set()
    for path in sorted(RULE_TESTS.glob("*.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test") or []:
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert")
                if name is None:
                    continue
                if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
                    yield f"{name}: no severity critical or warning"
                for key in ("summary", "description", "runbook"):
                    if not rule.get("annotations", {}).get(key):
                        yield f"{name}: no {key} annotation"
                if name not in fires:
                    yield f"{name}: no unit test where it fires"
                if name not in silent:
                    yield f"{name}: no unit test where it stays silent"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "rule-file":
        print(f"{rule_file(sys.argv[2])} dashboard queries written to {sys.argv[2]}")
    elif sys.argv[1:] == ["alerts"]:
        problems = list(alert_problems())
        print("\n".join(problems))
        sys.exit(1 if problems else 0)
    else:
        sys.exit(__doc__)
