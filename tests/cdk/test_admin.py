"""The after-deployment commands, against moto in server mode.

Skipped unless ``MUMBLE_TEST_AWS`` is set. The resources are made here the
way the stack makes them (table keys, bucket, pool, stack outputs), then the
commands find them through the stack's outputs, as they do in AWS.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mumble.backends.aws.parameters import PRIVATE_KEYS
from mumble.backends.aws.tables import table_for
from mumble.signatures import load_private_key
from mumble_cdk import admin
from tests.aws.service import create_record_table

pytestmark = pytest.mark.skipif(
    not os.environ.get("MUMBLE_TEST_AWS"),
    reason="set MUMBLE_TEST_AWS to run the admin commands against moto",
)

REGION = "eu-west-1"
# moto keeps one state per process: names of their own keep these tests
# apart from the other suites' resources.
RUN = uuid.uuid4().hex[:8]
STACK = f"Mumble-admin-{RUN}"
PREFIX = f"/mumble/admin-{RUN}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)


@pytest.fixture(scope="module")
def deployed(endpoint: str) -> dict[str, str]:
    """The resources the commands need, and a stack whose outputs name them."""
    dynamodb = client(endpoint, "dynamodb")
    outputs = {"ParameterPrefix": PREFIX}
    for output, kind in (("UserTableName", "users"), ("ObjectTableName", "objects")):
        table = f"{kind}-{RUN}"
        create_record_table(dynamodb, table)
        outputs[output] = table
    outputs["BucketName"] = f"objects-{RUN}"
    client(endpoint, "s3").create_bucket(
        Bucket=outputs["BucketName"],
        CreateBucketConfiguration={"LocationConstraint": REGION},
    )
    pool = client(endpoint, "cognito-idp").create_user_pool(PoolName="owners")
    outputs["UserPoolId"] = pool["UserPool"]["Id"]
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    client(endpoint, "cloudformation").create_stack(
        StackName=STACK, TemplateBody=json.dumps(template)
    )
    return outputs


def run(endpoint: str, *args: str) -> int:
    return admin.main(
        ["--stack", STACK, "--region", REGION, "--endpoint-url", endpoint, *args]
    )


def test_create_user_makes_the_owner_record_and_key(
    endpoint: str, deployed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(endpoint, "create-user", "Alice", "--email", "alice@example.com") == 0
    assert "created alice" in capsys.readouterr().out

    cognito = client(endpoint, "cognito-idp")
    user = cognito.admin_get_user(UserPoolId=deployed["UserPoolId"], Username="alice")
    attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert attributes["email"] == "alice@example.com"

    # The record lands where the backend reads it: the user table, as JSON.
    assert table_for(admin_settings(deployed), "users") == deployed["UserTableName"]
    item = client(endpoint, "dynamodb").get_item(
        TableName=deployed["UserTableName"],
        Key={"pk": {"S": "users"}, "sk": {"S": "alice"}},
    )["Item"]
    record = json.loads(item["value"]["S"])
    assert record["username"] == "alice"
    assert "BEGIN PUBLIC KEY" in record["public_key_pem"]

    parameter = client(endpoint, "ssm").get_parameter(
        Name=f"{PREFIX}/{PRIVATE_KEYS}/alice", WithDecryption=True
    )["Parameter"]
    assert parameter["Type"] == "SecureString"
    key = load_private_key(json.loads(parameter["Value"])["pem"])
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size >= 2048


def test_create_user_twice_is_refused(
    endpoint: str, deployed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(endpoint, "create-user", "bob", "--email", "bob@example.com") == 0
    assert run(endpoint, "create-user", "bob", "--email", "bob@example.com") == 1
    assert "exists already" in capsys.readouterr().err


def test_a_cognito_account_left_by_a_failed_run_is_reused(
    endpoint: str, deployed: dict[str, str]
) -> None:
    client(endpoint, "cognito-idp").admin_create_user(
        UserPoolId=deployed["UserPoolId"], Username="carol"
    )
    assert run(endpoint, "create-user", "carol", "--email", "carol@example.com") == 0


def test_set_domain_writes_the_parameter_the_backend_reads(
    endpoint: str, deployed: dict[str, str]
) -> None:
    assert run(endpoint, "set-domain", "https://Social.Example.com/") == 0
    parameter = client(endpoint, "ssm").get_parameter(Name=f"{PREFIX}/domain")
    assert parameter["Parameter"]["Value"] == "social.example.com"
    assert run(endpoint, "set-domain", "not a host") == 1


def test_overrides_stand_in_for_the_stack(
    endpoint: str, deployed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin.main(["--region", REGION, "set-domain", "a.example"]) == 1
    assert "--bucket" in capsys.readouterr().err
    args = ["--region", REGION, "--endpoint-url", endpoint]
    for option, output in admin.OUTPUTS.items():
        args += [f"--{output.replace('_', '-')}", deployed[option]]
    assert admin.main([*args, "set-domain", "b.example"]) == 0


def admin_settings(deployed: dict[str, str]) -> Any:
    return admin.Deployment(
        region=REGION,
        user_pool_id=deployed["UserPoolId"],
        bucket=deployed["BucketName"],
        user_table=deployed["UserTableName"],
        object_table=deployed["ObjectTableName"],
        parameter_prefix=PREFIX,
    ).aws_settings()
