"""moto in server mode, as the AWS account the AWS backend's tests run against.

One server per test session, on a free 127.0.0.1 port. Step Functions
executes state machines (moto's interpreter) and Lambda runs without Docker
(stub functions that return their input, or queued answers). Each test
starts from a reset account with the bucket, tables and parameters created
as the CDK app would create them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import urllib.request
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from mumble.backends.aws import AwsSettings

REGION = "us-east-1"
BUCKET = "mumble-test-media"
USER_TABLE = "mumble-test-users"
OBJECT_TABLE = "mumble-test-objects"
SSM_PREFIX = "/mumble-test"
DOMAIN = "social.example"
#: moto's account for every request.
ACCOUNT = "123456789012"

#: What moto needs to sign requests; no real credentials are involved.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def create_record_table(dynamodb: Any, name: str, *, streams: bool = False) -> None:
    """A table of the shape the AWS backend keeps records in (pk, sk)."""
    extra: dict[str, Any] = {}
    if streams:
        extra["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoService:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> MotoService:
        for name, value in FAKE_CREDENTIALS.items():
            os.environ[name] = value
        # moto's Step Functions interpreter calls Lambda through this port.
        os.environ["MOTO_PORT"] = str(self.port)
        # One line per request otherwise, in every failing test's report.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(
            ip_address="127.0.0.1", port=self.port, verbose=False
        )
        self._server.start()
        self.configure()
        return self

    def configure(self) -> None:
        self._post(
            "/moto-api/config",
            {
                "stepfunctions": {"execute_state_machine": True},
                "lambda": {"use_docker": False},
            },
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _post(self, path: str, body: dict[str, Any] | None = None) -> None:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def reset(self) -> None:
        self._post("/moto-api/reset")
        self.configure()

    def queue_lambda_results(self, results: list[Any]) -> None:
        """Answers the stub Lambda functions give, in invocation order."""
        self._post(
            "/moto-api/static/lambda-simple/response",
            {"results": [json.dumps(r) for r in results], "region": REGION},
        )

    @functools.cache  # noqa: B019 - one service per session, clients are reused
    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.url)

    def settings(self, **overrides: Any) -> AwsSettings:
        values: dict[str, Any] = {
            "region": REGION,
            "endpoint_url": self.url,
            "bucket": BUCKET,
            "user_table": USER_TABLE,
            "object_table": OBJECT_TABLE,
            "ssm_prefix": SSM_PREFIX,
            "max_attempts": 4,
            "poll_seconds": 0.2,
        }
        return AwsSettings(**(values | overrides))

    def environ(self) -> dict[str, str]:
        """The ``MUMBLE_*`` variables a Lambda function of this deployment gets."""
        return {
            "MUMBLE_AWS_REGION": REGION,
            "MUMBLE_AWS_ENDPOINT_URL": self.url,
            "MUMBLE_BUCKET": BUCKET,
            "MUMBLE_USER_TABLE": USER_TABLE,
            "MUMBLE_OBJECT_TABLE": OBJECT_TABLE,
            "MUMBLE_SSM_PREFIX": SSM_PREFIX,
        }

    def create_resources(self) -> AwsSettings:
        """Reset the account and create what the deployment would."""
        self.reset()
        self.client("s3").create_bucket(Bucket=BUCKET)
        dynamodb = self.client("dynamodb")
        for table in (USER_TABLE, OBJECT_TABLE):
            create_record_table(dynamodb, table, streams=True)
            dynamodb.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"},
            )
        self.client("ssm").put_parameter(
            Name=f"{SSM_PREFIX}/domain", Value=DOMAIN, Type="String"
        )
        return self.settings()


_shared: MotoService | None = None


def shared_service() -> MotoService:
    """The session's moto server, started on first use."""
    global _shared
    if _shared is None:
        _shared = MotoService().start()
    return _shared


def stop_shared_service() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None


def require_aws_tests() -> None:
    """Skip unless ``MUMBLE_TEST_AWS`` asks for the AWS tests (only moto is known)."""
    import pytest

    wanted = os.environ.get("MUMBLE_TEST_AWS", "")
    if not wanted:
        pytest.skip("set MUMBLE_TEST_AWS=moto to test the AWS backend against moto")
    if wanted != "moto":
        pytest.fail(f"MUMBLE_TEST_AWS={wanted}: only 'moto' is supported")
