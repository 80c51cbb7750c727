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

# Deliberately no re-exports: importing ``engine.hooks.callscript`` (pure validation) must not
# pull in the HTTP driver (``engine.hooks.http1``) through this package (tests/unit/test_purity.py).
