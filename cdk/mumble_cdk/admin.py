"""After deployment: create the Mumble user, and set the domain name.

::

    python -m mumble_cdk.admin --stack Mumble-prod create-user alice \\
        --email alice@example.com
    python -m mumble_cdk.admin --stack Mumble-prod set-domain social.example.com

Where things are is read from the stack's outputs; each option overrides
one (``--endpoint-url`` points every client at an emulator, as the tests
do). ``create-user`` creates the owner's Cognito account, which emails a
temporary password, and the Mumble user through the AWS backend's own code:
its record in the user table and its RSA key as a SecureString parameter.
Keys are made here, after deployment, and are never in a template.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3  # type: ignore[import-untyped]

from mumble.backends.aws import AwsBackend, AwsSettings
from mumble.errors import MumbleError
from mumble.users import Users

from . import package

#: Stack output -> the setting it gives.
OUTPUTS = {
    "UserPoolId": "user_pool_id",
    "BucketName": "bucket",
    "UserTableName": "user_table",
    "ObjectTableName": "object_table",
    "ParameterPrefix": "parameter_prefix",
}
_HOST = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}(:\d{1,5})?$"
)


class AdminError(Exception):
    """A failure to report in one line, with a non-zero exit."""


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """Where one deployment's resources are."""

    region: str
    user_pool_id: str
    bucket: str
    user_table: str
    object_table: str
    parameter_prefix: str
    endpoint_url: str | None = None

    def client(self, service: str) -> Any:
        return boto3.client(
            service, region_name=self.region, endpoint_url=self.endpoint_url
        )

    def aws_settings(self) -> AwsSettings:
        return AwsSettings(
            region=self.region,
            bucket=self.bucket,
            user_table=self.user_table,
            object_table=self.object_table,
            ssm_prefix=self.parameter_prefix,
            endpoint_url=self.endpoint_url,
        )


def stack_outputs(
    stack: str, *, region: str, endpoint_url: str | None
) -> dict[str, str]:
    client = boto3.client(
        "cloudformation", region_name=region, endpoint_url=endpoint_url
    )
    try:
        described = client.describe_stacks(StackName=stack)["Stacks"][0]
    except client.exceptions.ClientError as exc:
        raise AdminError(f"cannot read stack {stack}: {exc}") from exc
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def resolve(args: argparse.Namespace) -> Deployment:
    """The deployment the options name: stack outputs, then overrides."""
    region = args.region or boto3.session.Session().region_name
    if not region:
        raise AdminError("no region: pass --region or configure one")
    values: dict[str, str] = {}
    if args.stack:
        outputs = stack_outputs(
            args.stack, region=region, endpoint_url=args.endpoint_url
        )
        values = {OUTPUTS[k]: v for k, v in outputs.items() if k in OUTPUTS}
    values |= {
        name: getattr(args, name)
        for name in OUTPUTS.values()
        if getattr(args, name) is not None
    }
    missing = sorted(set(OUTPUTS.values()) - set(values))
    if missing:
        raise AdminError(f"pass --stack, or --{' --'.join(missing)}".replace("_", "-"))
    return Deployment(region=region, endpoint_url=args.endpoint_url, **values)


def create_cognito_user(deployment: Deployment, username: str, email: str) -> bool:
    """The owner's account, with a temporary password sent by email.

    False when it existed already (a second run after a failure).
    """
    cognito = deployment.client("cognito-idp")
    try:
        cognito.admin_create_user(
            UserPoolId=deployment.user_pool_id,
            Username=username,
            UserAttributes=[
                {"Name": "email", "Value": email},
                {"Name": "email_verified", "Value": "true"},
            ],
            DesiredDeliveryMediums=["EMAIL"],
        )
    except cognito.exceptions.UsernameExistsException:
        return False
    return True


async def create_mumble_user(deployment: Deployment, username: str, name: str) -> str:
    """The user's record and key pair, written by the backend; its actor path."""
    backend = AwsBackend(deployment.aws_settings())
    await backend.open()
    try:
        user, _token = await Users(backend).create(username, name=name)
    finally:
        await backend.close()
    # The owner signs in with Cognito; the framework's own token is not used.
    return f"/users/{user.username}"


def create_user(
    deployment: Deployment, username: str, *, email: str, name: str = ""
) -> str:
    """Create both halves of the owner; safe to run again after a failure."""
    username = username.lower()
    if asyncio.run(_user_exists(deployment, username)):
        raise AdminError(f"user {username} exists already")
    create_cognito_user(deployment, username, email)
    try:
        return asyncio.run(create_mumble_user(deployment, username, name))
    except MumbleError as exc:
        raise AdminError(exc.message) from exc


async def _user_exists(deployment: Deployment, username: str) -> bool:
    backend = AwsBackend(deployment.aws_settings())
    await backend.open()
    try:
        return await backend.get("users", username) is not None
    finally:
        await backend.close()


def set_domain(deployment: Deployment, domain: str) -> str:
    """Write the host name ids are built on; returns the parameter's name."""
    domain = domain.strip().lower().removeprefix("https://").rstrip("/")
    if not _HOST.match(domain):
        raise AdminError(f"{domain!r} is not a host name")
    name = f"{deployment.parameter_prefix.rstrip('/')}/{package.DOMAIN_PARAMETER}"
    deployment.client("ssm").put_parameter(
        Name=name, Value=domain, Type="String", Overwrite=True
    )
    return name


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m mumble_cdk.admin")
    root.add_argument("--stack", help="the deployed stack, e.g. Mumble-prod")
    root.add_argument("--region")
    root.add_argument("--endpoint-url", help="one endpoint for every AWS service")
    for option in OUTPUTS.values():
        root.add_argument(f"--{option.replace('_', '-')}", dest=option)
    commands = root.add_subparsers(dest="command", required=True)
    user = commands.add_parser("create-user", help="create the owner and their key")
    user.add_argument("username")
    user.add_argument("--email", required=True, help="where Cognito sends the password")
    user.add_argument("--name", default="", help="the display name")
    domain = commands.add_parser("set-domain", help="set the domain ids are built on")
    domain.add_argument("domain")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        deployment = resolve(args)
        if args.command == "create-user":
            path = create_user(
                deployment, args.username, email=args.email, name=args.name
            )
            print(f"created {args.username.lower()}, actor at {path}")
            print(f"Cognito emails {args.email} a temporary password")
        else:
            name = set_domain(deployment, args.domain)
            print(f"{name} = {args.domain}")
            print("new function instances build ids on it")
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
