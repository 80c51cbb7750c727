"""Root conftest: every module in tests/fixtures/ is a pytest plugin.

Service fixtures (Redis, RTPEngine, PostgreSQL, the daemon, SIPp helpers) live
there, one module per service, so they can be added without touching this file.
"""

from pathlib import Path

# procs first: the other fixture modules import it, and pytest can only rewrite the
# asserts of a plugin module it imports itself.
pytest_plugins = sorted(
    (f"tests.fixtures.{p.stem}"
     for p in (Path(__file__).parent / "fixtures").glob("*.py")
     if not p.stem.startswith("_")),
    key=lambda name: (not name.endswith(".procs"), name),
)
