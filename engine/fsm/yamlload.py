"""YAML → plain Python values, remembering where every value came from.

Diagnostics must say ``file:line:col`` for any JSON path, so the loader keeps
a map from path tuples to (line, col). Duplicate mapping keys — which PyYAML
silently accepts, last one winning — are reported instead of hidden.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

try:  # the C loader is ~10x faster; fall back when libyaml is missing
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on the platform build
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

from engine.errors import Diagnostic


class _Loader(_BaseLoader):
    """YAML 1.2-style booleans: only true/false. In YAML 1.1 ``on``, ``off``, ``yes``
    and ``no`` are booleans, which would turn every ``on:`` key of a machine into True."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)

Path = tuple[str | int, ...]

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_path(path: Iterable[str | int]) -> str:
    """``("states", "idle", "on", "sip.final")`` → ``$.states.idle.on["sip.final"]``."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}"
        else:
            out += '["' + part.replace('"', '\\"') + '"]'
    return out


@dataclass
class LoadedDocument:
    """A parsed YAML document plus the position of every node in it."""

    file: str
    data: Any
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Line/col (1-based) of ``path`` or of its nearest ancestor that has a mark.

        Collections are located at their key; scalars at their value, unless ``key``
        asks for the key (e.g. an unknown event name rather than its target).
        """
        probe = tuple(path)
        while probe:
            if key and probe in self.key_marks:
                return self.key_marks[probe]
            if probe in self.marks:
                return self.marks[probe]
            probe = probe[:-1]
        return self.marks.get((), (1, 1))

    def diag(self, code: str, path: Path, message: str, severity: str = "error", *,
             key: bool = False) -> Diagnostic:
        line, col = self.where(path, key=key)
        d = Diagnostic(self.file, line, col, code, format_path(path), message, severity)
        self.diagnostics.append(d)
        return d


def load_yaml(text: str, file: str) -> LoadedDocument:
    """Parse ``text``; syntax errors and duplicate keys become diagnostics (E001, E050)."""
    doc = LoadedDocument(file=file, data=None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            doc.diag("E001", (), "the file is empty")
            return doc
        doc.data = _convert(loader, node, (), doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        doc.diagnostics.append(Diagnostic(file, line, col, "E001", "$", f"YAML: {problem}"))
        doc.data = None
    except yaml.YAMLError as exc:
        doc.diagnostics.append(Diagnostic(file, 1, 1, "E001", "$", f"YAML: {exc}"))
        doc.data = None
    finally:
        loader.dispose()
    return doc


def _convert(loader: Any, node: yaml.Node, path: Path, doc: LoadedDocument) -> Any:
    doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            skey = key if isinstance(key, str) else str(key)
            child = (*path, skey)
            key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if skey in out:
                doc.marks[child] = doc.key_marks[child] = key_mark
                doc.diag("E050", child, f"duplicate key {skey!r} (an earlier one would be lost)")
                continue
            out[skey] = _convert(loader, value_node, child, doc)
            doc.key_marks[child] = key_mark
            if not isinstance(value_node, yaml.ScalarNode):
                doc.marks[child] = key_mark  # a state or list is found by its key
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, (*path, i), doc) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
