"""Webhooks: the shared HTTP client, payload builders and the RegHook/CallHook/StatusHook callers.

Wiring (composition root)::

    client = HookClient.from_settings(settings)          # engine.ports.HookCaller
    breakers = Breakers(threshold=settings.hook_breaker_threshold,
                        cooldown=settings.hook_breaker_cooldown, display=safe_url)
    reghook = RegHook(client, timeout=settings.reghook_timeout, breakers=breakers)
    callhook = CallHook(client, timeout=settings.callhook_timeout, breakers=breakers)
    statushook = StatusHook.from_settings(client, settings)
    ...
    await statushook.close(); await client.close()       # shutdown, in that order
"""

from engine.hooks.callhook import CallHook, CallHookFailed, CallHookResult, CallScript
from engine.hooks.client import HookClient
from engine.hooks.reghook import Denied, Granted, HookFailed, RegHook, RegHookResult
from engine.hooks.statushook import StatusHook

__all__ = [
    "CallHook", "CallHookFailed", "CallHookResult", "CallScript", "Denied", "Granted",
    "HookClient", "HookFailed", "RegHook", "RegHookResult", "StatusHook",
]
