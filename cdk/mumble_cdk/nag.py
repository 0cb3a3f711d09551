"""cdk-nag findings accepted on purpose, each with its reason.

Every acknowledgment names one rule (or one wildcard finding) on the
narrowest construct it applies to. ``suppress`` holds all of them but the
prefix-wide object grants, which the stack acknowledges where it makes them
(see :func:`acknowledge_wildcards`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

if TYPE_CHECKING:
    from .stack import MumbleStack

PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept ``rule`` (``L1``, ``IAM5[Resource::...]``) on ``scope`` and below."""
    Validations.of(scope).acknowledge(
        Acknowledgment(id=f"{PACK}::{PACK}-{rule}", reason=reason)
    )


def _render(value: Any) -> str:
    """A resolved ARN the way cdk-nag writes it in a finding."""
    if isinstance(value, str):
        return re.sub(r"\$\{([^}]*)\}", r"<\1>", value)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_render(part) for part in parts)
    raise ValueError(f"cannot render {value!r} as a cdk-nag finding")


def acknowledge_wildcards(
    scope: IConstruct, resources: Iterable[str], reason: str
) -> None:
    """Accept the IAM5 finding of each resource ending in a prefix wildcard."""
    stack = Stack.of(scope)
    for resource in resources:
        rendered = _render(stack.resolve(resource))
        if "*" in rendered:
            acknowledge(scope, f"IAM5[Resource::{rendered}]", reason)


def suppress(stack: MumbleStack) -> None:
    """Acknowledge the findings this design accepts, each with its reason."""
    stage = stack.config.stage
    for function in stack.functions():
        acknowledge(
            function.function,
            "L1",
            "The runtime is the newest Python that Mumble declares support for "
            "(setup.cfg); it moves with bundling.PIP_PYTHON_VERSION.",
        )
    for failures in (stack.workflows.failures, stack.statistics.failures):
        acknowledge(
            failures.queue,
            "SQS3",
            "This queue is itself the dead-letter destination of rules and "
            "stream mappings; what lands here is looked at, not retried again.",
        )
    acknowledge(
        stack.statistics.handler.role,
        "IAM5[Resource::*]",
        "dynamodb:ListStreams, added by the stream event source, is a read "
        "that has no resource-level permission.",
    )
    for machine in stack.workflows.state_machines.values():
        acknowledge(
            machine,
            "SF1",
            "Logging to CloudWatch needs logs:*LogDelivery on '*', a wildcard "
            "write this stack does not grant, and would copy activities into "
            "logs; Step Functions keeps 90 days of execution history, and "
            "failed executions go to the failure queue.",
        )
        acknowledge(
            machine,
            "SF2",
            "X-Ray needs xray:PutTraceSegments on '*', a wildcard write this "
            "stack does not grant; each step function logs to its log group.",
        )
    rest_api = stack.api.rest_api
    acknowledge(
        rest_api,
        "APIG2",
        "Every request is proxied to Mumble, which validates bodies itself "
        "(signatures, media types, the 1 MiB limit); API Gateway models "
        "cannot describe ActivityPub documents.",
    )
    for rule in ("APIG1", "APIG6"):
        acknowledge(
            rest_api.deployment_stage,
            rule,
            "API Gateway logging needs the account-wide CloudWatch role, whose "
            "managed policy writes to every log group; CloudFront's standard "
            "logs record each request, and the function logs its own.",
        )
    acknowledge(
        rest_api.deployment_stage,
        "APIG3",
        "The API answers only requests carrying CloudFront's origin secret; a "
        "web ACL would belong on the distribution (see CFR2).",
    )
    for rule in ("APIG4", "COG4"):
        acknowledge(
            rest_api,
            rule,
            "ActivityPub is public by protocol: reads are open and deliveries "
            "are authenticated by HTTP signatures, checked in the function; "
            "the owner's Cognito ID token is verified there too.",
        )
    distribution = stack.distribution.distribution
    acknowledge(
        distribution,
        "CFR1",
        "Federation is worldwide; no country is to be kept out.",
    )
    acknowledge(
        distribution,
        "CFR2",
        "A managed-rule web ACL costs more than the rest of a single-user "
        "deployment; API Gateway throttles, and one can be attached later.",
    )
    if stack.config.domain is None:
        acknowledge(
            distribution,
            "CFR4",
            "Without a custom domain CloudFront's own certificate is used, "
            "which always allows TLSv1; with one, TLSv1.2_2021 is enforced.",
        )
    acknowledge(
        stack.origin_secret,
        "SMG4",
        "The secret is written into CloudFront's origin header and the API's "
        "environment at deployment; a rotation could not update both. It "
        "keeps the API from being called past CloudFront, nothing more.",
    )
    acknowledge(
        stack.user_pool.user_pool,
        "COG8",
        "Threat protection needs the Plus plan, priced per user, for a pool "
        "of one operator-created owner; MFA guards the sign-in instead.",
    )
    if not stage.mfa_required:
        acknowledge(
            stack.user_pool.user_pool,
            "COG2",
            "Development stage: MFA is optional so that test owners can sign "
            "in from scripts; production requires it.",
        )
    if not stage.point_in_time_recovery:
        for table in (stack.user_table, stack.object_table):
            acknowledge(
                table.table,
                "DDB3",
                "Development stage: the tables hold test data only; "
                "production turns point-in-time recovery on.",
            )
