"""Retry delays for providers: exponential with jitter, reset by a success."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """``initial``, ``2*initial``, ... up to ``maximum`` seconds, each ±20 % so peers spread out."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * 2.0 ** min(self.failures, 30))
        self.failures += 1
        jitter: float = random.uniform(0.8, 1.2)
        return delay * jitter

    def reset(self) -> None:
        self.failures = 0
