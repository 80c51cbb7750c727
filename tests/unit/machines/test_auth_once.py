"""The digest authentication flow exists once: only machines/digest_auth.yaml checks
credentials, and the registration and call machines spawn it (``auth.authenticate``)."""

from __future__ import annotations

from collections.abc import Iterator

from engine.fsm.definition import CallRef, MachineDef
from engine.fsm.loader import load_file, machine_files
from engine.paths import machines_dir
from engine.vocabulary import load_vocabulary

load_vocabulary()

# every step of the authentication sub-flow (guards and actions)
AUTH_STEPS = frozenset({
    "auth.has_credentials", "auth.malformed", "auth.nonce_is", "auth.mark_stale",
    "auth.challenge", "auth.verify_password", "auth.verify_trunk_password",
    "auth.advance_nonce_count", "abuse.source_exempt", "abuse.check", "abuse.record_failure",
    "config.client_has_reghook", "config.client_has_password", "trunk.auth_user_matches",
    "hooks.reghook", "hooks.blacklisted",
})


def refs(defn: MachineDef) -> Iterator[CallRef]:
    for state in defn.states.values():
        yield from state.entry
        yield from state.exit
    for t in defn.all_transitions():
        yield from t.guards
        yield from t.actions


def machines() -> dict[str, MachineDef]:
    out = {}
    for path in machine_files(machines_dir()):
        defn = load_file(path).definition
        assert defn is not None, path
        out[defn.name] = defn
    return out


def test_only_digest_auth_checks_credentials() -> None:
    defs = machines()
    assert {r.name for r in refs(defs.pop("digest_auth"))} >= AUTH_STEPS
    for name, defn in defs.items():
        used = {r.name for r in refs(defn)} & AUTH_STEPS
        assert not used, f"{name} repeats authentication steps: {sorted(used)}"


def test_registration_and_calls_spawn_it_with_their_challenge() -> None:
    defs = machines()
    for name, trunks in (("registration", False), ("inbound_call", True)):
        (ref,) = [r for r in refs(defs[name]) if r.name == "auth.authenticate"]
        assert ref.params.get("challenge") == 401  # a UAS challenges with 401 (spec §2.1)
        assert bool(ref.params.get("trunks")) is trunks
        outcomes = set(defs[name].states["authenticating"].handled_events)
        assert outcomes == {"auth.granted", "auth.challenged", "auth.rejected", "auth.failed"}
