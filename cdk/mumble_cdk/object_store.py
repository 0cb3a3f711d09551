"""The object store: every activity, task and media file Mumble keeps in S3."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .buckets import private_bucket


class ObjectStore(Construct):
    """The bucket, announcing every new object on EventBridge.

    Quarantined work is kept for ``quarantine_expiry`` to be looked at, then
    expires.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        removal_policy: RemovalPolicy,
        quarantine_prefix: str,
        quarantine_expiry: Duration,
        access_logs: s3.IBucket,
    ) -> None:
        super().__init__(scope, id)
        self.bucket = private_bucket(
            self,
            "Bucket",
            removal_policy=removal_policy,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="object-store/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="quarantine",
                    prefix=quarantine_prefix,
                    expiration=quarantine_expiry,
                ),
                s3.LifecycleRule(
                    id="incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )
        # Set on the resource itself: ``event_bridge_enabled=True`` would add
        # CDK's notification custom resource, a function of its own.
        resource = self.bucket.node.default_child
        assert isinstance(resource, s3.CfnBucket)
        eventbridge = s3.CfnBucket.EventBridgeConfigurationProperty(
            event_bridge_enabled=True
        )
        resource.notification_configuration = (
            s3.CfnBucket.NotificationConfigurationProperty(
                event_bridge_configuration=eventbridge
            )
        )
