"""An upstream's response head, kept as the wire bytes it arrived in.

llhttp has validated the head (CRLF line ends, no obs-fold, no whitespace before a colon), so the
bytes can be forwarded as they are with only our own edits spliced in: that is what a plain route
does, and it is much cheaper than collecting every header through a parser callback and writing
them all again. Code that needs the headers as pairs (response-phase plugins, aggregation) parses
them here, on demand.
"""

from __future__ import annotations

MAX_RESPONSE_HEAD = 64 * 1024
"""Bytes an upstream may send before its head is complete (nginx's proxy_buffer_size answers 502 for
"upstream sent too big header"; ours is generous, but a bound)."""


def reason_phrase(head: bytes) -> bytes:
    """The status line's reason phrase (may be empty)."""
    line = head[: head.find(b"\r\n")]
    parts = line.split(b" ", 2)
    return parts[2] if len(parts) > 2 else b""


def header_pairs(head: bytes) -> list[tuple[bytes, bytes]]:
    """The head's header fields as (name, value) pairs, in order, values without surrounding OWS.
    (A plain split/partition loop: measured faster than a regex `findall` over the head. One-sided
    slice: mypyc's bytes slice fails on start > end, which a head without headers would give.)"""
    pairs: list[tuple[bytes, bytes]] = []
    for line in head[head.find(b"\r\n") + 2 :].split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            pairs.append((name, value.strip(b" \t")))
    return pairs
