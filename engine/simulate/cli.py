"""``dragonpbx simulate MACHINE --script FILE``: a machine run on scripted inputs.

Exit codes: 0 the run finished and its expectations (if any) are met, 1 an
expectation is not met, 2 the script (or the machines) cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from engine.errors import DefinitionError


def cmd_simulate(args: argparse.Namespace) -> int:
    from engine.fsm.render import render
    from engine.simulate.report import format_report
    from engine.simulate.requests import ScriptError
    from engine.simulate.runner import run_script
    from engine.simulate.script import load_script

    try:
        script = load_script(args.script, args.machine)
        result = run_script(script, args.machine, machines=args.machines)
    except DefinitionError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        return 2
    except ScriptError as exc:
        print(script.diag("S002", exc.path, str(exc)), file=sys.stderr)
        return 2
    except KeyError as exc:  # a machine refers to another that is missing
        print(exc.args[0] if exc.args else exc, file=sys.stderr)
        return 2
    except Exception:  # an engine defect the scenario uncovered: show it, exit cleanly
        traceback.print_exc()
        print("simulation failed: an error inside the engine (above), not in the script",
              file=sys.stderr)
        return 2
    if args.svg:
        _render_path(result, Path(args.svg), args.machines, render)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        sys.stdout.write(_report(result, format_report))
    return 0 if result["expectations"]["met"] else 1


def _report(result: dict[str, Any], fmt: Any) -> str:
    return str(fmt(result))


def _render_path(result: dict[str, Any], output: Path, machines: Path | None,
                 render: Any) -> None:
    """The machine's diagram with the last instance's path highlighted (like
    ``dragonpbx render --trace``)."""
    from engine.simulate.services import load_library

    library = load_library(machines)
    render(library.get(result["machine"]).defn, output, "svg", path=result["path"])
    print(f"diagram: {output}", file=sys.stderr)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate", help="run a machine on a scripted scenario (no network)",
        description="Run MACHINE (shipped, or from MACHINES_PATH) with the inputs and the "
        "outside world's answers a script gives (requests, events, webhook replies, SIP "
        "responses, store failures, virtual time) and print the path: every transition "
        "with its guards, every action with its parameters, every reply sent. Script "
        "format: schemas/simulate.schema.json (README 'Simulating a machine'). Exit 0 "
        "when the script's expect: is met (or absent), 1 when not, 2 on script errors.")
    p.add_argument("machine", help="machine name, e.g. registration")
    p.add_argument("--script", required=True, type=Path, help="scenario (YAML or JSON)")
    p.add_argument("--json", action="store_true", help="the result as JSON")
    p.add_argument("--svg", help="also draw the machine with the path taken highlighted")
    p.add_argument("--machines", type=Path,
                   help="folder of machine files (default: MACHINES_PATH, else the shipped)")
    p.set_defaults(func=cmd_simulate)
