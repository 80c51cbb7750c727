"""HMAC-SHA256 webhook signatures: known answers, tolerance, tampering, the shell recipe."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import subprocess

import pytest

from engine.hooks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signature_headers,
    verify,
)

SECRET = "s3cr3t"
BODY = b'{"callId":"abc","event":"connect:start"}'
TS = 1767225600


def test_sign_known_answer() -> None:
    # Literal vectors (cross-checked with `openssl dgst -sha256 -hmac`) so that any
    # change of the scheme — separator, encoding, prefix — is caught.
    assert sign("key", 0, b"") == (
        "v1=85841b4efc3cd7776c3c8f9b7cca9e281c550e5d19889d78e9e669c6337f000d")
    assert sign(SECRET, TS, BODY) == (
        "v1=6165b790595a92f1009ec6e2bf0f13d10d2ad981261b39a3a4519e39d7cf9ba6")
    expected = hmac.new(b"s3cr3t", b"1767225600." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, TS, BODY) == "v1=" + expected


def test_signature_headers_shape() -> None:
    headers = signature_headers(SECRET, TS, BODY)
    assert headers[TIMESTAMP_HEADER] == "1767225600"
    assert headers[SIGNATURE_HEADER].startswith("v1=")
    assert len(headers[SIGNATURE_HEADER]) == 3 + 64


def test_verify_accepts_within_tolerance_and_rejects_outside() -> None:
    headers = signature_headers(SECRET, TS, BODY)
    assert verify(SECRET, headers, BODY, now=TS)
    assert verify(SECRET, headers, BODY, now=TS + 300)
    assert verify(SECRET, headers, BODY, now=TS - 300)
    assert not verify(SECRET, headers, BODY, now=TS + 301)
    assert not verify(SECRET, headers, BODY, now=TS - 301)
    assert verify(SECRET, headers, BODY, tolerance=10, now=TS + 10)
    assert not verify(SECRET, headers, BODY, tolerance=10, now=TS + 11)


def test_verify_rejects_tampering_wrong_secret_and_missing_headers() -> None:
    headers = signature_headers(SECRET, TS, BODY)
    assert not verify(SECRET, headers, BODY + b" ", now=TS)
    assert not verify("other", headers, BODY, now=TS)
    shifted = {**headers, TIMESTAMP_HEADER: str(TS + 1)}
    assert not verify(SECRET, shifted, BODY, now=TS)
    assert not verify(SECRET, {SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}, BODY, now=TS)
    assert not verify(SECRET, {TIMESTAMP_HEADER: str(TS)}, BODY, now=TS)
    assert not verify(SECRET, {**headers, TIMESTAMP_HEADER: "abc"}, BODY, now=TS)
    assert not verify(SECRET, {**headers, SIGNATURE_HEADER: "v2=" + "0" * 64}, BODY, now=TS)


def test_verify_header_names_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in signature_headers(SECRET, TS, BODY).items()}
    assert verify(SECRET, headers, BODY, now=TS)


def test_verify_uses_wall_clock_by_default() -> None:
    import time

    now = int(time.time())
    assert verify(SECRET, signature_headers(SECRET, now, BODY), BODY)
    assert not verify(SECRET, signature_headers(SECRET, now - 3600, BODY), BODY)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_shell_recipe_from_docstring_agrees(tmp_path) -> None:
    (tmp_path / "body.json").write_bytes(BODY)
    headers = signature_headers(SECRET, TS, BODY)
    script = (
        'expected="v1=$( { printf \'%s.\' "$TS"; cat body.json; } '
        '| openssl dgst -sha256 -hmac "$SECRET" -r | cut -d\' \' -f1 )"\n'
        '[ "$expected" = "$SIG" ] && echo valid\n'
    )
    out = subprocess.run(
        ["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False,
        env={"TS": headers[TIMESTAMP_HEADER], "SIG": headers[SIGNATURE_HEADER],
             "SECRET": SECRET, "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "valid", out.stderr


def test_python_recipe_from_docstring_agrees() -> None:
    import textwrap
    import time

    import engine.hooks.signing as module

    doc = module.__doc__ or ""
    start = doc.index("    import hashlib")
    end = doc.index("Verifying in a shell")
    namespace: dict[str, object] = {}
    exec(textwrap.dedent(doc[start:end]), namespace)  # the documented receiver code
    recipe = namespace["verify"]
    now = int(time.time())
    headers = signature_headers(SECRET, now, BODY)
    assert recipe(SECRET, headers, BODY)  # type: ignore[operator]
    assert not recipe(SECRET, headers, BODY + b"x")  # type: ignore[operator]
    assert not recipe(SECRET, signature_headers(SECRET, now - 301, BODY), BODY)  # type: ignore[operator]
