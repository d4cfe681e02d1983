"""fjordgate's own pseudonyms and ciphertexts are not reported as personal data."""

from __future__ import annotations

from gateway.pii import Detector, FieldCipher, Keyring, Pseudonymiser


def test_a_pseudonym_whose_key_id_looks_like_a_phone_number_is_not_reported() -> None:
    ring = Keyring.ephemeral()
    token = Pseudonymiser(ring).pseudonymise("01019012345")
    # A key id of 12 hex digits can be all digits: "k" + "49123456" + "7890".
    looks_like_phone = "ps1:k491234567890:" + token.split(":")[2]
    assert Detector().scan("ring 91234567") != []  # the same digits alone are a phone
    assert Detector().scan(looks_like_phone) == []
    assert Detector().scan_json({"driver_id": looks_like_phone}) == []


def test_a_ciphertext_is_not_reported() -> None:
    ring = Keyring.ephemeral()
    token = FieldCipher(ring).encrypt("91234567", stream="s", field="f", event_id="e1")
    assert Detector().scan(f"note: {token}") == []


def test_text_only_shaped_like_a_token_is_still_scanned() -> None:
    # A short body is no token of ours: the phone number in it is reported.
    findings = Detector().scan("ps1:k491234567890:abc 91234567")
    assert [f.type for f in findings] == ["phone"]
