"""The layout of the one bucket: media, staged work and quarantine.

=================================  ========================================
``media/<blob key>``               blobs (media files)
``objects/<ns>/<record>/<write>``  the documents of objects, activities and
                                   outgoing activities, one per write;
                                   their DynamoDB items point at them
``inbound/<task>.json``            one inbound activity to translate
``outbound/tasks/<kind>/<task>``   any other single task, by kind
``outbound/deliver/<activity>/``   an activity and up to 200 of the
                                   inboxes it goes to, per object
``quarantine/<staged key>``        staged work dropped after its 202, kept
                                   as it was, with the reason
=================================  ========================================

A task id that is not a plain name (an inbound id has a colon) is written
as ``sha256-<digest>``: S3 event consumers disagree on how other characters
in keys are escaped.

Creating an object under a staged prefix is what starts a workflow: S3
sends "Object Created" to EventBridge, whose rules (see
:func:`mumble.backends.aws.workflows.event_patterns`) start the state
machine of that prefix. Staged objects are written once and never changed,
so an object means exactly one piece of work.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection

MEDIA = "media/"
OBJECTS = "objects/"
INBOUND = "inbound/"
OUTBOUND_TASKS = "outbound/tasks/"
OUTBOUND_DELIVER = "outbound/deliver/"
QUARANTINE = "quarantine/"

#: Which workflow runs what is staged under each prefix.
STAGED_PREFIXES: dict[str, str] = {
    "inbound": INBOUND,
    "outbound": OUTBOUND_TASKS,
    "deliver": OUTBOUND_DELIVER,
}

#: Inboxes per staged delivery object: keeps every state of the deliver
#: workflow well under Step Functions' 256 KB payload limit.
DELIVERY_GROUP_SIZE = 200

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")


def _name(task_id: str) -> str:
    """A task id as one key segment: as it is when plain, else its digest."""
    if _PLAIN_NAME.fullmatch(task_id) and task_id not in (".", ".."):
        return task_id
    return "sha256-" + hashlib.sha256(task_id.encode()).hexdigest()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def media_key(blob_key: str) -> str:
    return MEDIA + blob_key


def document_key(ns: str, record_key: str) -> str:
    """A new place for one write of a record's document."""
    return f"{OBJECTS}{_name(ns)}/{_digest(record_key)}/{secrets.token_hex(8)}.json"


def inbound_key(task_id: str) -> str:
    return f"{INBOUND}{_name(task_id)}.json"


def task_key(kind: str, task_id: str) -> str:
    return f"{OUTBOUND_TASKS}{_name(kind)}/{_name(task_id)}.json"


def delivery_key(activity_id: str, task_ids: list[str]) -> str:
    """One object per activity and set of tasks, so a repeat maps to the same key."""
    return (
        f"{OUTBOUND_DELIVER}{_digest(activity_id)}/{_digest(' '.join(task_ids))}.json"
    )


def quarantine_key(staged_key: str) -> str:
    return QUARANTINE + staged_key


def prefixes_of(kinds: Collection[str]) -> list[str]:
    """Where tasks of ``kinds`` are staged (every staged prefix when empty)."""
    if not kinds:
        return list(STAGED_PREFIXES.values())
    prefixes = []
    for kind in sorted(set(kinds)):
        if kind == "inbound":
            prefixes.append(INBOUND)
            continue
        if kind == "deliver":
            prefixes.append(OUTBOUND_DELIVER)
        prefixes.append(f"{OUTBOUND_TASKS}{_name(kind)}/")
    return prefixes


def workflow_of(key: str) -> str | None:
    """The workflow a staged key belongs to, or None for anything else."""
    for workflow, prefix in STAGED_PREFIXES.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            return workflow
    return None
