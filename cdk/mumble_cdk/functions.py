"""The one shape of every Mumble Lambda function."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from .bundling import ARCHITECTURE, RUNTIME


@dataclass(frozen=True, kw_only=True)
class FunctionSettings:
    """What all functions of a deployment share."""

    code: lambda_.Code
    log_retention: logs.RetentionDays
    removal_policy: RemovalPolicy
    environment: Mapping[str, str] = field(default_factory=dict)


class MumbleFunction(Construct):
    """A function with its own log group and a role that writes only there.

    The role is built here rather than by ``lambda_.Function`` so that it
    carries no managed policy: the basic execution policy lets a function
    write to every log group of the account.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: FunctionSettings,
        handler: str,
        description: str,
        timeout: Duration,
        memory_size: int = 512,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=settings.log_retention,
            removal_policy=settings.removal_policy,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs {description}",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            code=settings.code,
            handler=handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            description=description,
            timeout=timeout,
            memory_size=memory_size,
            role=self.role,
            log_group=self.log_group,
            environment={**settings.environment, **(environment or {})},
        )
