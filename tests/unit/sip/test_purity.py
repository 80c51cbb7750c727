"""The SIP core is sans-I/O: importing it must not pull in asyncio or sockets."""

from __future__ import annotations

import subprocess
import sys


def test_engine_sip_imports_no_io_modules() -> None:
    code = (
        "import sys, engine.sip, engine.sip.sdp\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncio', 'socket', 'selectors', 'ssl', 'uvloop'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
