"""Simulation scripts: YAML or JSON, checked against schemas/simulate.schema.json.

Findings are reported like machine files' (``file:line:col CODE $.path: message``)
and collected together: E001 unreadable/YAML syntax, E002 schema, S001-S004 the
script's meaning (machine, trunk, configuration, steps).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from engine.errors import ConfigError, DefinitionError, Diagnostic
from engine.fsm.yamlload import LoadedDocument, load_yaml
from engine.paths import schema_path
from engine.simulate.defaults import DEFAULT_CONFIG

STEP_KINDS = ("request", "event", "advance", "cancel", "hangup")


@cache
def script_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path("simulate").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@dataclass
class Script:
    file: str
    machine: str | None
    steps: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=lambda: DEFAULT_CONFIG)
    settings: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)
    trunk: dict[str, Any] | None = None
    store: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    doc: LoadedDocument | None = None

    def diag(self, code: str, path: tuple[str | int, ...], message: str) -> Diagnostic:
        """A finding located in the script (for errors found while running it)."""
        if self.doc is None:
            return Diagnostic(self.file, 1, 1, code, "$", message)
        d = self.doc.diag(code, path, message)
        return d


def _schema_findings(doc: LoadedDocument) -> None:
    errors = sorted(script_validator().iter_errors(doc.data),
                    key=lambda e: (list(map(str, e.absolute_path)), e.message))
    for err in errors:
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set(err.schema.get("properties", {}))
            extra = [k for k in err.instance if k not in allowed]
            if extra:
                doc.diag("E002", (*path, extra[0]), f"unknown key {extra[0]!r}; allowed "
                         f"here: {', '.join(sorted(allowed))}", key=True)
                continue
        message = err.message
        if err.validator == "oneOf" and err.context:
            # "is not of type 'string'" about the raw-text alternative helps nobody when
            # a mapping was given: report what is wrong inside the mapping instead
            relevant = [e for e in err.context if e.validator != "type"] or err.context
            best = jsonschema.exceptions.best_match(relevant)
            if best is not None:
                message, path = best.message, tuple(best.absolute_path)
        doc.diag("E002", path, message)


def _meaning_findings(doc: LoadedDocument, machine: str | None) -> None:
    data = doc.data
    named = data.get("machine")
    if machine and named and named != machine:
        doc.diag("S001", ("machine",), f"the script is for {named!r}, not {machine!r}")
    for i, step in enumerate(data["steps"]):
        kinds = [k for k in STEP_KINDS if k in step]
        if len(kinds) > 1:
            doc.diag("S003", ("steps", i), f"one input per step, not {' and '.join(kinds)}")
        if "data" in step and "event" not in step:
            doc.diag("S003", ("steps", i, "data"), "data belongs to an event step")
        if "source" in step and not isinstance(step.get("request"), str):
            doc.diag("S003", ("steps", i, "source"), "source belongs to a raw request step "
                     "(a structured request has its own source)")
    config = data.get("config")
    if config is not None:
        from engine.config.validate import snapshot_from_json_text

        try:
            snapshot_from_json_text(json.dumps(config), file="config")
        except ConfigError as exc:
            for finding in exc.diagnostics or ():
                if finding.severity == "error":
                    doc.diag("S004", ("config", *_config_path(finding.path)),
                             f"configuration: {finding.message}")
            if not exc.diagnostics:
                doc.diag("S004", ("config",), f"invalid configuration: {exc}")


_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['((?:[^'\\]|\\.)*)'\]|\[\"([^\"]*)\"\]"
                        r"|\[(\d+)\]")


def _config_path(text: str) -> tuple[str | int, ...]:
    """``$.domains['pbx.test'].clients[0]`` → ("domains", "pbx.test", "clients", 0)."""
    out: list[str | int] = []
    for name, quoted, dquoted, index in _PATH_PART.findall(text):
        if index:
            out.append(int(index))
        else:
            out.append(name or quoted or dquoted)
    return tuple(out)


def load_script(path: Path | str, machine: str | None = None) -> Script:
    """Read and check a script; raise DefinitionError with every finding."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([Diagnostic(file, 1, 1, "E001", "$", f"cannot read: {exc}")]
                              ) from None
    return parse_script(text, file, machine)


def parse_script(text: str, file: str, machine: str | None = None) -> Script:
    doc = load_yaml(text, file)
    if doc.data is not None and not isinstance(doc.data, dict):
        doc.diag("E002", (), "a script is a mapping (machine, config, outcomes, steps, expect)")
    elif doc.data is not None:
        _schema_findings(doc)
        if not doc.diagnostics:
            _meaning_findings(doc, machine)
    errors = [d for d in doc.diagnostics if d.severity == "error"]
    if errors or doc.data is None:
        raise DefinitionError(sorted(errors, key=lambda d: (d.line, d.col, d.code)))
    data = doc.data
    return Script(
        file=file, machine=machine or data.get("machine"), steps=data["steps"],
        config=data.get("config", DEFAULT_CONFIG),
        settings={k: _env_text(v) for k, v in data.get("settings", {}).items()},
        outcomes=data.get("outcomes", {}), expect=data.get("expect", {}),
        trunk=data.get("trunk"), store=data.get("store", {}), seed=data.get("seed", 0),
        doc=doc)


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
