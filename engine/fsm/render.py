"""Machine diagrams with graphviz: what an operator reads next to the YAML.

States are rounded boxes listing their entry actions; the initial state has
an arrow from a dot, final states a double border, the failure state is red.
Edges read ``event [guards] / actions`` (internal transitions, which change no
state, are listed inside their state); ``after`` timers are dashed,
``always`` decisions dotted, and machine-wide ``on:`` transitions leave from
an "any state" node. Given a trace path, visited states and taken edges are
highlighted — that is how a live call's path is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import graphviz

from engine.fsm.definition import MachineDef, TransitionDef

_FONT = "Helvetica"


def _wrap(text: str, width: int = 42) -> str:
    out, line = [], ""
    for word in text.split(" "):
        if line and len(line) + len(word) + 1 > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        out.append(line)
    return "\\n".join(out)


def _edge_style(t: TransitionDef) -> dict[str, str]:
    if t.kind == "after":
        return {"style": "dashed"}
    if t.kind == "always":
        return {"style": "dotted"}
    return {}


def to_graph(defn: MachineDef, *, path: Sequence[str] = ()) -> graphviz.Digraph:
    """Build the diagram; ``path`` (visited state names, in order) is highlighted."""
    visited = set(path)
    taken = set(pairwise(path))
    g = graphviz.Digraph(defn.name, graph_attr={
        "rankdir": "TB", "fontname": _FONT, "labelloc": "t",
        "label": f"{defn.name} @ {defn.version}", "nodesep": "0.4", "ranksep": "0.5",
    }, node_attr={"fontname": _FONT, "fontsize": "11"},
        edge_attr={"fontname": _FONT, "fontsize": "9"})
    g.node("__start", "", shape="point", width="0.15")
    g.edge("__start", defn.initial)
    for name, state in defn.states.items():
        lines = [name]
        for a in state.entry:
            lines.append(f"entry / {a.label()}")
        for a in state.exit:
            lines.append(f"exit / {a.label()}")
        # internal transitions (no target) live inside the state, as in UML
        for t in state.transitions:
            if t.target is None:
                lines.append(t.label())
        label = "\\n".join(_wrap(line) for line in lines)
        attrs = {"shape": "box", "style": "rounded"}
        if state.final:
            attrs["peripheries"] = "2"
        if name == defn.on_failure:
            attrs["color"] = "red3"
        if name in visited:
            attrs.update(style="rounded,filled", fillcolor="palegreen")
        g.node(name, label, **attrs)
    for state in defn.states.values():
        for t in state.transitions:
            if t.target is None:
                continue
            target = t.target
            attrs = _edge_style(t)
            if (state.name, target) in taken:
                attrs.update(color="darkgreen", penwidth="2.2")
            g.edge(state.name, target, label=_wrap(t.label()), **attrs)
    if defn.global_transitions:
        g.node("__any", "any state", shape="plaintext", fontcolor="gray30")
        for t in defn.global_transitions:
            g.edge("__any", t.target or "__any", label=_wrap(t.label()), color="gray40",
                   fontcolor="gray30")
    return g


def render(defn: MachineDef, output: Path, fmt: str = "svg", *,
           path: Sequence[str] = ()) -> Path:
    """Write the diagram to ``output`` in ``fmt`` (svg, png or dot)."""
    g = to_graph(defn, path=path)
    output = Path(output)
    if fmt == "dot":
        output.write_text(g.source)
        return output
    data = g.pipe(format=fmt)
    output.write_bytes(data)
    return output
