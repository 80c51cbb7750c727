"""The SIP core and the drachtio wire layer are sans-I/O: importing them must not pull in
asyncio or sockets (the import-direction rule: drivers depend on them, never the reverse)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules", ["engine.sip, engine.sip.sdp", "engine.drachtio.wire"])
def test_pure_layers_import_no_io_modules(modules: str) -> None:
    code = (
        f"import sys, {modules}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncio', 'socket', 'selectors', 'ssl', 'uvloop'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
