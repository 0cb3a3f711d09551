"""The Step Functions workflows, and the events that start them.

Everything the deployment needs to wire the workflows is generated here, so
the CDK app deploys exactly what the tests run. The functions below are a
stable interface: the CDK app imports this module and calls them.

``state_machines(functions)``
    Amazon States Language definitions (as dicts) by workflow name.
    ``functions`` maps every name in :data:`STEP_NAMES` to the ARN of the
    Lambda function running that step; each function's handler is
    ``mumble.backends.aws.handlers.<step name>`` (see :func:`handler_names`).
``event_patterns(bucket=None)``
    The EventBridge pattern of each workflow: S3 "Object Created" under its
    prefix of the bucket. The rule's target is the workflow's state machine,
    with the event as the execution input. The bucket must send its events
    to EventBridge.
``stream_filter()``
    The Lambda event-source filter for the statistics handler on both
    tables' streams (NEW_AND_OLD_IMAGES, with ReportBatchItemFailures).

The workflows:

``inbound`` (``inbound/``) and ``outbound`` (``outbound/tasks/``)
    Translate the staged task. ``retry``: a Wait until the time the task
    asked for, then translate again with its attempts counted. ``drop``:
    quarantine the staged object. ``done``: the step removed it.
``deliver`` (``outbound/deliver/``)
    Expand the staged object into its inboxes (an execution that finds
    another delivering the same object ends there); a Map pushes to each, at most
    ``max_concurrency`` at once. A push that must be retried fails its branch
    with :data:`TRANSIENT_ERROR`, which the Retry repeats with exponential
    backoff; a push that must stop fails with :data:`PERMANENT_ERROR`, which
    the Catch records in the item's result without retrying. Settle then
    removes the staged object, or quarantines it with the failures.

Every Lambda task also retries Lambda's own transient errors, and
:data:`TRANSIENT_AWS_ERROR`: S3, DynamoDB or SSM still throttling or failing
a step after botocore's retries.

The tests execute these definitions in moto's Step Functions interpreter,
with stub Lambda functions, and read the execution history (Map and its
concurrency, Retry, Catch, data between states). The steps themselves are
tested in-process (``tests/aws``); what moto cannot show is how Step
Functions and Lambda behave at AWS's scale and limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...statistics import COUNTED_NAMESPACES
from .bucket import STAGED_PREFIXES

WORKFLOW_NAMES = ("inbound", "outbound", "deliver")
STEP_NAMES = (
    "translate_inbound",
    "translate_outbound",
    "expand",
    "push",
    "settle",
    "quarantine",
)
#: The handler of the DynamoDB streams, beside the steps.
STATISTICS = "statistics"
HANDLERS_MODULE = "mumble.backends.aws.handlers"

TRANSIENT_ERROR = "Mumble.TransientDeliveryError"
#: What a step's handler raises when AWS itself keeps failing it (the name
#: of :class:`.handlers.TransientAwsError`, as Lambda reports it).
TRANSIENT_AWS_ERROR = "TransientAwsError"
PERMANENT_ERROR = "Mumble.PermanentDeliveryError"
LAMBDA_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "States.Timeout",
)
#: How long each step may run: pushes wait at most for one remote server,
#: the others for storage and, when translating, a few signed fetches.
STEP_TIMEOUTS = {
    "translate_inbound": 120,
    "translate_outbound": 120,
    "expand": 300,
    "push": 60,
    "settle": 120,
    "quarantine": 60,
}
#: How long a whole execution may run: retries with waits last days.
EXECUTION_TIMEOUTS = {"inbound": 4 * 86400, "outbound": 4 * 86400, "deliver": 4 * 86400}
DEFAULT_MAX_CONCURRENCY = 16


@dataclass(frozen=True)
class RetryPolicy:
    """A Step Functions retrier: exponential backoff, capped, with full jitter."""

    interval_seconds: int
    backoff_rate: float
    max_attempts: int
    max_delay_seconds: int
    jitter: bool = True

    def retrier(self, errors: tuple[str, ...]) -> dict[str, Any]:
        return {
            "ErrorEquals": list(errors),
            "IntervalSeconds": self.interval_seconds,
            "BackoffRate": self.backoff_rate,
            "MaxAttempts": self.max_attempts,
            "MaxDelaySeconds": self.max_delay_seconds,
            "JitterStrategy": "FULL" if self.jitter else "NONE",
        }


#: 1, 2, 4 ... minutes, capped at a day: about two and a half days in all,
#: like the embedded backend's delivery retries.
DELIVERY_RETRY = RetryPolicy(
    interval_seconds=60, backoff_rate=2.0, max_attempts=12, max_delay_seconds=86400
)
LAMBDA_RETRY = RetryPolicy(
    interval_seconds=2, backoff_rate=2.0, max_attempts=6, max_delay_seconds=60
)
#: 5 s, 10 s ... capped at 5 minutes: about half an hour for AWS to recover.
AWS_RETRY = RetryPolicy(
    interval_seconds=5, backoff_rate=2.0, max_attempts=10, max_delay_seconds=300
)


def handler_names() -> dict[str, str]:
    """The Lambda handler (``module.function``) of every step and of statistics."""
    return {name: f"{HANDLERS_MODULE}.{name}" for name in (*STEP_NAMES, STATISTICS)}


def _task(
    arn: str, step: str, next_state: str | None = None, **fields: Any
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": arn,
        "TimeoutSeconds": STEP_TIMEOUTS[step],
        "Retry": [
            LAMBDA_RETRY.retrier(LAMBDA_ERRORS),
            AWS_RETRY.retrier((TRANSIENT_AWS_ERROR,)),
        ],
        **fields,
    }
    if next_state is None:
        state["End"] = True
    else:
        state["Next"] = next_state
    return state


_LOCATE: dict[str, Any] = {
    "Type": "Pass",
    "Comment": "The staged object that S3's Object Created event names",
    "Parameters": {
        "bucket.$": "$.detail.bucket.name",
        "key.$": "$.detail.object.key",
        "attempts": 0,
    },
    "Next": "Translate",
}


def _translating(workflow: str, step_arn: str, quarantine_arn: str) -> dict[str, Any]:
    return {
        "Comment": f"Translate a task staged under {STAGED_PREFIXES[workflow]}",
        "StartAt": "Locate",
        "States": {
            "Locate": _LOCATE,
            "Translate": _task(step_arn, f"translate_{workflow}", "Decide"),
            "Decide": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.status",
                        "StringEquals": "retry",
                        "Next": "Wait",
                    },
                    {
                        "Variable": "$.status",
                        "StringEquals": "drop",
                        "Next": "Quarantine",
                    },
                ],
                "Default": "Done",
            },
            "Wait": {
                "Type": "Wait",
                "SecondsPath": "$.wait_seconds",
                "Next": "Translate",
            },
            "Quarantine": _task(quarantine_arn, "quarantine", "Quarantined"),
            "Quarantined": {"Type": "Succeed"},
            "Done": {"Type": "Succeed"},
        },
    }


def _delivering(
    functions: Mapping[str, str], retry: RetryPolicy, max_concurrency: int
) -> dict[str, Any]:
    attempt_branch = {
        "StartAt": "Push",
        "States": {
            "Push": _task(functions["push"], "push", "Outcome"),
            "Outcome": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.status",
                        "StringEquals": "retry",
                        "Next": "Transient",
                    },
                    {
                        "Variable": "$.status",
                        "StringEquals": "drop",
                        "Next": "Permanent",
                    },
                ],
                "Default": "Pushed",
            },
            "Transient": {
                "Type": "Fail",
                "Error": TRANSIENT_ERROR,
                "CausePath": "$.reason",
            },
            "Permanent": {
                "Type": "Fail",
                "Error": PERMANENT_ERROR,
                "CausePath": "$.reason",
            },
            "Pushed": {"Type": "Succeed"},
        },
    }
    item_states = {
        "Attempt": {
            "Type": "Parallel",
            "Comment": "A branch, so that a push's outcome can be retried or caught",
            "Branches": [attempt_branch],
            "ResultPath": None,
            "Retry": [retry.retrier((TRANSIENT_ERROR,))],
            "Catch": [
                {
                    "ErrorEquals": [PERMANENT_ERROR],
                    "ResultPath": "$.failure",
                    "Next": "Failed",
                },
                {
                    "ErrorEquals": ["States.ALL"],
                    "ResultPath": "$.failure",
                    "Next": "Failed",
                },
            ],
            "Next": "Delivered",
        },
        "Delivered": {
            "Type": "Pass",
            "Parameters": {"id.$": "$.task.id", "inbox.$": "$.inbox", "status": "done"},
            "End": True,
        },
        "Failed": {
            "Type": "Pass",
            "Parameters": {
                "id.$": "$.task.id",
                "inbox.$": "$.inbox",
                "status": "failed",
                "error.$": "$.failure.Error",
                "cause.$": "$.failure.Cause",
            },
            "End": True,
        },
    }
    return {
        "Comment": f"Deliver an activity staged under {STAGED_PREFIXES['deliver']}",
        "StartAt": "Locate",
        "States": {
            "Locate": _LOCATE
            | {
                # The execution's own id: a second execution for the same
                # object (S3 may announce it twice) must deliver nothing.
                "Parameters": _LOCATE["Parameters"]
                | {"execution.$": "$$.Execution.Id"},
                "Next": "Expand",
            },
            "Expand": _task(functions["expand"], "expand", "Fresh"),
            "Fresh": {
                "Type": "Choice",
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.duplicate", "IsPresent": True},
                            {"Variable": "$.duplicate", "BooleanEquals": True},
                        ],
                        "Next": "Duplicate",
                    }
                ],
                "Default": "Deliver",
            },
            "Duplicate": {"Type": "Succeed"},
            "Deliver": {
                "Type": "Map",
                "ItemsPath": "$.inboxes",
                "MaxConcurrency": max_concurrency,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Attempt",
                    "States": item_states,
                },
                "ResultPath": "$.results",
                "Next": "Settle",
            },
            "Settle": _task(
                functions["settle"],
                "settle",
                Parameters={
                    "bucket.$": "$.bucket",
                    "key.$": "$.key",
                    "reason.$": "$.reason",
                    "results.$": "$.results",
                },
            ),
        },
    }


def state_machines(
    functions: Mapping[str, str],
    *,
    delivery_retry: RetryPolicy = DELIVERY_RETRY,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> dict[str, dict[str, Any]]:
    """The definition of every workflow, by name, calling ``functions``' ARNs."""
    missing = [name for name in STEP_NAMES if not functions.get(name)]
    if missing:
        raise ValueError(f"no Lambda function for step {', '.join(missing)}")
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    machines = {
        "inbound": _translating(
            "inbound", functions["translate_inbound"], functions["quarantine"]
        ),
        "outbound": _translating(
            "outbound", functions["translate_outbound"], functions["quarantine"]
        ),
        "deliver": _delivering(functions, delivery_retry, max_concurrency),
    }
    for name, definition in machines.items():
        definition["TimeoutSeconds"] = EXECUTION_TIMEOUTS[name]
    return machines


def event_patterns(bucket: str | None = None) -> dict[str, dict[str, Any]]:
    """The EventBridge pattern starting each workflow; any bucket when None."""
    patterns: dict[str, dict[str, Any]] = {}
    for workflow in WORKFLOW_NAMES:
        detail: dict[str, Any] = {
            "object": {"key": [{"prefix": STAGED_PREFIXES[workflow]}]}
        }
        if bucket is not None:
            detail["bucket"] = {"name": [bucket]}
        patterns[workflow] = {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": detail,
        }
    return patterns


def stream_filter() -> dict[str, Any]:
    """The statistics handler's event filter: changes of counted namespaces only."""
    return {"dynamodb": {"Keys": {"pk": {"S": sorted(COUNTED_NAMESPACES)}}}}
