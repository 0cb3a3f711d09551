"""What the CDK app takes from the AWS backend, in one place.

Handlers, workflow definitions, event patterns, bucket prefixes and the
environment the functions read all come from ``mumble.backends.aws``; no
other module of this app imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from mumble.backends.aws import access, adapter, bucket, parameters, settings, workflows

Definition = dict[str, Any]


def check_handler(handler: str) -> str:
    """``handler`` if it names a function of the package; raise otherwise."""
    module, _, name = handler.rpartition(".")
    if not callable(getattr(importlib.import_module(module), name, None)):
        raise LookupError(f"no Lambda handler {handler}")
    return handler


API_HANDLER = check_handler("mumble.backends.aws.api.handler")
STEPS: tuple[str, ...] = workflows.STEP_NAMES
_HANDLERS = {name: check_handler(h) for name, h in workflows.handler_names().items()}
#: Step name -> the handler of the function that runs it.
STEP_HANDLERS: dict[str, str] = {step: _HANDLERS[step] for step in STEPS}
STATISTICS_HANDLER: str = _HANDLERS[workflows.STATISTICS]

#: The headers CloudFront passes the viewer's Host and Date in, and the one
#: proving a request came through it: the API's adapter reads these.
ORIGINAL_HOST: str = adapter.ORIGINAL_HOST
ORIGINAL_DATE: str = adapter.ORIGINAL_DATE
ORIGIN_SECRET: str = adapter.ORIGIN_SECRET

#: What each function may do, by function name (the steps' names, and these).
ACCESS: Mapping[str, access.Access] = access.ACCESS
API_FUNCTION = "api"
STATISTICS_FUNCTION: str = workflows.STATISTICS
USER_TABLE: str = access.USER_TABLE
OBJECT_TABLE: str = access.OBJECT_TABLE

#: The bucket's prefixes the backend reads and writes, each granted by name.
MEDIA_PREFIX: str = bucket.MEDIA
QUARANTINE_PREFIX: str = bucket.QUARANTINE
BACKEND_PREFIXES: tuple[str, ...] = (
    MEDIA_PREFIX,
    bucket.OBJECTS,
    *bucket.STAGED_PREFIXES.values(),
    QUARANTINE_PREFIX,
)
#: The numeric attribute by which DynamoDB's TTL removes expired delivery
#: claims and stream markers.
EXPIRY_ATTRIBUTE = "expires"
#: Parameter names under the deployment's prefix.
DOMAIN_PARAMETER = "domain"
PRIVATE_KEYS: str = parameters.PRIVATE_KEYS


def state_machines(functions: Mapping[str, str]) -> dict[str, Definition]:
    """The workflows' definitions, each step calling the ARN ``functions`` gives."""
    return workflows.state_machines(functions)


def workflow_names() -> tuple[str, ...]:
    return workflows.WORKFLOW_NAMES


def event_patterns(bucket_name: str) -> dict[str, dict[str, Any]]:
    """The rule pattern of each workflow, for objects created in ``bucket_name``."""
    return workflows.event_patterns(bucket_name)


def stream_filter() -> dict[str, Any]:
    return workflows.stream_filter()


def function_environment(
    *,
    bucket: str,
    user_table: str,
    object_table: str,
    ssm_prefix: str,
    state_machines: Mapping[str, str],
) -> dict[str, str]:
    """What :meth:`AwsSettings.from_environ` reads; Lambda sets the region."""
    prefix = settings.PREFIX
    return {
        f"{prefix}BUCKET": bucket,
        f"{prefix}USER_TABLE": user_table,
        f"{prefix}OBJECT_TABLE": object_table,
        f"{prefix}SSM_PREFIX": ssm_prefix,
        **{
            f"{settings.STATE_MACHINE_PREFIX}{name.upper()}": arn
            for name, arn in state_machines.items()
        },
    }


def api_environment(
    *, user_pool_id: str, client_id: str, origin_secret: str
) -> dict[str, str]:
    """What ``ApiSettings.from_environ`` reads besides the backend's settings.

    ``MUMBLE_ORIGIN`` is left unset: the function reads the domain parameter.
    """
    prefix = settings.PREFIX
    return {
        f"{prefix}COGNITO_USER_POOL_ID": user_pool_id,
        f"{prefix}COGNITO_CLIENT_ID": client_id,
        f"{prefix}ORIGIN_SECRET": origin_secret,
    }
