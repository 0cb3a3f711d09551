"""Where failed events wait, and the alarm that says some do."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from constructs import Construct


class FailureQueue(Construct):
    """An encrypted queue and an alarm on the messages waiting in it."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        description: str,
        retention: Duration,
        alarm_threshold: int,
    ) -> None:
        super().__init__(scope, id)
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=retention,
        )
        self.alarm = self.queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5), statistic=cloudwatch.Stats.MAXIMUM
        ).create_alarm(
            self,
            "Alarm",
            alarm_description=f"{description} are waiting in {id}",
            threshold=alarm_threshold,
            evaluation_periods=1,
            comparison_operator=(
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
            ),
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
