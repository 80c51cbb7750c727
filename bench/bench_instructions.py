"""Instructions per in-memory digest registration, counted by valgrind's callgrind.

CPU time moves with the machine (another tenant, frequency, the cache); the
number of instructions the interpreter executes hardly does: repeated runs of
the same code agree within about 1 % (PYTHONHASHSEED is fixed; what still varies
is time-dependent work such as nonce timestamps), whatever else the machine is
doing. That makes it the figure for an A/B of a small change to the
interpreter, the actions or the SIP codec, where the daemon's CPU per
registration varies by 5 % from run to run. It counts user-space instructions,
not time: the kernel's side of a syscall is not counted and a cache miss costs
no more than a hit, so it complements, never replaces, the daemon's CPU per
registration (bench_registration.py).

Runs ``bench_fsm.py --only-registrations`` (one digest registration = REGISTER →
401, REGISTER with credentials → 200, through the shipped machines with the
in-memory fakes of ``engine.simulate``) under callgrind for ``--small`` and
``--large`` registrations and prints the difference per registration, so the
start-up (imports, machine loading, warm-up) cancels out. Needs valgrind
(Debian package ``valgrind``, installed by scripts/setup.sh). About two minutes.

    .venv/bin/python bench/bench_instructions.py [--small 100] [--large 600]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def instructions(registrations: int) -> int:
    """Instructions callgrind counts for a whole ``bench_fsm.py`` run (start-up included);
    only the total it prints is read, so no profile file is kept."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, str(HERE / "bench_fsm.py"), "--only-registrations",
         "--registrations", str(registrations)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"})  # set and dict orders fixed: same count
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100, help="registrations in the first run")
    ap.add_argument("--large", type=int, default=600, help="registrations in the second run")
    args = ap.parse_args()
    if args.large <= args.small:
        ap.error("--large must be above --small")
    if shutil.which("valgrind") is None:
        raise SystemExit("bench_instructions needs valgrind (Debian package valgrind; "
                         "scripts/setup.sh installs it)")
    small = instructions(args.small)
    large = instructions(args.large)
    per = (large - small) / (args.large - args.small)
    print(f"python {sys.version.split()[0]}; callgrind, {args.large} minus {args.small} "
          f"registrations")
    print(f"in-memory digest registration: {per:,.0f} instructions each")


if __name__ == "__main__":
    main()
