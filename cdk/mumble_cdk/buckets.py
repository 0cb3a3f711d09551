"""The one shape of every bucket: encrypted, private, TLS only."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct


def private_bucket(
    scope: Construct, id: str, *, removal_policy: RemovalPolicy, **options: Any
) -> s3.Bucket:
    """A bucket no one reaches without a grant, over TLS only.

    ``auto_delete_objects`` is never set: it adds a custom-resource function
    whose logs are kept forever. Empty a development bucket before
    destroying its stack.
    """
    return s3.Bucket(
        scope,
        id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        removal_policy=removal_policy,
        **options,
    )
