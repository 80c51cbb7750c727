"""The supervisor's signal handling on real processes and real signals (``WORKERS=N``).

Each case runs in a fresh interpreter: the supervisor blocks the signals it takes with
``sigtimedwait``, and a process-directed signal would otherwise be delivered to
whichever thread of the pytest process does not block it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Two workers that report ready back to back, both before the supervisor looks: the
# signals are pending together, which is the case a standard signal loses (merged into
# one, one worker never counted ready, "workers ready" never logged).
BOTH_READY_AT_ONCE = textwrap.dedent("""
    import signal, subprocess, sys
    from types import SimpleNamespace
    from engine.supervisor import HANDLED_SIGNALS, WORKER_READY_SIGNAL, Supervisor

    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    reported = []
    sup = Supervisor(SimpleNamespace(workers=2, instance_id="t"),
                     on_ready=lambda: reported.append(True))
    worker = ("import os, sys, time; os.kill(os.getppid(), %d); "
              "sys.stdout.write('sent\\\\n'); sys.stdout.flush(); time.sleep(60)"
              % int(WORKER_READY_SIGNAL))
    for w in sup.workers:
        w.proc = subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE)
    try:
        for w in sup.workers:
            assert w.proc.stdout.readline() == b"sent\\n"
        for _ in range(4):  # four turns of the loop; SIGCHLD cannot come, none exited
            sup.take_signal(0.2)
            sup._check_ready()
        print("ready", [w.ready for w in sup.workers], "reported", len(reported))
    finally:
        for w in sup.workers:
            w.proc.kill()
            w.proc.wait()
""")


def test_workers_ready_at_the_same_moment_are_each_counted() -> None:
    done = subprocess.run([sys.executable, "-c", BOTH_READY_AT_ONCE], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ready [True, True] reported 1"
