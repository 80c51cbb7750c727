"""Load machine files: YAML with marks → JSON Schema → normalise → checks → compile.

Every finding of every stage is collected and reported together as
``file:line:col CODE $.json.path: message``; a definition with any error
never runs. ``MachineLibrary`` holds the current version of each machine;
``reload()`` swaps in new versions for new instances while running ones keep
the version they started with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path as FsPath
from typing import Any

import jsonschema

from engine.errors import DefinitionError, Diagnostic
from engine.fsm.checks import check
from engine.fsm.compile import CompiledMachine
from engine.fsm.definition import MachineDef, normalise
from engine.fsm.registry import REGISTRY, Registry
from engine.fsm.yamlload import LoadedDocument, load_yaml
from engine.log import get_logger
from engine.paths import schema_path

_log = get_logger("engine.fsm.loader")


@cache
def machine_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path("machine").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@dataclass
class LoadResult:
    file: str
    definition: MachineDef | None
    compiled: CompiledMachine | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def ok(self) -> bool:
        return self.compiled is not None


def _schema_diagnostics(doc: LoadedDocument) -> None:
    errors = sorted(machine_validator().iter_errors(doc.data),
                    key=lambda e: (list(map(str, e.absolute_path)), e.message))
    for err in errors:
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set(err.schema.get("properties", {}))
            extra = [k for k in err.instance if k not in allowed]
            if extra:
                doc.diag("E002", (*path, extra[0]),
                         f"unknown key {extra[0]!r}; allowed here: {', '.join(sorted(allowed))}",
                         key=True)
                continue
        doc.diag("E002", path, _schema_message(err))


def _schema_message(err: jsonschema.ValidationError) -> str:
    # oneOf failures are unreadable as-is: report the most specific sub-error
    if err.validator == "oneOf" and err.context:
        best = jsonschema.exceptions.best_match(err.context)
        if best is not None:
            return best.message
    if err.validator == "additionalProperties":
        return err.message.replace("Additional properties are not allowed",
                                   "unknown key(s) not allowed")
    return err.message


def load_text(text: str, file: str, registry: Registry = REGISTRY) -> LoadResult:
    doc = load_yaml(text, file)
    if doc.data is None:
        return LoadResult(file, None, None, doc.diagnostics)
    _schema_diagnostics(doc)
    if any(d.severity == "error" for d in doc.diagnostics):
        return LoadResult(file, None, None, _sorted(doc.diagnostics))
    defn = normalise(doc.data, file, text)
    bound = check(defn, doc, registry)
    diags = _sorted(doc.diagnostics)
    if any(d.severity == "error" for d in diags):
        return LoadResult(file, defn, None, diags)
    return LoadResult(file, defn, CompiledMachine(defn, registry, bound), diags)


def load_file(path: FsPath | str, registry: Registry = REGISTRY) -> LoadResult:
    p = FsPath(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return LoadResult(str(p), None, None,
                          [Diagnostic(str(p), 1, 1, "E001", "$", f"cannot read: {exc}")])
    return load_text(text, str(p), registry)


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=lambda d: (d.file, d.line, d.col, d.code))


def machine_files(*roots: FsPath | str) -> list[FsPath]:
    """Every ``*.yaml``/``*.yml`` under ``roots`` (files are taken as given)."""
    out: list[FsPath] = []
    for root in roots:
        r = FsPath(root)
        if r.is_dir():
            out += sorted(p for p in r.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            out.append(r)
    return out


class MachineLibrary:
    """The current compiled version of every machine in a folder."""

    def __init__(self, root: FsPath | str, registry: Registry = REGISTRY):
        self.root = FsPath(root)
        self.registry = registry
        self._machines: dict[str, CompiledMachine] = {}
        self.results: list[LoadResult] = []

    def load(self) -> list[Diagnostic]:
        """(Re)load every file. On any error nothing is swapped and DefinitionError is
        raised; otherwise new instances use the new versions. Returns warnings."""
        results = [load_file(p, self.registry) for p in machine_files(self.root)]
        diags = [d for r in results for d in r.diagnostics]
        errors = [d for d in diags if d.severity == "error"]
        names: dict[str, str] = {}
        for r in results:
            if r.definition is None:
                continue
            other = names.get(r.definition.name)
            if other is not None:
                errors.append(Diagnostic(r.file, 1, 1, "E051", "$.machine",
                                         f"machine {r.definition.name!r} is also defined in "
                                         f"{other}"))
            names[r.definition.name] = r.file
        if errors:
            raise DefinitionError(errors)
        if not results:
            raise DefinitionError([Diagnostic(str(self.root), 1, 1, "E001", "$",
                                              "no machine files found")])
        new = {r.compiled.name: r.compiled for r in results if r.compiled is not None}
        changed = [n for n, m in new.items()
                   if n not in self._machines or self._machines[n].version != m.version]
        self._machines = new
        self.results = results
        if changed:
            _log.info("machines loaded", machines={n: new[n].version for n in changed})
        return [d for d in diags if d.severity != "error"]

    def get(self, name: str) -> CompiledMachine:
        try:
            return self._machines[name]
        except KeyError:
            raise KeyError(f"no machine named {name!r} (have: {', '.join(sorted(self._machines))})"
                           ) from None

    def names(self) -> list[str]:
        return sorted(self._machines)

    def __contains__(self, name: str) -> bool:
        return name in self._machines

    def versions(self) -> dict[str, str]:
        return {n: m.version for n, m in sorted(self._machines.items())}


def describe(compiled: CompiledMachine) -> dict[str, Any]:
    """A JSON-able summary (for the API and `dragonpbx show`)."""
    d = compiled.defn
    return {
        "machine": d.name, "version": d.version, "file": d.file, "initial": d.initial,
        "on_failure": d.on_failure, "inputs": list(d.inputs),
        "states": {
            n: {"final": s.final, "description": s.description,
                "entry": [a.label() for a in s.entry],
                "transitions": [{"event": t.event, "target": t.target, "label": t.label()}
                                for t in s.transitions]}
            for n, s in d.states.items()
        },
    }
