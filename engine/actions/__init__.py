"""Built-in actions, guards and delays, grouped by port (one module per namespace).

Importing this package registers everything into ``engine.fsm.REGISTRY``; the
module name is the namespace (``engine/actions/sip.py`` → ``sip.reply``).
"""

from importlib import import_module

_MODULES = ("log", "timer")


def load_all() -> None:
    for name in _MODULES:
        import_module(f"engine.actions.{name}")


load_all()
