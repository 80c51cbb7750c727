"""Model rules and snapshot lookups (engine/config/model.py)."""

from __future__ import annotations

import pytest

from engine.config.matching import Dialplan
from engine.config.model import (
    NO_CLIENT,
    Client,
    ConfigSnapshot,
    Domain,
    Outbound,
    PasswordClient,
    RegHookClient,
    RegistrationTarget,
    Trunk,
    js_number,
    loose_equal,
)

SECRETS = ("s3cret-auth", "s3cret-reg", "s3cret-out", "s3cret-client")


def trunk(**kw: object) -> Trunk:
    kw.setdefault("id", 1)
    return Trunk(**kw)  # type: ignore[arg-type]


REG = {"auth_type": "registration", "reg_host": "sip.itsp.example", "reg_user": "alice",
       "reg_pass": "pw"}
OUT = {"outbound": Outbound("sip.carrier.example", "bob", "pw2")}

REGISTRATION_RULES = [
    ("authType registration + reg*", REG, RegistrationTarget("sip.itsp.example", "alice", "pw",
                                                             "reg")),
    ("outbound credentials", OUT, RegistrationTarget("sip.carrier.example", "bob", "pw2",
                                                     "outbound")),
    ("reg* win over outbound", {**REG, **OUT}, RegistrationTarget("sip.itsp.example", "alice",
                                                                   "pw", "reg")),
    ("authentication trunk with outbound credentials", {"auth_type": "authentication", **OUT},
     RegistrationTarget("sip.carrier.example", "bob", "pw2", "outbound")),
    ("register false opts out", {**REG, **OUT, "register": False}, None),
    ("reg* without authType registration", {k: v for k, v in REG.items() if k != "auth_type"},
     None),
    ("outbound host only", {"outbound": Outbound("sip.carrier.example")}, None),
    ("outbound user without password", {"outbound": Outbound("h", "bob")}, None),
    ("outbound credentials without host", {"outbound": Outbound(None, "bob", "pw")}, None),
    ("nothing", {}, None),
]


@pytest.mark.parametrize(("fields", "expected"), [r[1:] for r in REGISTRATION_RULES],
                         ids=[r[0] for r in REGISTRATION_RULES])
def test_registration_rule(fields: dict[str, object], expected: RegistrationTarget | None) -> None:
    t = trunk(**fields)
    assert t.registration == expected
    assert t.needs_registration is (expected is not None)


def test_registration_target_password_is_compared() -> None:
    # the password is hidden from repr but still part of equality
    assert RegistrationTarget("h", "u", "a") != RegistrationTarget("h", "u", "b")


def test_name_and_label() -> None:
    named = trunk(id=1, name="carrier")
    labelled = trunk(id=2, label="itsp")
    both = trunk(id=3, name="n3", label="l3")
    assert (named.display_name, labelled.display_name, both.display_name) == ("carrier", "itsp",
                                                                             "n3")
    dom = Domain("d", 1, trunks=(named, labelled, both))
    assert dom.trunk_by_name("carrier") is named
    assert dom.trunk_by_name("itsp") is labelled
    assert dom.trunk_by_name("n3") is both and dom.trunk_by_name("l3") is both
    assert dom.trunk_by_name("nope") is None and dom.trunk_by_name(None) is None


def test_public_view_has_no_secrets() -> None:
    t = trunk(id=7, label="itsp", auth_type="authentication", auth_user="u",
              auth_pass="s3cret-auth", outbound=Outbound("h", "u", "s3cret-out"))
    assert t.public_view() == {"id": 7, "name": "itsp"}


def test_secrets_not_in_repr() -> None:
    t = trunk(auth_type="authentication", auth_user="u", auth_pass="s3cret-auth",
              reg_host="h", reg_user="u", reg_pass="s3cret-reg",
              outbound=Outbound("h", "u", "s3cret-out"))
    c = Client("1000", password="s3cret-client")
    dom = Domain("d", 1, clients=(c,), trunks=(t,))
    snap = ConfigSnapshot({"d": dom})
    texts = [repr(t), repr(c), repr(dom), repr(snap), repr(t.registration), repr(t.outbound),
             str(t), repr(dom.reg_hook("1000"))]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.parametrize(("value", "expected"), [
    (1, 1.0), ("1", 1.0), (" 1 ", 1.0), ("01", 1.0), ("1.0", 1.0), ("", 0.0), ("0x10", 16.0),
    ("1e2", 100.0), ("abc", None), ("1a", None), (None, None), (True, 1.0), (2.5, 2.5),
    ("Infinity", float("inf")),
])
def test_js_number(value: object, expected: float | None) -> None:
    assert js_number(value) == expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("1", 1, True), (1, "1", True), ("01", 1, True), ("01", "1", False), ("x", "x", True),
    ("x", 1, False), (2, 2, True),
])
def test_loose_equal(a: object, b: object, expected: bool) -> None:
    assert loose_equal(a, b) is expected


