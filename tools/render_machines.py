"""Render every shipped machine into docs/diagrams/ (SVG), for reading next to the YAML.

    python tools/render_machines.py [--format svg|png] [--out docs/diagrams]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.fsm.loader import load_file, machine_files
from engine.fsm.render import render
from engine.paths import machines_dir
from engine.vocabulary import load_vocabulary


def main() -> int:
    load_vocabulary()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", default="svg", choices=("svg", "png", "dot"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent
                    / "docs" / "diagrams")
    ap.add_argument("paths", nargs="*", type=Path, help="machine files (default: shipped)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in machine_files(*(args.paths or [machines_dir()])):
        result = load_file(path)
        if result.definition is None or result.errors:
            for d in result.diagnostics:
                print(d, file=sys.stderr)
            failed += 1
            continue
        out = args.out / f"{result.definition.name}.{args.format}"
        render(result.definition, out, args.format)
        print(out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
