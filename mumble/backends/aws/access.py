"""What each function of the deployment may do to AWS, and nothing more.

The CDK app grants exactly this (``cdk/mumble_cdk/stack.py``), and the
tests record every call each function makes while it works on the events
AWS delivers and check it against this (``tests/aws/test_access.py``).

Functions that run the framework (the API and the steps that run tasks)
read and write records in both tables, the documents under ``objects/``,
and read the domain name and the users' private keys (they sign). The
other steps only move staged objects; the statistics function writes the
counts and its markers, which live in the user table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .bucket import INBOUND, MEDIA, OBJECTS, OUTBOUND_DELIVER, OUTBOUND_TASKS
from .bucket import QUARANTINE as QUARANTINED

READ = ("s3:GetObject",)
WRITE = ("s3:PutObject",)
REMOVE = ("s3:DeleteObject",)
#: Records: what the backend calls on a table for get, put, delete, query,
#: claims and their release.
RECORDS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchWriteItem",
)
#: And where an application's code runs (its routes, its activity handlers),
#: the contract's increment, which Mumble itself does not use.
APPLICATION_RECORDS = (*RECORDS, "dynamodb:UpdateItem")
#: A stream transaction: a conditional marker and the counts' additions.
COUNTS = ("dynamodb:PutItem", "dynamodb:UpdateItem")

USER_TABLE = "user"
OBJECT_TABLE = "object"


@dataclass(frozen=True)
class Access:
    """One function's grants: table name -> actions, bucket prefix -> actions."""

    tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    objects: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Reads the domain name and the private keys in Parameter Store.
    parameters: bool = False

    @property
    def reads_objects(self) -> bool:
        return any("s3:GetObject" in actions for actions in self.objects.values())


def _framework(
    objects: Mapping[str, tuple[str, ...]],
    *,
    documents: tuple[str, ...] = READ + WRITE + REMOVE,
    records: tuple[str, ...] = RECORDS,
) -> Access:
    return Access(
        tables={USER_TABLE: records, OBJECT_TABLE: records},
        objects={OBJECTS: documents, **objects},
        parameters=True,
    )


ACCESS: dict[str, Access] = {
    # The inbox stages inbound work; presigned media uploads are signed with
    # the function's own credentials, so it must be allowed to write them.
    # Posts stage their fan-out, and follows their one delivery.
    "api": _framework(
        {INBOUND: WRITE, MEDIA: WRITE, OUTBOUND_TASKS: WRITE, OUTBOUND_DELIVER: WRITE},
        records=APPLICATION_RECORDS,
    ),
    # Inbound activities stage deliveries of their answers (Accept); the
    # application's handlers run here too, and may post (a fan-out).
    "translate_inbound": _framework(
        {INBOUND: READ + REMOVE, OUTBOUND_TASKS: WRITE, OUTBOUND_DELIVER: WRITE},
        records=APPLICATION_RECORDS,
    ),
    # A fan-out stages the deliveries of an activity it reads.
    "translate_outbound": _framework(
        {OUTBOUND_TASKS: READ + REMOVE, OUTBOUND_DELIVER: WRITE}
    ),
    # A push reads the activity it sends; a gone inbox removes followers.
    "push": _framework({}, documents=READ),
    # Expanding claims the delivery for its execution, in the object table.
    "expand": Access(
        tables={OBJECT_TABLE: ("dynamodb:GetItem", "dynamodb:PutItem")},
        objects={OUTBOUND_DELIVER: READ},
    ),
    # Settling releases the deliveries' claims and the execution's.
    "settle": Access(
        tables={OBJECT_TABLE: ("dynamodb:BatchWriteItem", "dynamodb:DeleteItem")},
        objects={OUTBOUND_DELIVER: READ + REMOVE, QUARANTINED: WRITE},
    ),
    # The translating workflows' quarantine; deliveries are settled instead.
    "quarantine": Access(
        objects={
            INBOUND: READ + REMOVE,
            OUTBOUND_TASKS: READ + REMOVE,
            QUARANTINED: WRITE,
        }
    ),
    "statistics": Access(tables={USER_TABLE: COUNTS}),
}
