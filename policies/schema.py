"""The JSON Schema of the policy language, for editors (autocomplete, inline errors)."""

from __future__ import annotations

from typing import Any

from policies.models import Policy

SCHEMA_ID = "https://fjordgate.invalid/schemas/policy.json"


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a policy file."""
    schema = Policy.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "fjordgate policy"
    schema["description"] = (
        "A fjordgate policy: streams (fields, PII classes, actions), jurisdiction, egress and "
        'placement rules. Quote country codes such as "NO": YAML 1.1 editors read NO as false.'
    )
    return schema
