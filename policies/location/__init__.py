"""Location facts: IP to country, network owner and jurisdiction; egress and placement."""

__all__: list[str] = []
