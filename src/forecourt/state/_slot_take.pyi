"""Type stub of the C fast path of `SharedCounterTable.take` (`_slot_take.c`)."""

UNDECIDED: int
RECOVERED: int

def take_home(
    lock_address: int, slot_address: int, slot_key: int, start: int, end: int, limit: int, amount: int, /
) -> int: ...
