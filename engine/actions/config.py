"""``config.*``: lookups in the configuration snapshot (domains, clients)."""

from __future__ import annotations

from engine.actions._context import Ctx
from engine.actions._request import domain, from_user
from engine.config.model import PasswordClient, RegHookClient, RegHookResult
from engine.fsm import guard
from engine.machine_vars import DigestAuthVars, RequestVars


def client_match(ctx: Ctx[DigestAuthVars]) -> RegHookResult:
    """The RegHook/password/no-client decision for the From user (the party that
    authenticates, as in the original), cached."""
    match = ctx.vars.client_match
    if match is None:
        match = ctx.vars.client_match = ctx.services.config.get_reg_hook(
            domain(ctx), from_user(ctx))
    return match


@guard()
def domain_known(ctx: Ctx[RequestVars], p: object) -> bool:
    """The Request-URI host is a configured domain."""
    return ctx.services.config.get_domain(domain(ctx)) is not None


@guard()
def client_has_reghook(ctx: Ctx[DigestAuthVars], p: object) -> bool:
    """The first client whose username glob matches the user authenticates by RegHook."""
    return isinstance(client_match(ctx), RegHookClient)


@guard()
def client_has_password(ctx: Ctx[DigestAuthVars], p: object) -> bool:
    """The first client whose username glob matches the user has a static password."""
    return isinstance(client_match(ctx), PasswordClient)
