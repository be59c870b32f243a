"""The boot test's Prometheus client: one query, alert or readiness check against 127.0.0.1:9090, answers on stdout."""

# Used by fleet-test.sh inside the container, where there is no jq and
# perhaps no curl: only the host's /usr/bin/python3 and its standard library.
#   promql.py ready              exit 0 once Prometheus answers /-/ready
#   promql.py value QUERY        the first sample's value (as Prometheus wrote
#                                it), exit 1 when the result is empty
#   promql.py count QUERY        the number of samples in the result
#   promql.py alert NAME         the state (pending/firing) of alert NAME, exit 1 if inactive
#   promql.py rules              the names of the loaded rules, one a line
# Every request has a 2 s timeout; the caller polls with its own deadline.

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request
from typing import Any

BASE = "http://127.0.0.1:9090"


def get(path: str, **params: str) -> Any:
    url = f"{BASE}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.load(resp) if path.startswith("/api/") else resp.read()


def query(expr: str) -> list[dict[str, Any]]:
    answer = get("/api/v1/query", query=expr)
    if answer.get("status") != "success":
        raise SystemExit(f"query failed: {answer}")
    return list(answer["data"]["result"])


def main(argv: list[str]) -> int:
    try:
        if argv[0] == "ready":
            get("/-/ready")
            return 0
        if argv[0] == "value":
            result = query(argv[1])
            if not result:
                return 1
            print(result[0]["value"][1])
            return 0
        if argv[0] == "count":
            print(len(query(argv[1])))
            return 0
        if argv[0] == "alert":
            alerts = get("/api/v1/alerts")["data"]["alerts"]
            states = [a["state"] for a in alerts if a["labels"]["alertname"] == argv[1]]
            if not states:
                return 1
            print(states[0])
            return 0
        if argv[0] == "rules":
            for group in get("/api/v1/rules")["data"]["groups"]:
                for rule in group["rules"]:
                    print(rule["name"])
            return 0
    except OSError as exc:  # not up yet, refused, timed out: the caller retries
        print(f"promql.py: {exc}", file=sys.stderr)
        return 2
    raise SystemExit(f"usage: promql.py ready|value QUERY|count QUERY|alert NAME|rules, not {argv}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
