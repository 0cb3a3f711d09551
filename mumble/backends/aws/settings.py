"""Where the AWS backend's resources are: region, bucket, tables, parameters.

Nothing is read from the environment until :meth:`AwsSettings.from_environ`
is called, by a factory (``create_backend``, a Lambda handler), never at
import. Every variable is prefixed ``MUMBLE_``:

==================================  ==========================================
``MUMBLE_AWS_REGION``               region; falls back to ``AWS_REGION``, which
                                    Lambda sets
``MUMBLE_AWS_ENDPOINT_URL``         one endpoint for every service (tests point
                                    it at moto); unset in production
``MUMBLE_BUCKET``                   the bucket for media and staged work
``MUMBLE_USER_TABLE``               the DynamoDB table of user namespaces
``MUMBLE_OBJECT_TABLE``             the DynamoDB table of everything else
``MUMBLE_SSM_PREFIX``               Parameter Store path, default ``/mumble``
``MUMBLE_STATE_MACHINE_<NAME>``     the ARN of workflow ``<name>`` (upper case)
``MUMBLE_AWS_MAX_ATTEMPTS``         attempts per AWS call, retries included
``MUMBLE_AWS_RETRY_MODE``           botocore retry mode: standard or adaptive
``MUMBLE_POLL_SECONDS``             how often the local driver lists staged work
``MUMBLE_ALLOW_PRIVATE_ADDRESSES``  ``1`` or ``true``: fetch from and deliver to
                                    loopback and private addresses; for tests
                                    and local runs; never in a deployment
==================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ...errors import MumbleError

PREFIX = "MUMBLE_"
STATE_MACHINE_PREFIX = PREFIX + "STATE_MACHINE_"
RETRY_MODES = ("standard", "adaptive")


class AwsConfigurationError(MumbleError):
    """The AWS backend is missing a setting or was given a wrong one."""

    status = 500


@dataclass(frozen=True, kw_only=True)
class AwsSettings:
    region: str
    bucket: str
    user_table: str
    object_table: str
    ssm_prefix: str = "/mumble"
    endpoint_url: str | None = None
    state_machines: Mapping[str, str] = field(default_factory=dict, hash=False)
    max_attempts: int = 8
    retry_mode: str = "standard"
    poll_seconds: float = 1.0
    allow_private_addresses: bool = False

    def __post_init__(self) -> None:
        # Parameter names are joined as prefix + "/...": one leading slash, none
        # trailing, whatever the deployment wrote.
        path = self.ssm_prefix.strip("/")
        object.__setattr__(self, "ssm_prefix", "/" + (path or "mumble"))
        if self.retry_mode not in RETRY_MODES:
            raise AwsConfigurationError(
                f"the retry mode must be one of {', '.join(RETRY_MODES)}"
            )
        if self.max_attempts < 1:
            raise AwsConfigurationError("at least one attempt per AWS call is needed")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AwsSettings:
        """Settings from ``MUMBLE_*`` variables; raise naming every one missing."""

        def need(name: str, *fallbacks: str) -> str:
            for candidate in (name, *fallbacks):
                if environ.get(candidate):
                    return environ[candidate]
            missing.append(name)
            return ""

        missing: list[str] = []
        region = need(PREFIX + "AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
        bucket = need(PREFIX + "BUCKET")
        user_table = need(PREFIX + "USER_TABLE")
        object_table = need(PREFIX + "OBJECT_TABLE")
        if missing:
            raise AwsConfigurationError(f"set {', '.join(missing)}")
        machines = {
            name[len(STATE_MACHINE_PREFIX) :].lower(): arn
            for name, arn in environ.items()
            if name.startswith(STATE_MACHINE_PREFIX) and arn
        }
        try:
            max_attempts = int(environ.get(PREFIX + "AWS_MAX_ATTEMPTS", "8"))
            poll_seconds = float(environ.get(PREFIX + "POLL_SECONDS", "1.0"))
        except ValueError as exc:
            raise AwsConfigurationError(
                f"{PREFIX}AWS_MAX_ATTEMPTS and {PREFIX}POLL_SECONDS are numbers"
            ) from exc
        return cls(
            region=region,
            bucket=bucket,
            user_table=user_table,
            object_table=object_table,
            ssm_prefix=environ.get(PREFIX + "SSM_PREFIX", "/mumble"),
            endpoint_url=environ.get(PREFIX + "AWS_ENDPOINT_URL") or None,
            state_machines=machines,
            max_attempts=max_attempts,
            retry_mode=environ.get(PREFIX + "AWS_RETRY_MODE", "standard"),
            poll_seconds=poll_seconds,
            allow_private_addresses=_flag(
                environ.get(PREFIX + "ALLOW_PRIVATE_ADDRESSES", "")
            ),
        )


def _flag(value: str) -> bool:
    """``1`` or ``true`` (any case) is on; anything else, unset included, is off."""
    return value.strip().lower() in ("1", "true")
