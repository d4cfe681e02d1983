"""Personal-data detection and transforms (pseudonymise, encrypt, redact, generalise)."""

__all__: list[str] = []
