"""The pure cores are sans-I/O: importing one must not pull in asyncio, sockets or any of
our drivers (the import-direction rule: drivers depend on the cores, never the reverse).

Each core is imported in a fresh interpreter, so what it drags in through package
``__init__`` modules counts too (that is how ``hooks/callscript`` used to pull in the HTTP
client).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE_CORES = {
    # (engine.fsm.render is not here: it runs graphviz's ``dot`` through subprocess)
    "machine model, checks, compiler, registry, traces":
        "engine.fsm, engine.fsm.loader, engine.fsm.checks, engine.fsm.compile, "
        "engine.fsm.trace, engine.fsm.events",
    "SIP messages, transactions, dialogs, digest, SDP": "engine.sip, engine.sip.sdp",
    "drachtio wire framing": "engine.drachtio.wire",
    "RTPEngine ng encoding and instance selection":
        "engine.rtpengine.ng, engine.rtpengine.selection",
    "codec and media command building": "engine.media.codecs, engine.media.commands",
    "store codecs": "engine.store.codec",
    "CallScript validation and webhook payloads":
        "engine.hooks.callscript, engine.hooks.verbs, engine.hooks.payloads, "
        "engine.hooks.templates, engine.hooks.template_helpers",
    "configuration model and validation": "engine.config.model, engine.config.validate",
}

# Top-level modules that mean I/O, and our own asyncio drivers.
IO_MODULES = ("asyncio", "socket", "selectors", "ssl", "uvloop", "aiohttp", "httptools",
              "hiredis", "psycopg", "asyncpg")
DRIVERS = ("engine.hooks.http1", "engine.hooks.client", "engine.store.resp", "engine.store.redis",
           "engine.transport", "engine.drachtio.client", "engine.rtpengine.client",
           "engine.media.fetch", "engine.fsm.runtime", "engine.app")


@pytest.mark.parametrize("modules", PURE_CORES.values(), ids=PURE_CORES.keys())
def test_pure_core_imports_no_io_and_no_driver(modules: str) -> None:
    code = (
        f"import sys, {modules}\n"
        f"io, drivers = {IO_MODULES!r}, {DRIVERS!r}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in io\n"
        "             or any(m == d or m.startswith(d + '.') for d in drivers))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"importing {modules} pulled in: {out.stdout.strip()}"


def test_the_check_sees_a_driver() -> None:
    """The probe itself works: a driver module is reported."""
    code = ("import sys, engine.store.redis\n"
            "print('asyncio' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True"