def test_trunk_by_id_is_loose_and_first_wins() -> None:
    t1, t2, t3, t4 = trunk(id=1), trunk(id="2"), trunk(id="x"), trunk(id="03")
    dom = Domain("d", 1, trunks=(t1, t2, t3, t4))
    cases = [("1", t1), (1, t1), (1.0, t1), (2, t2), ("2", t2), ("x", t3), (3, t4), ("03", t4),
             ("3", None), (True, None), (None, None), (9, None)]
    for probe, expected in cases:
        assert dom.trunk_by_id(probe) is expected, probe
    # the first trunk in array order wins when a string and a number are loosely equal
    a, b = trunk(id="5"), trunk(id=5)
    assert Domain("d", 1, trunks=(a, b)).trunk_by_id(5) is a
    assert Domain("d", 1, trunks=(b, a)).trunk_by_id("5") is b


def test_reg_hook_results() -> None:
    hook = Client("2*", reghook="http://h/reg")
    local = Client("1000", password="pw", dialplan=Dialplan({"*": "http://h/c"}))
    dom = Domain("d", 1, clients=(local, hook, Client("*", password="catchall")))
    assert dom.reg_hook("1000") == PasswordClient(local)
    assert dom.reg_hook("2001") == RegHookClient("http://h/reg", hook)
    assert dom.reg_hook("3").client.password == "catchall"  # type: ignore[union-attr]
    assert Domain("d", 1, clients=(local,)).reg_hook("3") is NO_CLIENT


def test_trunk_by_ip_first_trunk() -> None:
    a = trunk(id=1, inbound=("10.0.0.0/8",))
    b = trunk(id=2, inbound=("10.1.0.0/16", "2001:db8::/32"))
    dom = Domain("d", 1, trunks=(a, b))
    assert dom.trunk_by_ip("10.1.2.3") is a
    assert dom.trunk_by_ip("2001:db8::1") is b
    assert dom.trunk_by_ip("192.0.2.1") is None


def test_auth_and_reg_trunks() -> None:
    auth = trunk(id=1, auth_type="authentication", auth_user="branch", auth_pass="pw")
    half = trunk(id=2, auth_type="authentication", auth_user="x")  # unusable: no password
    reg = trunk(id=3, **REG)
    out = trunk(id=4, **OUT)
    dom = Domain("d", 1, trunks=(auth, half, reg, out))
    assert dom.auth_trunks == (auth,)
    assert dom.reg_trunks == (reg, out)
    assert dom.auth_trunks_for("branch") == (auth,)
    assert dom.auth_trunks_for("other") == ()


def test_snapshot_lookups() -> None:
    t = trunk(id=1, name="carrier", inbound=("203.0.113.0/24",), **REG)
    c = Client("1000", password="pw")
    snap = ConfigSnapshot({"pbx.example": Domain("pbx.example", 1, (c,), (t,)),
                           "[2001:db8::1]": Domain("[2001:db8::1]", 2)})
    assert snap.list_domains() == ["pbx.example", "[2001:db8::1]"]
    dom = snap.get_domain("pbx.example")
    assert dom is not None and dom.id == 1
    assert snap.get_domain("PBX.Example") is dom  # host names are case-insensitive
    assert snap.get_domain("[2001:DB8::1]") is snap.get_domain("[2001:db8::1]")
    assert snap.get_domain("other.example") is None and snap.get_domain(None) is None
    assert snap.get_reg_hook("pbx.example", "1000") == PasswordClient(c)
    assert snap.get_trunk_by_ip("pbx.example", "203.0.113.5") is t
    assert snap.get_trunk_by_id("pbx.example", "1") is t
    assert snap.get_trunk_by_name("pbx.example", "carrier") is t
    assert snap.get_auth_trunks("pbx.example") == ()
    assert snap.get_reg_trunks("pbx.example") == (t,)
    # unknown domains never throw (the original did)
    assert snap.get_reg_hook("x", "1000") is NO_CLIENT
    assert snap.get_trunk_by_ip("x", "203.0.113.5") is None
    assert snap.get_trunk_by_id("x", 1) is None
    assert snap.get_trunk_by_name("x", "carrier") is None
    assert snap.get_auth_trunks("x") == () and snap.get_reg_trunks("x") == ()
    assert snap.counts() == {"domains": 2, "clients": 1, "trunks": 1, "reg_trunks": 1}


def test_snapshot_is_immutable() -> None:
    source = {"d": Domain("d", 1)}
    snap = ConfigSnapshot(source)
    source["e"] = Domain("e", 2)
    assert snap.list_domains() == ["d"]
    with pytest.raises(TypeError):
        snap.domains["x"] = Domain("x", 3)  # type: ignore[index]
    with pytest.raises(AttributeError):
        snap.source = "other"  # type: ignore[misc]


def test_bad_cidr_in_model_is_an_error() -> None:
    with pytest.raises(ValueError):
        trunk(inbound=("10.0.0.300",))
