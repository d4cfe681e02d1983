"""Keyring, pseudonyms, field encryption with crypto-shredding, redaction, generalisation."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import stat
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.pii import (
    Detector,
    FieldCipher,
    GeneraliseError,
    Keyring,
    KeyringError,
    KeyringPermissionError,
    KeyShreddedError,
    Pseudonymiser,
    TokenError,
    UnknownKeyError,
    generalise,
    pseudonym_key_id,
    redact,
)


@pytest.fixture
def ring_path(tmp_path: Path) -> Path:
    return tmp_path / "keyring.json"


def _secrets_in(path: Path) -> list[str]:
    doc = orjson.loads(path.read_bytes())
    return [k["secret"] for k in doc["keys"] if "secret" in k]


# -- keyring ---------------------------------------------------------------------------


def test_generated_keyring_is_owner_only_and_loads_back(ring_path: Path) -> None:
    ring = Keyring.generate(ring_path)
    assert stat.S_IMODE(ring_path.stat().st_mode) == 0o600
    loaded = Keyring.load(ring_path)
    assert loaded.active_id == ring.active_id
    assert loaded.key_ids() == [ring.active_id]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o660])
def test_keyring_readable_or_writable_by_others_is_refused(ring_path: Path, mode: int) -> None:
    Keyring.generate(ring_path)
    os.chmod(ring_path, mode)
    with pytest.raises(KeyringPermissionError, match="chmod 600"):
        Keyring.load(ring_path)


def test_generate_refuses_to_overwrite_an_existing_keyring(ring_path: Path) -> None:
    Keyring.generate(ring_path)
    with pytest.raises(KeyringError, match="already exists"):
        Keyring.generate(ring_path)


def test_missing_keyring_error_says_how_to_create_one(ring_path: Path) -> None:
    with pytest.raises(KeyringError, match="fjordgate keys new"):
        Keyring.load(ring_path)


def test_malformed_keyring_error_names_the_file_but_no_secret(ring_path: Path) -> None:
    ring_path.write_bytes(b'{"version": 1, "active": "k1", "keys": [{"id": "k1", "secret": "!!"}]}')
    os.chmod(ring_path, 0o600)
    with pytest.raises(KeyringError) as caught:
        Keyring.load(ring_path)
    assert str(ring_path) in str(caught.value)
    assert "!!" not in str(caught.value)


def test_keys_never_appear_in_reprs_or_errors(ring_path: Path) -> None:
    ring = Keyring.generate(ring_path)
    secret = _secrets_in(ring_path)[0]
    cipher = FieldCipher(ring)
    shown = [repr(ring), repr(Pseudonymiser(ring)), repr(cipher), repr(ring.list())]
    with pytest.raises(TokenError) as caught:
        cipher.decrypt(
            cipher.encrypt("x", stream="s", field="f", event_id="1"),
            stream="s",
            field="f",
            event_id="2",
        )
    shown.append(str(caught.value))
    raw = base64.b64decode(secret)
    for text in shown:
        assert secret not in text
        assert raw.hex() not in text


def test_rotate_adds_an_active_key_and_keeps_the_old_one_for_decryption(ring_path: Path) -> None:
    ring = Keyring.generate(ring_path)
    cipher = FieldCipher(ring)
    old_token = cipher.encrypt("17. mai", stream="s", field="f", event_id="e")
    old_id = ring.active_id
    new_id = ring.rotate()
    assert new_id != old_id and ring.active_id == new_id
    reloaded = Keyring.load(ring_path)
    assert reloaded.active_id == new_id and set(reloaded.key_ids()) == {old_id, new_id}
    assert (
        FieldCipher(reloaded).decrypt(old_token, stream="s", field="f", event_id="e") == "17. mai"
    )
    assert (
        FieldCipher(reloaded)
        .encrypt("x", stream="s", field="f", event_id="e")
        .startswith(f"enc1:{new_id}:")
    )


def test_rotations_by_separate_holders_of_one_keyring_keep_every_key(ring_path: Path) -> None:
    first = Keyring.generate(ring_path)
    second = Keyring.load(ring_path)
    a = first.rotate()
    b = second.rotate()  # second had not seen `a`: it must re-read the file under the lock
    assert {a, b} <= set(Keyring.load(ring_path).key_ids())
    assert Keyring.load(ring_path).active_id == b


def test_concurrent_rotations_in_several_processes_lose_no_key(ring_path: Path) -> None:
    import subprocess
    import sys

    Keyring.generate(ring_path)
    script = (
        "import sys\nfrom gateway.pii import Keyring\n"
        "for _ in range(4):\n    Keyring.load(sys.argv[1]).rotate()\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", script, str(ring_path)]) for _ in range(3)]
    assert [w.wait() for w in workers] == [0, 0, 0]
    assert len(Keyring.load(ring_path).key_ids()) == 1 + 3 * 4


def test_the_active_key_cannot_be_shredded(ring_path: Path) -> None:
    ring = Keyring.generate(ring_path)
    with pytest.raises(KeyringError, match="rotate"):
        ring.shred(ring.active_id)


def test_shredding_a_key_makes_its_ciphertexts_unreadable(ring_path: Path) -> None:
    """Crypto-shredding: after the key is gone, nothing can decrypt what it protected."""
    ring = Keyring.generate(ring_path)
    cipher = FieldCipher(ring)
    token = cipher.encrypt("01019012345", stream="patients", field="fnr", event_id="ev-1")
    assert cipher.decrypt(token, stream="patients", field="fnr", event_id="ev-1") == "01019012345"
    shredded_id = ring.active_id
    old_secret = _secrets_in(ring_path)[0]

    ring.rotate()
    ring.shred(shredded_id)

    # The same cipher object, a fresh one, and a fresh load of the file all fail.
    for attempt in (cipher, FieldCipher(ring), FieldCipher(Keyring.load(ring_path))):
        with pytest.raises(KeyShreddedError, match="unrecoverable"):
            attempt.decrypt(token, stream="patients", field="fnr", event_id="ev-1")
    assert old_secret not in ring_path.read_text()
    assert [k.state for k in Keyring.load(ring_path).list()] == ["shredded", "active"]


def test_unknown_key_id_is_reported_as_such() -> None:
    token = FieldCipher(Keyring.ephemeral()).encrypt("x", stream="s", field="f", event_id="e")
    with pytest.raises(UnknownKeyError) as caught:
        FieldCipher(Keyring.ephemeral()).decrypt(token, stream="s", field="f", event_id="e")
    assert not isinstance(caught.value, KeyShreddedError)


# -- pseudonymisation ------------------------------------------------------------------

KEYRING_FOR_HMAC = Keyring.ephemeral()


def test_pseudonyms_are_deterministic_per_key_and_carry_the_key_id() -> None:
    ring = Keyring.ephemeral()
    first = Pseudonymiser(ring).pseudonymise("15108695088")
    again = Pseudonymiser(ring).pseudonymise("15108695088")
    assert first == again
    assert first.startswith(f"ps1:{ring.active_id}:")
    assert pseudonym_key_id(first) == ring.active_id
    assert "15108695088" not in first
    assert Pseudonymiser(ring).pseudonymise("15108695089") != first


@given(st.text(max_size=200), st.integers(min_value=0, max_value=3))
def test_pseudonym_is_hmac_sha256_of_the_value_with_or_without_the_cache(
    value: str, cache_size: int
) -> None:
    ring = KEYRING_FOR_HMAC
    pseudonymiser = Pseudonymiser(ring, cache_size=cache_size)
    key = ring.subkey(ring.active_id, b"pseudonym/v1")
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest()
    expected = f"ps1:{ring.active_id}:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert pseudonymiser.pseudonymise(value) == expected
    assert pseudonymiser.pseudonymise(value) == expected  # the second time from the cache
    assert pseudonymiser.pseudonymise(value + "x") != expected


def test_the_pseudonym_cache_is_bounded() -> None:
    pseudonymiser = Pseudonymiser(Keyring.ephemeral(), cache_size=3)
    tokens = {str(i): pseudonymiser.pseudonymise(str(i)) for i in range(10)}
    assert len(pseudonymiser._cache) == 3
    assert all(pseudonymiser.pseudonymise(v) == t for v, t in tokens.items())


def test_pseudonyms_differ_between_keys_so_they_are_not_an_unkeyed_hash() -> None:
    value = "15108695088"
    assert (
        Pseudonymiser(Keyring.ephemeral()).pseudonymise(value).split(":")[2]
        != Pseudonymiser(Keyring.ephemeral()).pseudonymise(value).split(":")[2]
    )


def test_a_retired_key_can_still_be_chosen_for_pseudonyms(ring_path: Path) -> None:
    ring = Keyring.generate(ring_path)
    old = ring.active_id
    before = Pseudonymiser(ring).pseudonymise("a@b.no")
    ring.rotate()
    assert Pseudonymiser(ring, key_id=old).pseudonymise("a@b.no") == before
    assert Pseudonymiser(ring).pseudonymise("a@b.no") != before


@pytest.mark.parametrize(
    ("pii_type", "forms"),
    [
        ("fodselsnummer", ["15108695088", "151086 95088", "151086-95088"]),
        ("kontonummer", ["1510.86.95088", "1510 86 95088", "15108695088"]),
        ("organisasjonsnummer", ["974760673", "974 760 673"]),
        ("iban", ["NO93 8601 1117 947", "no9386011117947"]),
        ("phone", ["+47 41 23 45 67", "0047 412 34 567", "41234567", "+4741234567"]),
        ("email", ["Kari.Nordmann@NAV.no", "kari.nordmann@nav.no "]),
        ("vehicle_plate", ["EL 12345", "el12345"]),
        ("ip_address", ["2001:DB8::1", "2001:db8:0:0:0:0:0:1"]),
    ],
)
def test_written_forms_of_one_identifier_share_a_pseudonym(pii_type: str, forms: list[str]) -> None:
    pseudonymiser = Pseudonymiser(Keyring.ephemeral())
    assert len({pseudonymiser.pseudonymise_identifier(f, pii_type) for f in forms}) == 1


def test_malformed_pseudonym_is_a_token_error() -> None:
    with pytest.raises(TokenError):
        pseudonym_key_id("sha256:abc")


# -- field encryption ------------------------------------------------------------------


def test_encryption_uses_a_fresh_nonce_each_time() -> None:
    cipher = FieldCipher(Keyring.ephemeral())
    tokens = {cipher.encrypt("same", stream="s", field="f", event_id="e") for _ in range(50)}
    assert len(tokens) == 50


@pytest.mark.parametrize(
    "context",
    [
        {"stream": "other", "field": "f", "event_id": "e"},
        {"stream": "s", "field": "other", "event_id": "e"},
        {"stream": "s", "field": "f", "event_id": "other"},
    ],
)
def test_ciphertext_is_bound_to_stream_field_and_event(context: dict[str, str]) -> None:
    cipher = FieldCipher(Keyring.ephemeral())
    token = cipher.encrypt("Ærlig Østby", stream="s", field="f", event_id="e")
    assert cipher.decrypt(token, stream="s", field="f", event_id="e") == "Ærlig Østby"
    with pytest.raises(TokenError, match="does not authenticate"):
        cipher.decrypt(token, **context)


def test_tampered_or_malformed_ciphertext_is_a_token_error() -> None:
    cipher = FieldCipher(Keyring.ephemeral())
    token = cipher.encrypt("x", stream="s", field="f", event_id="e")
    prefix, kid, body = token.split(":")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for bad in (
        f"{prefix}:{kid}:{flipped}",
        "enc1:",
        "plain",
        f"enc1:{kid}:AAAA",
        f"enc1:{kid}:@@",
    ):
        with pytest.raises(TokenError):
            cipher.decrypt(bad, stream="s", field="f", event_id="e")


# -- redaction and generalisation -------------------------------------------------------


def test_redact_whole_value_or_only_found_spans() -> None:
    text = "Ring Kari på 41234567 om fnr 15108695088."
    assert redact(text) == "[REDACTED]"
    assert redact(text, Detector().scan(text)) == "Ring Kari på [phone] om fnr [fodselsnummer]."
    assert redact(text, Detector().scan(text), placeholder="***") == "Ring Kari på *** om fnr ***."


@pytest.mark.parametrize(
    ("value", "year"),
    [
        ("1990-05-17", 1990),
        ("17.05.1990", 1990),
        (dt.date(1961, 2, 3), 1961),
        ("2001-12-31T10:00Z", 2001),
    ],
)
def test_birth_date_generalises_to_its_year(value: object, year: int) -> None:
    assert generalise(value, "birth_date") == year


@pytest.mark.parametrize("value", ["1990-02-30", "17/05/1990", "i fjor", 19900517])
def test_unreadable_birth_date_is_refused_without_echoing_it(value: object) -> None:
    with pytest.raises(GeneraliseError) as caught:
        generalise(value, "birth_date")
    assert str(value) not in str(caught.value)


def test_ip_address_generalises_to_its_network_prefix() -> None:
    assert generalise("192.0.2.177", "ip_address") == "192.0.2.0/24"
    assert generalise("192.0.2.177", "ip_address", ipv4_prefix=16) == "192.0.0.0/16"
    assert generalise("2001:db8:abcd:12::1", "ip_address") == "2001:db8:abcd::/48"
    with pytest.raises(GeneraliseError):
        generalise("999.1.1.1", "ip_address")


def test_coordinates_generalise_to_the_grid_cell_in_the_same_shape() -> None:
    assert generalise("59.91394, 10.75225", "coordinates") == "59.91,10.75"
    assert generalise((69.6496, 18.956), "coordinates", grid_degrees=0.1) == (69.6, 18.9)
    assert generalise({"lat": -33.8688, "lon": 151.2093, "acc": 5}, "coordinates") == {
        "lat": -33.87,
        "lon": 151.2,
        "acc": 5,
    }
    with pytest.raises(GeneraliseError):
        generalise("91.0,10.0", "coordinates")


def test_keyring_log_events_name_key_ids_and_never_a_secret(ring_path: Path) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as events:
        ring = Keyring.generate(ring_path)
        first = ring.active_id
        ring.rotate()
        secrets_seen = _secrets_in(ring_path)  # both keys, before one is shredded
        ring.shred(first)
    assert len(secrets_seen) == 2
    assert [e["event"] for e in events] == [
        "keyring_created",
        "keyring_rotated",
        "keyring_key_shredded",
    ]
    logged = repr(events)
    assert first in logged
    for secret in secrets_seen:
        assert secret not in logged
        assert base64.b64decode(secret).hex() not in logged
