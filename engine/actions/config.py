"""``config.*``: lookups in the configuration snapshot (domains, clients)."""

from __future__ import annotations

from typing import Any

from engine.actions._request import domain, from_user
from engine.config.model import PasswordClient, RegHookClient
from engine.fsm import guard


def client_match(ctx: Any) -> Any:
    """The RegHook/password/no-client decision for the From user (the party that
    authenticates, as in the original), cached."""
    match = getattr(ctx.vars, "client_match", None)
    if match is None:
        match = ctx.vars.client_match = ctx.services.config.get_reg_hook(
            domain(ctx), from_user(ctx))
    return match


@guard()
def domain_known(ctx: Any, p: Any) -> bool:
    """The Request-URI host is a configured domain."""
    return ctx.services.config.get_domain(domain(ctx)) is not None


@guard()
def client_has_reghook(ctx: Any, p: Any) -> bool:
    """The first client whose username glob matches the user authenticates by RegHook."""
    return isinstance(client_match(ctx), RegHookClient)


@guard()
def client_has_password(ctx: Any, p: Any) -> bool:
    """The first client whose username glob matches the user has a static password."""
    return isinstance(client_match(ctx), PasswordClient)
