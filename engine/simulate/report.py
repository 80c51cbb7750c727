"""A simulation's result as text an operator reads (and golden files compare)."""

from __future__ import annotations

import json
from typing import Any

from engine.fsm.definition import ALWAYS_EVENT


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=False)


def _step_lines(item: dict[str, Any]) -> list[str]:
    event = "(always)" if item["event"] == ALWAYS_EVENT else item["event"]
    move = f"{item['from'] or '·'} → {item['to']}" if item["from"] != item["to"] \
        else f"{item['to']} (stays)"
    head = f"{move}   on {event}"
    if item.get("note"):
        head += f"   ({item['note']})"
    lines = [head]
    if item.get("guards"):
        lines.append("guards: " + ", ".join(
            f"{g['guard']}={'true' if g['result'] else 'false'}" for g in item["guards"]))
    for act in item.get("actions", ()):
        text = f"action {act['action']}"
        if act["params"]:
            text += " " + _compact(act["params"])
        if act.get("outcome"):
            text += f"   !! {act['outcome']}"
        lines.append(text)
    return lines


def _port_line(item: dict[str, Any]) -> str:
    kind = item["kind"]
    if kind == "request":
        return f"→ {item['method']} {item['uri']}   (Call-ID {item['call_id']})"
    if kind == "reply":
        text = f"← {item['status']} {item['reason']}".rstrip()
        if item["headers"]:
            text += "   " + "; ".join(f"{k}: {v}" for k, v in item["headers"])
        return text
    if kind == "hook":  # the payload is in --json only (long; the action params say why)
        outcome = item["outcome"]
        shown = "no reply scripted (unreachable)" if outcome == "default" else _compact(outcome)
        return f"webhook POST {item['url']} ⇒ {shown}   (by {item['by']})"
    if kind == "sip_request":
        outcome = item["outcome"]
        shown = "default answer" if outcome == "default" else _compact(outcome)
        return f"sends {item['method']} {item['uri']} ⇒ {shown}   (by {item['by']})"
    if kind == "media":
        outcome = item["outcome"]
        shown = "" if outcome == "default" else f" ⇒ {_compact(outcome)}"
        return f"media {item['op']}{shown}   (by {item['by']})"
    if kind == "statushook":
        return f"statushook {item['event']}"
    if kind == "log":
        fields = " ".join(f"{k}={v}" for k, v in item["fields"].items())
        return f"log {item['level']} {item['msg']}" + (f"   {fields}" if fields else "")
    return _compact(item)


def format_report(result: dict[str, Any], *, header: bool = True) -> str:
    """The journal as a table (time, instance, transition, guards, actions with their
    parameters, what went out), then the outcome and the expectations."""
    out: list[str] = []
    if header:
        out.append(f"simulate {result['machine']}@{result['version']}   "
                   f"script {result['script']}")
        out.append("")
    width = max([len(i["instance"]) for i in result["instances"]] + [3])
    indent = " " * (12 + width)
    out.append(f"{'TIME':>8}  {'WHO':<{width}}  WHAT")
    for item in result["journal"]:
        t = f"{item['t']:8.3f}"
        if item["kind"] == "step":
            lines = _step_lines(item)
            out.append(f"{t}  {item['instance']:<{width}}  {lines[0]}")
            out += [f"{indent}  {line}" for line in lines[1:]]
        else:
            out.append(f"{t}  {'':<{width}}  {_port_line(item)}")
    out.append("")
    out.append("instances:")
    for inst in result["instances"]:
        out.append(f"  {inst['instance']:<20} {inst['status']:<8} {' → '.join(inst['path'])}")
    out.append(f"final state: {result['final_state']} ({result['status']})")
    out.append("replies sent: " + (", ".join(map(str, result["replies"])) or "none"))
    if result["unused_outcomes"]:
        out.append("scripted outcomes never used: " + ", ".join(
            f"{k} ×{n}" for k, n in sorted(result["unused_outcomes"].items())))
    exp = result.get("expectations")
    if exp and exp["checked"]:
        if exp["met"]:
            out.append("expectations met: " + ", ".join(exp["checked"]))
        else:
            out.append("EXPECTATIONS NOT MET:")
            for f in exp["failures"]:
                out.append(f"  {f['expect']}: wanted {_compact(f['wanted'])}, "
                           f"got {_compact(f['got'])}")
    return "\n".join(out) + "\n"
