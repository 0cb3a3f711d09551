"""Where S3 server access logs and CloudFront standard logs go."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .buckets import private_bucket


class AccessLogs(Construct):
    """A bucket of access logs, expired after ``expiry``."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        removal_policy: RemovalPolicy,
        expiry: Duration,
    ) -> None:
        super().__init__(scope, id)
        self.bucket = private_bucket(
            self,
            "Bucket",
            removal_policy=removal_policy,
            # CloudFront standard logs are delivered with an ACL grant.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(id="expire", expiration=expiry)],
        )
