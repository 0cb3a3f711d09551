"""Statistics: counts derived from the changes streamed by both tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from .failure_queue import FailureQueue
from .functions import FunctionSettings, MumbleFunction

#: Attempts at a batch before its records go to the failure queue. With
#: bisection, the one record that fails is isolated in a few of them.
RETRY_ATTEMPTS = 5
MAX_RECORD_AGE = Duration.days(1)


class Statistics(Construct):
    """The statistics function and one event source mapping per table.

    Only records matching ``stream_filter`` invoke the function. Records that
    keep failing are sent, as stream coordinates, to ``failures`` instead of
    blocking the shard.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        functions: FunctionSettings,
        handler: str,
        tables: Sequence[dynamodb.ITable],
        failure_retention: Duration,
        failure_alarm_threshold: int,
        stream_filter: Mapping[str, Any],
    ) -> None:
        super().__init__(scope, id)
        self.handler = MumbleFunction(
            self,
            "Handler",
            settings=functions,
            handler=handler,
            description="Mumble statistics from the table streams",
            timeout=Duration.minutes(1),
        )
        self.failures = FailureQueue(
            self,
            "Failures",
            description="Stream records the statistics function could not count",
            retention=failure_retention,
            alarm_threshold=failure_alarm_threshold,
        )
        for table in tables:
            self.handler.function.add_event_source(
                sources.DynamoEventSource(
                    table,
                    starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                    batch_size=100,
                    bisect_batch_on_error=True,
                    retry_attempts=RETRY_ATTEMPTS,
                    max_record_age=MAX_RECORD_AGE,
                    # The handler names the records it could not count; the
                    # rest of the batch is not retried.
                    report_batch_item_failures=True,
                    filters=[lambda_.FilterCriteria.filter(dict(stream_filter))],
                    on_failure=sources.SqsDlq(self.failures.queue),
                )
            )
