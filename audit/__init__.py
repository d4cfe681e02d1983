"""The immutable audit log: hash chain, Merkle tree, signed tree heads."""

__all__: list[str] = []
