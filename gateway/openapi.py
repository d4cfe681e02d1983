"""The OpenAPI 3.1 document of a gateway, generated from the policy in force.

Each declared stream gets its own path with the event schema its fields
declare, so clients (and schemathesis) see exactly what will be accepted.
"""

from __future__ import annotations

from typing import Any

from gateway import __version__

_JSON_TYPES = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "object": {"type": "object"},
    "array": {"type": "array"},
    "any": {},
}

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

_RESULT = {
    "type": "object",
    "required": ["index", "status"],
    "properties": {
        "index": {"type": "integer"},
        "event_id": {"type": ["string", "null"]},
        "status": {"enum": ["accepted", "duplicate", "rejected"]},
        "transformed": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "action": {"type": "string"}},
            },
        },
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
        },
    },
}

_BATCH_RESULT = {
    "type": "object",
    "required": ["stream", "policy", "accepted", "duplicates", "rejected", "results"],
    "properties": {
        "stream": {"type": "string"},
        "policy": {"type": "string", "description": "Content hash of the policy in force."},
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "rejected": {"type": "integer"},
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/EventResult"}},
    },
}


def _event_time_schema(formats: list[str]) -> dict[str, Any]:
    options: list[dict[str, Any]] = []
    if "iso8601" in formats:
        options.append({"type": "string", "format": "date-time"})
    # The engine accepts epoch times in the years 2000 to 2100.
    if "epoch_ms" in formats:
        options.append(
            {"type": "integer", "minimum": 946_684_800_000, "maximum": 4_102_444_800_000}
        )
    if "epoch_s" in formats:
        options.append({"type": "number", "minimum": 946_684_800, "maximum": 4_102_444_800})
    return options[0] if len(options) == 1 else {"anyOf": options}


def event_schema(stream: Any, *, event_id_field: str, max_items: int) -> dict[str, Any]:
    """JSON Schema of one event of a declared stream."""
    properties: dict[str, Any] = {
        event_id_field: {
            "anyOf": [{"type": "string", "minLength": 1, "maxLength": 200}, {"type": "integer"}],
            "description": "Idempotency key: a retried event with the same id is not "
            "published twice.",
        }
    }
    required: list[str] = []
    time_field = stream.event_time.field if stream.event_time is not None else None
    for path, rule in stream.fields.items():
        if "." in path:
            continue  # nested paths: described by their top-level object
        schema = dict(_JSON_TYPES.get(rule.type, {}))
        if path == time_field:
            schema = _event_time_schema(list(stream.event_time.formats))
        if rule.description:
            schema["description"] = rule.description
        schema["x-pii"] = rule.pii
        schema["x-action"] = rule.action
        properties[path] = schema
        if rule.required or (path == time_field and stream.event_time.required):
            required.append(path)
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(set(required)),
        "additionalProperties": stream.undeclared_fields != "deny",
    }


def openapi_document(
    policy: Any, *, event_id_field: str = "event_id", max_items: int = 10_000
) -> dict[str, Any]:
    """The whole OpenAPI document for `policy`'s streams."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Error": _ERROR,
        "EventResult": _RESULT,
        "BatchResult": _BATCH_RESULT,
    }
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    retry_after = {
        "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
    }
    for name, stream in policy.streams.items():
        schema_name = "Event_" + "".join(c if c.isalnum() else "_" for c in name)
        schemas[schema_name] = event_schema(
            stream, event_id_field=event_id_field, max_items=max_items
        )
        ref = {"$ref": f"#/components/schemas/{schema_name}"}
        paths[f"/v1/streams/{name}/events"] = {
            "post": {
                "operationId": f"post_{schema_name}",
                "summary": f"Send a batch of {name} events",
                "description": (stream.description or "")
                + "\n\nEvery event is validated, tagged, decided, audited (durably) and "
                "published before the answer; 2xx means kept.",
                "security": [{"ApiKey": []}, {"Bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": ref,
                                "minItems": 1,
                                "maxItems": max_items,
                            }
                        },
                        "application/x-ndjson": {
                            "schema": {"type": "string", "description": "One event per line."}
                        },
                    },
                },
                "responses": {
                    "200": {
                        "description": "Per-event results; accepted and duplicate events are kept.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/BatchResult"}
                            }
                        },
                    },
                    "400": {"description": "Malformed body.", "content": error_ref},
                    "401": {"description": "Missing or invalid API key.", "content": error_ref},
                    "403": {"description": "Key not scoped to this stream.", "content": error_ref},
                    "404": {"description": "Unknown stream.", "content": error_ref},
                    "413": {"description": "Body or batch too large.", "content": error_ref},
                    "415": {"description": "Unsupported Content-Type.", "content": error_ref},
                    "422": {
                        "description": "No event of the batch was accepted (per-event reasons).",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/BatchResult"}
                            }
                        },
                    },
                    "429": {
                        "description": "Overloaded: retry after the given delay.",
                        "headers": retry_after,
                        "content": error_ref,
                    },
                    "503": {
                        "description": "The audit log or the event log cannot take events; "
                        "nothing was acknowledged.",
                        "headers": retry_after,
                        "content": error_ref,
                    },
                },
            }
        }
    simple = {"200": {"description": "OK"}, "503": {"description": "Not ready"}}
    paths["/healthz"] = {"get": {"operationId": "healthz", "responses": {"200": simple["200"]}}}
    paths["/readyz"] = {"get": {"operationId": "readyz", "responses": simple}}
    paths["/metrics"] = {
        "get": {"operationId": "metrics", "responses": {"200": {"description": "Prometheus"}}}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fjordgate gateway",
            "version": __version__,
            "description": f"Policy {policy.metadata.name} {policy.metadata.version} "
            f"({policy.content_hash}), mode {policy.mode}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
