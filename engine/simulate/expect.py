"""A script's ``expect:`` checked against a simulation's result."""

from __future__ import annotations

from typing import Any


def _journal(result: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [i for i in result["journal"] if i.get("kind") == kind]


def _observed(key: str, result: dict[str, Any]) -> Any:
    if key in ("final_state", "status", "replies", "path"):
        return result[key]
    if key == "visits":
        # states of the simulated machine and of the children it spawned (digest_auth,
        # verbs, legs): a flow split into machines is still checked as one; an item may
        # name its machine (``digest_auth:failed_credentials``)
        seen = list(result["path"])
        for inst in result.get("instances", ()):
            seen += inst["path"] + [f"{inst['machine']}:{state}" for state in inst["path"]]
        return seen
    if key == "actions":
        return [a["action"] for s in _journal(result, "step") for a in s.get("actions", ())]
    if key == "hooks":
        return [h["url"] for h in _journal(result, "hook")]
    if key == "sip_requests":
        return [r["method"] for r in _journal(result, "sip_request")]
    if key == "statushook":
        return [e["event"] for e in _journal(result, "statushook")]
    raise KeyError(key)


def check_expectations(expect: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """``{"met": bool, "failures": [{"expect", "wanted", "got"}]}``. ``visits`` and
    ``actions`` need each item to appear; the others must be equal."""
    failures = []
    for key, wanted in expect.items():
        got = _observed(key, result)
        ok = all(i in got for i in wanted) if key in ("visits", "actions") else got == wanted
        if not ok:
            failures.append({"expect": key, "wanted": wanted, "got": got})
    return {"met": not failures, "checked": sorted(expect), "failures": failures}
