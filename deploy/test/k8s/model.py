"""What deploy/test/k8s/check.py knows of Kubernetes and ingress-nginx: label selectors, the pods a
resource selects, the roles a MyEvents container runs, and how ingress-nginx picks the backend of
a request. Plain functions over the rendered YAML documents (dicts), no cluster needed."""

import re

# The services a MyEvents process runs without --role: every API service, plus the web UI it
# serves beside them.
ALL_ROLES = ("events", "bookings", "users", "notifications", "web")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def kind_name(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def of_kind(docs, *kinds):
    return [d for d in docs if d.get("kind") in kinds]


def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return d
    return None


def workloads(docs):
    return of_kind(docs, *WORKLOAD_KINDS)


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"].get("labels") or {}


def containers(workload, init=True):
    spec = pod_spec(workload)
    found = [(c, False) for c in spec.get("containers") or []]
    if init:
        found += [(c, True) for c in spec.get("initContainers") or []]
    return found


def matches(selector, labels):
    """A LabelSelector (matchLabels and matchExpressions), or a Service's plain map. An empty
    selector selects everything, as in a NetworkPolicy's podSelector."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selected(docs, selector):
    """The workloads whose pods the selector picks."""
    return [w for w in workloads(docs) if matches(selector, pod_labels(w))]


def roles_of(container):
    """The services a MyEvents container runs: its `--role` argument, or all of them."""
    args = list(container.get("args") or [])
    for i, arg in enumerate(args):
        if arg == "--role" and i + 1 < len(args):
            return set(args[i + 1].split(","))
        if arg.startswith("--role="):
            return set(arg.split("=", 1)[1].split(","))
    return set(ALL_ROLES)


def roles_behind_service(docs, service_name):
    """The roles served by the pods a Service selects (empty for non-MyEvents pods)."""
    service = find(docs, "Service", service_name)
    if service is None:
        return set()
    roles = set()
    for w in selected(docs, service["spec"].get("selector")):
        for c, init in containers(w, init=False):
            if "myevents" in c.get("image", ""):
                roles |= roles_of(c)
    return roles


# ---- ingress-nginx -----------------------------------------------------------------------------


def use_regex(ingress):
    annotations = ingress["metadata"].get("annotations") or {}
    return (
        annotations.get("nginx.ingress.kubernetes.io/use-regex") == "true"
        or "nginx.ingress.kubernetes.io/rewrite-target" in annotations
    )


def host_locations(ingresses, host):
    """ingress-nginx merges the rules of every Ingress for a host into one server; a rule
    without host serves the hosts no other rule names."""
    rules = [
        (ing, r) for ing in ingresses for r in ing["spec"].get("rules") or [] if r.get("host") == host
    ]
    if not rules:
        rules = [
            (ing, r) for ing in ingresses for r in ing["spec"].get("rules") or [] if not r.get("host")
        ]
    regex = any(use_regex(ing) for ing, _ in rules)
    locations = [
        (p.get("path", "/"), p.get("pathType", "ImplementationSpecific"), p["backend"])
        for _, r in rules
        for p in (r.get("http") or {}).get("paths") or []
    ]
    return regex, locations


def route(ingresses, host, uri):
    """The backend ingress-nginx sends `uri` on `host` to, or None (its default backend).

    With use-regex on any Ingress of the host, every path of that host is a case-insensitive
    regular expression anchored at the start of the URI (`location ~* "^path"`); the controller
    writes the locations sorted by path, then (stable) by length, longest first, and nginx takes
    the first regular expression that matches. Without it, Ingress Prefix and Exact semantics:
    the longest matching path wins, Exact before Prefix."""
    regex, locations = host_locations(ingresses, host)
    if regex:
        ordered = sorted(locations, key=lambda l: l[0], reverse=True)
        ordered = sorted(ordered, key=lambda l: len(l[0]), reverse=True)
        for path, _, backend in ordered:
            if re.match(path, uri, re.IGNORECASE):
                return backend
        return None
    best = None
    for path, path_type, backend in locations:
        if path_type == "Exact":
            hit = uri == path
        else:
            prefix = path.rstrip("/").split("/")
            hit = uri.rstrip("/").split("/")[: len(prefix)] == prefix
        rank = (len(path), path_type == "Exact")
        if hit and (best is None or rank > best[0]):
            best = (rank, backend)
    return best[1] if best else None


# ---- axum (matchit) routing --------------------------------------------------------------------

PARAM = re.compile(r"^\{[^}]+\}$")


def template_matches(template, uri):
    t, u = template.strip("/").split("/"), uri.strip("/").split("/")
    return len(t) == len(u) and all(PARAM.match(a) or a == b for a, b in zip(t, u))


def specificity(template):
    """matchit prefers a static segment to a parameter at the first place they differ."""
    return tuple(0 if PARAM.match(s) else 1 for s in template.strip("/").split("/"))


def owners(openapi_paths, uri):
    """The roles whose router takes `uri`: the most specific template that matches it wins, as
    in one process where every role's routes share a router. `openapi_paths` maps role to the
    path templates of its /openapi.json."""
    candidates = [
        (specificity(t), role)
        for role, paths in openapi_paths.items()
        for t in paths
        if template_matches(t, uri)
    ]
    if not candidates:
        return set()
    best = max(s for s, _ in candidates)
    return {role for s, role in candidates if s == best}
