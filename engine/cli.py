"""``dragonpbx`` command line: run the daemon, validate and render machines, check config.

Each sub-command's ``--help`` says what it does. Exit codes: 0 ok, 1 findings
(invalid machines/config), 2 usage or start-up error.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

from engine import __version__
from engine.errors import ConfigError, DefinitionError

# Sub-commands that live with their component: each module has register(subparsers).
_EXTENSION_MODULES: tuple[str, ...] = (
    "engine.config.cli", "engine.abuse.cli", "engine.api.cli", "engine.simulate.cli",
)


# --------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    from engine.fsm.loader import load_file, machine_files
    from engine.vocabulary import load_vocabulary

    load_vocabulary()

    roots = args.paths or [_machines_root()]
    files = machine_files(*roots)
    if not files:
        print(f"no machine files under {', '.join(map(str, roots))}", file=sys.stderr)
        return 1
    errors = warnings = 0
    names: dict[str, str] = {}
    for path in files:
        result = load_file(path)
        for d in result.diagnostics:
            print(d)
            errors += d.severity == "error"
            warnings += d.severity != "error"
        if result.definition is not None:
            other = names.get(result.definition.name)
            if other:
                print(f"{path}:1:1 E051 $.machine: machine {result.definition.name!r} is also "
                      f"defined in {other}")
                errors += 1
            names[result.definition.name] = str(path)
        if result.ok and args.verbose:
            machine = result.definition
            assert machine is not None
            print(f"ok {path}: {machine.name}@{machine.version} ({len(machine.states)} states, "
                  f"{len(machine.all_transitions())} transitions)")
    print(f"{len(files)} file(s): {errors} error(s), {warnings} warning(s)",
          file=sys.stderr)
    return 1 if errors else 0


def _machines_root() -> Path:
    from engine.settings import load_settings

    try:
        return load_settings().machines_path
    except ConfigError:
        from engine.paths import machines_dir

        return machines_dir()


def _find_machine(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    from engine.fsm.loader import load_file, machine_files

    for path in machine_files(_machines_root()):
        if path.stem == name_or_path:
            return path
    for path in machine_files(_machines_root()):
        result = load_file(path)
        if result.definition is not None and result.definition.name == name_or_path:
            return path
    raise FileNotFoundError(f"no machine named {name_or_path!r} under {_machines_root()}")


# --------------------------------------------------------------------------- render


def cmd_render(args: argparse.Namespace) -> int:
    from engine.fsm.loader import load_file
    from engine.fsm.render import render
    from engine.vocabulary import load_vocabulary

    load_vocabulary()

    try:
        path = _find_machine(args.machine)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    result = load_file(path)
    if result.definition is None or result.errors:
        for d in result.diagnostics:
            print(d, file=sys.stderr)
        if result.definition is None:
            return 1
    fmt = args.format or (Path(args.output).suffix.lstrip(".") if args.output else "svg")
    if fmt not in ("svg", "png", "dot"):
        print(f"unsupported format {fmt!r} (svg, png, dot)", file=sys.stderr)
        return 2
    output = Path(args.output or f"{result.definition.name}.{fmt}")
    trace_path: list[str] = []
    if args.trace:
        trace_path = _trace_path(Path(args.trace))
    render(result.definition, output, fmt, path=trace_path)
    print(output)
    return 0


def _trace_path(file: Path) -> list[str]:
    entries = json.loads(file.read_text())
    if isinstance(entries, dict):
        entries = entries.get("trace", [])
    path: list[str] = []
    for e in entries:
        for key in ("from", "to"):
            state = e.get(key)
            if state and (not path or path[-1] != state):
                path.append(state)
    return path


# --------------------------------------------------------------------------- settings


def cmd_settings(args: argparse.Namespace) -> int:
    from engine.settings import load_settings, markdown_table

    if args.markdown:
        print(markdown_table())
        return 0
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("# settings from this command's environment, not read from a running daemon",
          file=sys.stderr)
    print(json.dumps(settings.redacted(), indent=2, default=str))
    return 0


def cmd_actions(args: argparse.Namespace) -> int:
    from engine.vocabulary import load_vocabulary

    info = load_vocabulary().describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for kind in ("actions", "guards", "delays"):
        print(f"{kind}:")
        for row in info[kind]:
            params = ", ".join(row["params"].get("properties", {})) or "-"
            print(f"  {row['name']:32s} params: {params:30s} {row['doc']}")
    print("inputs (events adapters deliver):")
    for source, events in info["inputs"].items():
        print(f"  {source}: {', '.join(events)}")
    return 0


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from engine.app import run_daemon
    from engine.settings import load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"dragonpbx: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1 and settings.worker_index is None:
        from engine.supervisor import run_supervisor  # WORKERS=N: N processes, one port

        return run_supervisor(settings)
    return run_daemon()


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dragonpbx",
        description="DragonPBX: a webhook-driven SIP PBX whose flows are YAML state machines.",
    )
    parser.add_argument("--version", action="version", version=f"dragonpbx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="start the daemon (settings from the environment)",
                       description="Start the PBX daemon. Components start in dependency "
                       "order and one 'ready' line is logged when serving. SIGTERM/SIGINT "
                       "drain (new INVITEs get 503, live calls may finish for "
                       "SHUTDOWN_GRACE_SECS) and exit 0; SIGHUP reloads configuration and "
                       "machines. WORKERS=N runs N engine processes on the SIP port under "
                       "a supervisor that forwards these signals and restarts a dead one.")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check machine files (default: the shipped machines)",
                       description="Load every machine file, validate it against "
                       "schemas/machine.schema.json and the registered actions, and print "
                       "each finding as file:line:col CODE $.path: message. Exit 1 on any "
                       "error.")
    p.add_argument("paths", nargs="*", type=Path, help="machine files or folders")
    p.add_argument("-v", "--verbose", action="store_true", help="also list valid machines")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("render", help="draw a machine as svg, png or dot",
                       description="Render a machine (by name or file path) with graphviz: "
                       "states, transitions labelled event [guard] / actions, initial and "
                       "final states marked. --trace highlights the path of a recorded "
                       "instance trace (JSON from the API or `dragonpbx trace`).")
    p.add_argument("machine", help="machine name (e.g. registration) or a .yaml path")
    p.add_argument("-o", "--output", help="output file (default: <machine>.<format>)")
    p.add_argument("--format", choices=("svg", "png", "dot"), help="default: from -o, or svg")
    p.add_argument("--trace", help="JSON trace file whose path to highlight")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("settings", help="print the settings THIS environment gives "
                       "(secrets redacted); not a running daemon's",
                       description="Parse this command's own environment like the daemon "
                       "does and print the result. It does not ask a running daemon: a "
                       "daemon started with another environment (systemd EnvironmentFile) "
                       "may differ. --markdown prints the table of every variable.")
    p.add_argument("--markdown", action="store_true", help="the README's variable table")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("actions", help="list the actions, guards and delays machines may use",
                       description="Everything registered for machine files, with the "
                       "parameters each takes and the events adapters deliver.")
    p.add_argument("--json", action="store_true", help="machine-readable, with schemas")
    p.set_defaults(func=cmd_actions)

    for module in _EXTENSION_MODULES:
        import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if "settings" in inspect.signature(args.func).parameters:
            # component commands (config, db) act on the configured services
            from engine.settings import load_settings

            return int(args.func(args, load_settings()) or 0)
        return int(args.func(args) or 0)
    except (ConfigError, DefinitionError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
