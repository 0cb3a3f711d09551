"""Deployment settings: the stage and the options read from CDK context."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Token
from aws_cdk import aws_logs as logs
from constructs import Node

#: The first segment of the deployment's parameter names: /mumble/<stage>/...
PROJECT = "mumble"


@dataclass(frozen=True, kw_only=True)
class Stage:
    """What differs between a development and a production deployment."""

    name: str
    removal_policy: RemovalPolicy
    log_retention: logs.RetentionDays
    point_in_time_recovery: bool
    deletion_protection: bool
    #: Messages in a failure queue that raise its alarm.
    failure_alarm_threshold: int
    #: Steady requests per second and burst the API accepts.
    api_rate_limit: int
    api_burst_limit: int
    mfa_required: bool
    #: How long failed events wait in a failure queue for a look.
    failure_retention: Duration
    #: How long quarantined objects and access logs are kept.
    quarantine_expiry: Duration
    access_log_expiry: Duration


STAGES: dict[str, Stage] = {
    "dev": Stage(
        name="dev",
        # A development stack is thrown away whole; nothing in it is precious.
        removal_policy=RemovalPolicy.DESTROY,
        log_retention=logs.RetentionDays.ONE_WEEK,
        point_in_time_recovery=False,
        deletion_protection=False,
        failure_alarm_threshold=10,
        api_rate_limit=20,
        api_burst_limit=40,
        mfa_required=False,
        failure_retention=Duration.days(4),
        quarantine_expiry=Duration.days(3),
        access_log_expiry=Duration.days(7),
    ),
    "prod": Stage(
        name="prod",
        removal_policy=RemovalPolicy.RETAIN,
        log_retention=logs.RetentionDays.THREE_MONTHS,
        point_in_time_recovery=True,
        deletion_protection=True,
        # One failed delivery or execution is already worth a look.
        failure_alarm_threshold=1,
        api_rate_limit=100,
        api_burst_limit=200,
        mfa_required=True,
        failure_retention=Duration.days(14),
        quarantine_expiry=Duration.days(30),
        access_log_expiry=Duration.days(90),
    ),
}


@dataclass(frozen=True, kw_only=True)
class CustomDomain:
    """A domain of one's own for the distribution, with its us-east-1 certificate."""

    name: str
    #: None: the stack creates a DNS-validated certificate (us-east-1 stacks only).
    certificate_arn: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeployConfig:
    """Everything ``-c key=value`` can set."""

    stage: Stage
    domain: CustomDomain | None
    #: The folder of Linux wheels for the Lambda platform (see bundling.py).
    lambda_dependencies: Path | None


class ConfigError(ValueError):
    """A context value that cannot be deployed."""


def _context(node: Node, key: str) -> str | None:
    value = node.try_get_context(key)
    return None if value in (None, "") else str(value)


def certificate_region(arn: str) -> str | None:
    """The region of a literal ACM certificate ARN; None for a token."""
    if Token.is_unresolved(arn):
        return None
    parts = arn.split(":")
    if len(parts) < 6 or parts[2] != "acm":
        raise ConfigError(f"certificateArn is not an ACM certificate ARN: {arn!r}")
    return parts[3]


def from_context(node: Node) -> DeployConfig:
    """Read ``stage``, ``domainName``, ``certificateArn``, ``lambdaDependencies``."""
    stage_name = _context(node, "stage") or "dev"
    if stage_name not in STAGES:
        raise ConfigError(f"stage must be one of {sorted(STAGES)}, not {stage_name!r}")
    domain_name = _context(node, "domainName")
    certificate_arn = _context(node, "certificateArn")
    if certificate_arn and not domain_name:
        raise ConfigError("certificateArn needs domainName")
    # CloudFront only takes certificates from us-east-1.
    region = certificate_region(certificate_arn) if certificate_arn else None
    if region not in (None, "us-east-1"):
        raise ConfigError("certificateArn must name a certificate in us-east-1")
    domain = (
        CustomDomain(name=domain_name.lower(), certificate_arn=certificate_arn)
        if domain_name
        else None
    )
    dependencies = _context(node, "lambdaDependencies")
    return DeployConfig(
        stage=STAGES[stage_name],
        domain=domain,
        lambda_dependencies=Path(dependencies) if dependencies else None,
    )
