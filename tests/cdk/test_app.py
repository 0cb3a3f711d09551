"""The app: its Lambda code asset, and the options read from the context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mumble
from mumble_cdk import bundling
from mumble_cdk.config import ConfigError, from_context

from .conftest import STAND_IN_DEPENDENCY, Synthesis, make_dependencies


def asset_folder(synthesis: Synthesis) -> Path:
    """The one code asset every function of the production stack uses."""
    template = synthesis.templates["prod"]
    keys = {
        json.dumps(resource["Properties"]["Code"]["S3Key"])
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    assert len(keys) == 1
    asset_hash = json.loads(keys.pop()).removesuffix(".zip")
    return synthesis.outdir / f"asset.{asset_hash}"


def test_asset_holds_the_package_and_the_dependencies(synthesis: Synthesis) -> None:
    folder = asset_folder(synthesis)
    assert (folder / "mumble" / "backends" / "aws" / "handlers.py").is_file()
    assert (folder / "mumble" / "contexts" / "activitystreams.jsonld").is_file()
    assert (folder / STAND_IN_DEPENDENCY / "__init__.py").is_file()
    (metadata,) = folder.glob("mumble-*.dist-info/METADATA")
    assert "Name: mumble" in metadata.read_text()
    assert not (folder / bundling.MARKER).exists()
    assert not list(folder.rglob("__pycache__"))


def test_dependencies_not_built_for_lambda_are_refused(tmp_path: Path) -> None:
    with pytest.raises(bundling.BundlingError, match="not built for Lambda"):
        bundling.check_dependencies(tmp_path)
    (tmp_path / bundling.MARKER).write_text("cp311-manylinux_2_17_x86_64\n")
    with pytest.raises(bundling.BundlingError, match="x86_64"):
        bundling.check_dependencies(tmp_path)
    with pytest.raises(bundling.BundlingError, match="lambdaDependencies"):
        bundling.lambda_code(None)


def test_assemble_lets_the_package_win_over_a_vendored_copy(tmp_path: Path) -> None:
    dependencies = make_dependencies(tmp_path / "deps")
    (dependencies / "mumble").mkdir()
    (dependencies / "mumble" / "stale.py").write_text("")
    output = tmp_path / "out"
    bundling.assemble(output, dependencies)
    assert (output / "mumble" / "stale.py").exists()  # merged, as pip left it
    assert (output / "mumble" / "app.py").read_text() == (
        Path(mumble.__path__[0]) / "app.py"
    ).read_text()


def test_pip_builds_wheels_for_the_lambda_platform(tmp_path: Path) -> None:
    command = bundling.pip_command(tmp_path)
    assert command[command.index("--python-version") + 1] == "3.12"
    platforms = [command[i + 1] for i, a in enumerate(command) if a == "--platform"]
    assert platforms[0] == "manylinux_2_34_aarch64"
    assert all(p.endswith("aarch64") for p in platforms)
    assert "--only-binary=:all:" in command
    names = {
        r.split("<")[0].split(">")[0].split("[")[0] for r in bundling.requirements()
    }
    assert {"aiohttp", "cryptography", "aiobotocore", "PyJWT"} <= names
    assert not names & {"aws-cdk-lib", "pytest", "moto"}
    assert bundling.RUNTIME.name == f"python{bundling.PIP_PYTHON_VERSION}"
    assert bundling.ARCHITECTURE.name == "arm64"


class Node:
    def __init__(self, **context: str) -> None:
        self.context = context

    def try_get_context(self, key: str) -> str | None:
        return self.context.get(key)


def test_context_chooses_the_stage_and_domain() -> None:
    arn = "arn:aws:acm:us-east-1:123456789012:certificate/abc"
    config = from_context(
        Node(stage="prod", domainName="Social.Example", certificateArn=arn)  # type: ignore[arg-type]
    )
    assert config.stage.name == "prod"
    assert config.domain is not None
    assert (config.domain.name, config.domain.certificate_arn) == (
        "social.example",
        arn,
    )
    assert from_context(Node()).stage.name == "dev"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"stage": "qa"}, "stage must be one of"),
        (
            {"certificateArn": "arn:aws:acm:us-east-1:1:certificate/x"},
            "needs domainName",
        ),
        (
            {
                "domainName": "a.example",
                "certificateArn": "arn:aws:acm:eu-west-1:1:certificate/x",
            },
            "us-east-1",
        ),
        ({"domainName": "a.example", "certificateArn": "nonsense"}, "not an ACM"),
    ],
)
def test_context_refuses_what_cannot_be_deployed(
    context: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        from_context(Node(**context))  # type: ignore[arg-type]


def test_build_reads_the_stage_and_makes_a_us_east_1_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_certificatemanager as acm

    from mumble_cdk.app import build

    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "123456789012")
    monkeypatch.setenv("CDK_DEFAULT_REGION", "us-east-1")
    app = cdk.App(
        context={
            "stage": "prod",
            "domainName": "social.example",
            "lambdaDependencies": str(make_dependencies(tmp_path / "deps")),
        },
        outdir=str(tmp_path / "out"),
    )
    stack = build(app)
    assert stack.stack_name == "Mumble-prod"
    assert stack.region == "us-east-1"
    assert isinstance(stack.distribution.certificate, acm.Certificate)


def test_a_created_certificate_needs_us_east_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aws_cdk as cdk

    from mumble_cdk.app import build

    monkeypatch.setenv("CDK_DEFAULT_REGION", "eu-west-1")
    app = cdk.App(
        context={
            "domainName": "social.example",
            "lambdaDependencies": str(make_dependencies(tmp_path / "deps")),
        },
        outdir=str(tmp_path / "out"),
    )
    with pytest.raises(ConfigError, match="us-east-1"):
        build(app)
