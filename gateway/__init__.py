"""fjordgate ingress gateway: tags personal data, applies policy, audits, publishes."""

__version__ = "0.1.0"

__all__ = ["__version__"]
