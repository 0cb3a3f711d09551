"""Counts derived from records: followers, following, posts, replies, reactions.

Counts are never written by the code that changes relationships. Each
backend applies :func:`count_changes` to every change of a record in a
counted namespace: the embedded backend in the same transaction as the
change, the AWS backend from the DynamoDB stream. Either way a count moves
only when a record really appears, disappears or changes state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

COUNTED_NAMESPACES = frozenset(
    {"followers", "following", "outbox", "replies", "reactions"}
)


class CountChange(NamedTuple):
    key: str
    name: str
    delta: int


def _present(value: dict[str, Any] | None) -> int:
    return 0 if value is None else 1


def _accepted(value: dict[str, Any] | None) -> int:
    return int(value is not None and value.get("state") == "accepted")


def count_changes(
    ns: str, key: str, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> list[CountChange]:
    """The count updates that one record change implies (none for most)."""
    changes: list[CountChange] = []
    if ns == "followers":
        changes.append(
            CountChange(
                key.split(" ", 1)[0], "followers", _present(new) - _present(old)
            )
        )
    elif ns == "following":
        changes.append(
            CountChange(
                key.split(" ", 1)[0], "following", _accepted(new) - _accepted(old)
            )
        )
    elif ns == "outbox":
        changes.append(
            CountChange(key.split(" ", 1)[0], "posts", _present(new) - _present(old))
        )
    elif ns == "replies":
        changes.append(
            CountChange(key.split(" ", 1)[0], "replies", _present(new) - _present(old))
        )
    elif ns == "reactions":
        parts = key.split(" ", 2)
        if len(parts) == 3:
            changes.append(
                CountChange(parts[0], parts[1], _present(new) - _present(old))
            )
    return [c for c in changes if c.delta]
