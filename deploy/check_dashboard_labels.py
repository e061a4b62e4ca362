"""deploy_check's label check: the labels a dashboard query groups by, matches on or names in
its legend must be labels its metrics carry in real /metrics output (job and instance are
Prometheus's own, le a histogram's). Queries whose metrics have no sample yet are skipped.

Usage: check_dashboard_labels.py DASHBOARD_JSON METRICS_TEXT
"""
import json
import re
import sys


def sample_labels(metrics_path):
    labels = {}
    for line in open(metrics_path):
        if line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
        if m:
            found = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(2) or "")
            labels.setdefault(m.group(1), set()).update(found)
    return labels


def targets(node):
    if isinstance(node, dict):
        if "expr" in node:
            yield node
        for v in node.values():
            yield from targets(v)
    elif isinstance(node, list):
        for v in node:
            yield from targets(v)


def main():
    labels = sample_labels(sys.argv[2])
    bad = checked = 0
    for t in targets(json.load(open(sys.argv[1]))):
        expr = t["expr"]
        unquoted = re.sub(r'"[^"]*"', '""', expr)
        names = [n for n in re.findall(r"\bkiln_[a-z0-9_]+", unquoted) if n in labels]
        if not names:
            continue
        used = set()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", unquoted):
            used.update(x.strip() for x in group.split(",") if x.strip())
        used.update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"', expr))
        used.update(re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", t.get("legendFormat", "")))
        have = set().union(*(labels[n] for n in names)) | {"job", "instance", "le"}
        checked += 1
        for label in sorted(used - have):
            print(f"FAIL: dashboard query {expr!r} uses label {label!r}, which {names} lack",
                  file=sys.stderr)
            bad += 1
    print(f"check_deploy: labels of {checked} dashboard queries with samples checked")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
