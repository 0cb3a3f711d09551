"""AWS settings and imports: nothing read or built before a factory asks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mumble import Settings
from mumble.backends import create_backend
from mumble.backends.aws import AwsBackend, AwsSettings
from mumble.backends.aws.settings import AwsConfigurationError

ENVIRON = {
    "MUMBLE_AWS_REGION": "eu-west-1",
    "MUMBLE_BUCKET": "media",
    "MUMBLE_USER_TABLE": "users",
    "MUMBLE_OBJECT_TABLE": "objects",
    "MUMBLE_SSM_PREFIX": "prod/mumble/",
    "MUMBLE_STATE_MACHINE_DELIVER": "arn:aws:states:eu-west-1:1:stateMachine:d",
    "MUMBLE_AWS_MAX_ATTEMPTS": "5",
}


def test_settings_come_from_mumble_variables() -> None:
    settings = AwsSettings.from_environ(ENVIRON)
    assert settings.region == "eu-west-1"
    assert (settings.bucket, settings.user_table, settings.object_table) == (
        "media",
        "users",
        "objects",
    )
    assert settings.ssm_prefix == "/prod/mumble"
    assert settings.endpoint_url is None
    assert settings.state_machines == {
        "deliver": "arn:aws:states:eu-west-1:1:stateMachine:d"
    }
    assert settings.max_attempts == 5


def test_lambda_region_is_the_fallback() -> None:
    environ = {k: v for k, v in ENVIRON.items() if k != "MUMBLE_AWS_REGION"}
    assert AwsSettings.from_environ(environ | {"AWS_REGION": "us-west-2"}).region == (
        "us-west-2"
    )


def test_every_missing_variable_is_named() -> None:
    with pytest.raises(AwsConfigurationError) as caught:
        AwsSettings.from_environ({"MUMBLE_BUCKET": "media"})
    assert caught.value.status == 500
    for name in ("MUMBLE_AWS_REGION", "MUMBLE_USER_TABLE", "MUMBLE_OBJECT_TABLE"):
        assert name in caught.value.message
    assert "MUMBLE_BUCKET" not in caught.value.message


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("yes", False),
        ("1", True),
        ("true", True),
        ("TRUE", True),
    ],
)
def test_private_addresses_are_allowed_only_when_asked_for(
    value: str | None, allowed: bool
) -> None:
    environ = (
        ENVIRON
        if value is None
        else ENVIRON | {"MUMBLE_ALLOW_PRIVATE_ADDRESSES": value}
    )
    assert AwsSettings.from_environ(environ).allow_private_addresses is allowed


def test_bad_numbers_are_a_configuration_error() -> None:
    with pytest.raises(AwsConfigurationError):
        AwsSettings.from_environ(ENVIRON | {"MUMBLE_AWS_MAX_ATTEMPTS": "many"})
    with pytest.raises(AwsConfigurationError):
        AwsSettings.from_environ(ENVIRON | {"MUMBLE_AWS_RETRY_MODE": "legacy"})


def test_create_backend_builds_the_aws_backend_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    backend = create_backend(Settings(origin="https://social.example", backend="aws"))
    assert isinstance(backend, AwsBackend)
    assert backend.settings == AwsSettings.from_environ(ENVIRON)


def test_importing_reads_nothing_and_loads_no_aws_sdk() -> None:
    """The package, the workflows and the handlers import with an empty environment."""
    code = (
        "import sys\n"
        "import mumble.backends.aws as aws\n"
        "import mumble.backends.aws.workflows\n"
        "assert 'botocore' not in sys.modules, 'botocore was imported'\n"
        "import mumble.backends.aws.handlers as h\n"
        "assert 'aiobotocore.session' not in sys.modules\n"
        "assert h._container is None\n"
        "print(aws.AwsSettings.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={},
        cwd=Path(__file__).parents[2],
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "AwsSettings"
