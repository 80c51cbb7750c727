"""Built-in actions, guards and delays, grouped by port (one module per namespace).

Importing this package registers everything into ``engine.fsm.REGISTRY``; the
module name is the namespace (``engine/actions/sip.py`` → ``sip.reply``). The
dispatcher is imported too: it declares the events it delivers (``inputs:``).
"""

from importlib import import_module

_MODULES = ("log", "timer", "sip", "config", "auth", "hooks", "reg", "store", "trunk", "call",
            "status", "session", "verb", "media", "leg", "connect", "relay", "trunkreg", "transfer",
            "abuse")


def load_all() -> None:
    import_module("engine.dispatch")
    import_module("engine.trunks")
    import_module("engine.api.events")
    for name in _MODULES:
        import_module(f"engine.actions.{name}")


load_all()
