"""The DynamoDB tables: users and objects have the same shape."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct


class RecordTable(Construct):
    """An on-demand table keyed by string ``pk`` and ``sk``, streaming changes.

    Both images are streamed: the statistics function derives counts from
    what a change removed as well as from what it added.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        removal_policy: RemovalPolicy,
        point_in_time_recovery: bool,
        deletion_protection: bool,
        time_to_live_attribute: str,
    ) -> None:
        super().__init__(scope, id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name="pk", type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            point_in_time_recovery_specification=(
                dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=point_in_time_recovery
                )
            ),
            deletion_protection=deletion_protection,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            # Claims of pending deliveries carry an expiry, in case a workflow
            # never settles them.
            time_to_live_attribute=time_to_live_attribute,
            removal_policy=removal_policy,
        )
