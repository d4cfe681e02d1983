"""Personal-data detection and transforms (pseudonymise, encrypt, redact, generalise)."""

from gateway.pii.cipher import FieldCipher
from gateway.pii.detector import Detector
from gateway.pii.errors import (
    GeneraliseError,
    KeyringError,
    KeyringPermissionError,
    KeyShreddedError,
    PiiError,
    ScanLimitError,
    TokenError,
    UnknownKeyError,
)
from gateway.pii.findings import CHECK_DIGIT_TYPES, PII_TYPES, Finding, PiiType
from gateway.pii.keyring import KeyInfo, Keyring
from gateway.pii.pseudonymise import Pseudonymiser, canonical, pseudonym_key_id
from gateway.pii.transforms import generalise, redact

__all__ = [
    "CHECK_DIGIT_TYPES",
    "PII_TYPES",
    "Detector",
    "FieldCipher",
    "Finding",
    "GeneraliseError",
    "KeyInfo",
    "KeyShreddedError",
    "Keyring",
    "KeyringError",
    "KeyringPermissionError",
    "PiiError",
    "PiiType",
    "Pseudonymiser",
    "ScanLimitError",
    "TokenError",
    "UnknownKeyError",
    "canonical",
    "generalise",
    "pseudonym_key_id",
    "redact",
]
