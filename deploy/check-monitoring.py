#!/usr/bin/env python3
"""Checks the alert rules and the Grafana dashboard against the metrics contract.

The contract is the table in docs/metrics.md (metric name and type). This script checks:
- deploy/prometheus/alerts.yml: every rule's expression uses only metrics of the contract (a
  histogram's `_bucket`, `_sum` and `_count` series included) or Prometheus' own `up`; every
  alert has a `for:`, a `severity` label (critical or warning), a summary, a description and a
  `runbook_url` whose anchor is a heading of docs/operations.md (whose own `#` links are
  checked the same way);
- deploy/grafana/icon.json: it parses, has a recent schemaVersion and a uid; every panel and
  query uses the data source variable `${DS_PROMETHEUS}` (or the uid `prometheus`); panel ids
  are unique; every query uses only contract metrics (or `up`); every metric of the contract is
  on the dashboard; the queries are valid PromQL (they are written into a temporary rules file,
  Grafana's variables replaced, for `promtool check rules`);
- deploy/grafana/provisioning/: the data source and dashboard provider files parse and agree
  with the dashboard.

`promtool check rules`, `promtool test rules` and `promtool check config` on the files
themselves are run by deploy/check.sh.

    python3 deploy/check-monitoring.py [--promtool PATH]

Prints what it checked, one line per problem, and exits 1 on any.
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("check-monitoring: pyyaml is missing; run deploy/check.sh, which installs it")

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
METRICS_DOC = REPO / "docs" / "metrics.md"
OPERATIONS_DOC = REPO / "docs" / "operations.md"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "icon.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"

# Series any Prometheus has besides the contract's.
STANDARD = {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "atan2",
}
DATASOURCE_UIDS = {"${DS_PROMETHEUS}", "$DS_PROMETHEUS", "prometheus"}
MIN_SCHEMA_VERSION = 36


def contract() -> dict[str, str]:
    """metric name -> type, from the table of docs/metrics.md."""
    rows = re.findall(
        r"^\| `([a-z_:][a-z0-9_:]*)` \| (counter|gauge|histogram) \|",
        METRICS_DOC.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    if len(rows) < 10:
        sys.exit(f"check-monitoring: could not read the metrics table of {METRICS_DOC}")
    return dict(rows)


def metrics_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a lexical reading, enough for ICON's
    expressions: strings, label matchers, grouping clauses and ranges are removed first)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e
    )
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def unknown_metrics(expr: str, known: dict[str, str]) -> list[str]:
    bad = []
    for name in sorted(metrics_in(expr)):
        if name in known or name in STANDARD:
            continue
        base = next(
            (name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None
        )
        if base and known.get(base) == "histogram":
            continue
        bad.append(name)
    return bad


def base_metrics(expr: str, known: dict[str, str]) -> set[str]:
    out = set()
    for name in metrics_in(expr):
        for s in HISTOGRAM_SUFFIXES:
            if name.endswith(s) and known.get(name[: -len(s)]) == "histogram":
                name = name[: -len(s)]
        out.add(name)
    return out


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, re.MULTILINE):
        text = re.sub(r"`", "", heading).lower()
        text = re.sub(r"[^\w\- ]", "", text)
        out.add(text.replace(" ", "-"))
    return out


def check_rules(known: dict[str, str]) -> tuple[list[str], list[str]]:
    problems = []
    exprs = []
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    ops_anchors = anchors(OPERATIONS_DOC.read_text(encoding="utf-8")) if OPERATIONS_DOC.exists() else set()
    count = 0
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            count += 1
            name = rule.get("alert") or rule.get("record")
            expr = str(rule.get("expr", ""))
            exprs.append(expr)
            for m in unknown_metrics(expr, known):
                problems.append(f"alerts.yml {name}: `{m}` is not in docs/metrics.md")
            if "alert" not in rule:
                continue
            if "for" not in rule:
                problems.append(f"alerts.yml {name}: no `for:`")
            if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
                problems.append(f"alerts.yml {name}: severity is not critical or warning")
            ann = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    problems.append(f"alerts.yml {name}: no {key} annotation")
            url = ann.get("runbook_url", "")
            if url:
                path, _, anchor = url.partition("#")
                if not path.endswith("docs/operations.md"):
                    problems.append(f"alerts.yml {name}: runbook_url does not point into docs/operations.md")
                elif anchor not in ops_anchors:
                    problems.append(f"alerts.yml {name}: docs/operations.md has no heading #{anchor}")
    print(f"  alert rules: {count} rules, metrics and runbook anchors checked", flush=True)
    return problems, exprs


def panels_of(dash: dict):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def check_dashboard(known: dict[str, str]) -> tuple[list[str], list[str]]:
    problems = []
    try:
        dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        return [f"icon.json does not parse: {e}"], []
    if dash.get("schemaVersion", 0) < MIN_SCHEMA_VERSION:
        problems.append(f"icon.json: schemaVersion {dash.get('schemaVersion')} < {MIN_SCHEMA_VERSION}")
    if not dash.get("uid"):
        problems.append("icon.json: no uid")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds_var = variables.get("DS_PROMETHEUS")
    if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
        problems.append("icon.json: no data source variable DS_PROMETHEUS of type prometheus")
    exprs = []
    used: set[str] = set()
    for name, var in variables.items():
        if var.get("type") == "query":
            q = var.get("query")
            q = q.get("query", "") if isinstance(q, dict) else str(q)
            m = re.match(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,", q)
            if not m or m.group(1) not in known:
                problems.append(f"icon.json variable {name}: query {q!r} is not label_values of a contract metric")
            if var.get("datasource", {}).get("uid") not in DATASOURCE_UIDS:
                problems.append(f"icon.json variable {name}: data source is not ${{DS_PROMETHEUS}}")
    ids = set()
    n_panels = 0
    for p in panels_of(dash):
        n_panels += 1
        title = p.get("title", "?")
        if p.get("id") in ids:
            problems.append(f"icon.json panel {title!r}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        if "gridPos" not in p:
            problems.append(f"icon.json panel {title!r}: no gridPos")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") not in DATASOURCE_UIDS:
            problems.append(f"icon.json panel {title!r}: data source is not ${{DS_PROMETHEUS}}")
        targets = p.get("targets", [])
        if not targets:
            problems.append(f"icon.json panel {title!r}: no query")
        for t in targets:
            expr = t.get("expr", "")
            if not expr:
                problems.append(f"icon.json panel {title!r}: a target has no expr")
                continue
            if t.get("datasource", {}).get("uid") not in DATASOURCE_UIDS:
                problems.append(f"icon.json panel {title!r}: a target's data source is not ${{DS_PROMETHEUS}}")
            for m in unknown_metrics(expr, known):
                problems.append(f"icon.json panel {title!r}: `{m}` is not in docs/metrics.md")
            used |= base_metrics(expr, known)
            exprs.append(expr)
    for missing in sorted(set(known) - used):
        problems.append(f"icon.json: no panel shows `{missing}`")
    print(f"  dashboard: {n_panels} panels, {len(exprs)} queries, schemaVersion {dash.get('schemaVersion')}", flush=True)
    return problems, exprs


def check_provisioning() -> list[str]:
    problems = []
    ds = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    uids = [d.get("uid") for d in ds.get("datasources", []) if d.get("type") == "prometheus"]
    if "prometheus" not in uids:
        problems.append("provisioning/datasources/prometheus.yml: no prometheus data source with uid `prometheus`")
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "icon.yml").read_text(encoding="utf-8"))
    if not any(p.get("type") == "file" and p.get("options", {}).get("path") for p in prov.get("providers", [])):
        problems.append("provisioning/dashboards/icon.yml: no file provider with a path")
    print("  grafana provisioning: data source and dashboard provider parsed", flush=True)
    return problems


def promql_parses(exprs: list[str], promtool: str) -> list[str]:
    """Writes the dashboard's queries as recording rules and lets promtool parse them."""
    rules = []
    for i, expr in enumerate(exprs):
        e = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
        e = re.sub(r"\$\{?(\w+)\}?", ".*", e)
        rules.append({"record": f"icon:dashboard_query_{i}", "expr": e})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        path = f.name
    out = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    Path(path).unlink()
    if out.returncode != 0:
        return [f"dashboard queries: promtool: {line}" for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    print(f"  dashboard: {len(exprs)} queries parse as PromQL (promtool)", flush=True)
    return []


def check_operations_links() -> list[str]:
    """Every `(#anchor)` link inside docs/operations.md names one of its headings."""
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    targets = anchors(text)
    links = re.findall(r"\]\(#([^)]+)\)", text)
    print(f"  docs/operations.md: {len(links)} links to its own sections", flush=True)
    return [f"docs/operations.md: link to #{a}, which is no heading" for a in links if a not in targets]


def main() -> int:
    promtool = "promtool"
    if len(sys.argv) == 3 and sys.argv[1] == "--promtool":
        promtool = sys.argv[2]
    known = contract()
    print(f"  contract: {len(known)} metrics in docs/metrics.md", flush=True)
    problems, _ = check_rules(known)
    dash_problems, exprs = check_dashboard(known)
    problems += dash_problems
    problems += check_provisioning()
    problems += check_operations_links()
    if exprs:
        problems += promql_parses(exprs, promtool)
    for p in problems:
        print(f"  FAIL {p}")
    print("monitoring: " + ("FAILED" if problems else "OK"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
