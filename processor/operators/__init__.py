"""Keyed window operators: fixed (tumbling, hopping), sliding and session windows."""

from processor.operators.base import EventFields, LateEvent, WindowOperator, WindowResult
from processor.operators.fixed import FixedWindowOperator
from processor.operators.session import SessionWindowOperator
from processor.operators.sliding import SlidingWindowOperator

__all__ = [
    "EventFields",
    "FixedWindowOperator",
    "LateEvent",
    "SessionWindowOperator",
    "SlidingWindowOperator",
    "WindowOperator",
    "WindowResult",
]
