"""The models and the YAML reading: YAML 1.2 booleans (NO is Norway), anchors, canonical hash."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from policies import Policy, load_policy_text, read_policy_data, semantic_problems
from tests.policies.conftest import BASE_POLICY, PACKS


def test_unquoted_no_is_norway_not_false() -> None:
    policy = load_policy_text(BASE_POLICY.replace('home: "NO"', "home: NO"))
    assert policy.jurisdiction.home == "NO"


def test_yaml_1_1_yes_no_on_off_stay_text_and_true_false_are_booleans() -> None:
    policy = load_policy_text(
        BASE_POLICY.replace("name: test-policy", "name: off").replace(
            "required: true", "required: True"
        )
    )
    assert policy.metadata.name == "off"
    assert policy.streams["traffic"].fields["region"].required is True


def test_dates_stay_text() -> None:
    policy = load_policy_text(BASE_POLICY.replace('version: "1"', "version: 2024-05-01"))
    assert policy.metadata.version == "2024-05-01"


def test_anchors_and_merge_keys_share_field_definitions() -> None:
    text = BASE_POLICY.replace(
        "      plate: {pii: vehicle_plate, action: pseudonymise}",
        "      plate: &pseudo {pii: vehicle_plate, action: pseudonymise, key_id: k1}\n"
        "      trailer_plate: *pseudo\n"
        "      owner_plate: {<<: *pseudo, key_id: k2}",
    )
    fields = load_policy_text(text).streams["traffic"].fields
    assert fields["trailer_plate"] == fields["plate"]
    assert fields["owner_plate"].key_id == "k2"
    assert fields["owner_plate"].action == "pseudonymise"


def test_content_hash_is_sha256_of_the_canonical_form() -> None:
    import hashlib

    policy = load_policy_text(BASE_POLICY)
    assert policy.content_hash == "sha256:" + hashlib.sha256(policy.canonical()).hexdigest()
    assert b" " not in policy.canonical().split(b'"description"')[0]


def test_writing_a_default_explicitly_does_not_change_the_hash() -> None:
    explicit = BASE_POLICY.replace(
        "    key: region\n", "    key: region\n    undeclared_fields: drop\n"
    )
    assert load_policy_text(explicit).content_hash == load_policy_text(BASE_POLICY).content_hash


def test_policy_model_validate_checks_contradictions_too() -> None:
    data = read_policy_data(PACKS / "norway-strict.yaml")
    data["streams"]["norway-traffic"]["key"] = "driver"
    with pytest.raises(ValidationError) as caught:
        Policy.model_validate(data)
    assert "key field 'driver' is not declared" in str(caught.value)


def test_semantic_problems_is_empty_for_the_packs(
    strict_policy: Policy, eea_policy: Policy
) -> None:
    assert semantic_problems(strict_policy) == []
    assert semantic_problems(eea_policy) == []


def test_policy_is_immutable(strict_policy: Policy) -> None:
    with pytest.raises(ValidationError):
        strict_policy.mode = "observe"  # type: ignore[misc]


def test_source_names_the_file(strict_policy: Policy) -> None:
    assert strict_policy.source is not None and strict_policy.source.endswith("norway-strict.yaml")
