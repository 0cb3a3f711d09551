"""The AWS backend: DynamoDB, S3, SSM Parameter Store and Step Functions.

Importing this package loads nothing of botocore; :class:`AwsBackend` and
:class:`AwsSettings` are imported when first used. See :mod:`.backend` for
the storage, :mod:`.workflows` for the state machines, :mod:`.handlers` for
the Lambda handlers and :mod:`.driver` for running the same steps locally.

What the tests (``tests/aws``, with ``MUMBLE_TEST_AWS=moto``) prove, and how:

* The backend contract: the conformance suite runs on this backend against
  moto in server mode, tasks driven by :mod:`.driver`, counts derived by
  the statistics handler from the tables' streams.
* The steps and handlers: called in-process, as Lambda calls them, on the
  events AWS delivers (recorded samples), against moto.
* The state machines: executed by moto's Step Functions interpreter with
  stub Lambda functions; S3 to EventBridge routing through moto too.
* Throttling, server errors and lost races: injected as AWS's answers at
  botocore's ``before-send`` event, and real concurrent writes.
* The whole path, with a real Fedify peer (``tests/aws_e2e``): HTTP requests
  become API Gateway's payload 2.0 events for the API function's entry
  point; staged work runs through the local driver with the handlers'
  container; the statistics handler counts from the tables' streams.

Not proven here: IAM, Lambda packaging and limits, and how DynamoDB, S3
and Step Functions behave under real load (moto serializes little and
rolls back cancelled transactions by restoring whole tables).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import AwsBackend
    from .settings import AwsSettings

__all__ = ["AwsBackend", "AwsSettings"]

_MODULES = {"AwsBackend": ".backend", "AwsSettings": ".settings"}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
