"""The Lambda code: the ``mumble`` package plus Linux wheels, bundled locally.

Synthesis copies files and nothing else: no Docker, no network. The wheels
come from a folder built beforehand for the Lambda platform by::

    python -m mumble_cdk.bundling build/lambda-dependencies

which runs ``pip install --platform manylinux_2_34_aarch64 (and the older
manylinux tags) --only-binary=:all: --python-version 3.12 --target ...`` for
the requirements of ``mumble[aws]`` (network needed, once) and marks the
folder with the platform it was built for. ``cdk synth`` and ``cdk deploy``
take that folder as ``-c lambdaDependencies=PATH``; a folder built for
another platform is refused, because aiohttp, cryptography and nh3 ship
compiled code. The tests pass a marked stand-in folder the same way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import cast

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

import mumble

#: The newest Python that setup.cfg declares support for.
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
#: pip's names for the platform above; keep them in step. The Python 3.12
#: runtime is Amazon Linux 2023 (glibc 2.34), and pip does not widen a
#: ``manylinux_2_x`` tag to older ones by itself.
PIP_PLATFORMS = (
    "manylinux_2_34_aarch64",
    "manylinux_2_28_aarch64",
    "manylinux2014_aarch64",
)
PIP_PYTHON_VERSION = "3.12"
PLATFORM_TAG = f"cp{PIP_PYTHON_VERSION.replace('.', '')}-{PIP_PLATFORMS[0]}"

#: The file naming the platform a dependency folder was built for.
MARKER = ".mumble-lambda-platform"
EXTRA = "aws"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


class BundlingError(RuntimeError):
    """The Lambda code cannot be assembled as asked."""


def requirements() -> list[str]:
    """What ``mumble[aws]`` needs at run time, from the installed metadata."""
    found = []
    for spec in requires("mumble") or []:
        requirement, _, marker = (part.strip() for part in spec.partition(";"))
        if not marker or marker.replace("'", '"') == f'extra == "{EXTRA}"':
            found.append(requirement)
    return found


def pip_command(target: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--target",
        str(target),
        *(option for tag in PIP_PLATFORMS for option in ("--platform", tag)),
        "--implementation",
        "cp",
        "--python-version",
        PIP_PYTHON_VERSION,
        "--only-binary=:all:",
        *requirements(),
    ]


def mark(folder: Path) -> None:
    """Record that ``folder`` holds packages for the Lambda platform."""
    (folder / MARKER).write_text(PLATFORM_TAG + "\n")


def build_dependencies(target: Path) -> None:
    """Install the Linux wheels into an emptied ``target`` (needs the network)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    subprocess.run(pip_command(target), check=True)
    mark(target)


def check_dependencies(folder: Path) -> None:
    marker = folder / MARKER
    if not marker.is_file():
        raise BundlingError(
            f"{folder} was not built for Lambda; run "
            f"'python -m mumble_cdk.bundling {folder}' first"
        )
    built_for = marker.read_text().strip()
    if built_for != PLATFORM_TAG:
        raise BundlingError(f"{folder} holds {built_for} packages, not {PLATFORM_TAG}")


def _package_version() -> str:
    try:
        return version("mumble")
    except PackageNotFoundError:
        return "0"


def assemble(output: Path, dependencies: Path) -> None:
    """Copy the wheels, then the ``mumble`` package over them, into ``output``."""
    check_dependencies(dependencies)
    shutil.copytree(dependencies, output, ignore=_IGNORE, dirs_exist_ok=True)
    (output / MARKER).unlink()
    package = Path(mumble.__file__).parent
    shutil.copytree(package, output / "mumble", ignore=_IGNORE, dirs_exist_ok=True)
    # nodeinfo reports the installed version; without metadata it says "0".
    info = output / f"mumble-{_package_version()}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: mumble\nVersion: {_package_version()}\n"
    )


@jsii.implements(ILocalBundling)
class _LocalCopy:
    def __init__(self, dependencies: Path) -> None:
        self.dependencies = dependencies

    # jsii passes the options as one struct, not as the keywords its Python
    # interface declares; hence the cast where this is handed to CDK.
    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        assemble(Path(output_dir), self.dependencies)
        return True


def lambda_code(dependencies: Path | None) -> lambda_.Code:
    """One asset for every function; its hash follows the copied files."""
    if dependencies is None:
        raise BundlingError(
            "pass -c lambdaDependencies=FOLDER, built with "
            "'python -m mumble_cdk.bundling FOLDER'"
        )
    check_dependencies(dependencies)
    return lambda_.Code.from_asset(
        str(Path(mumble.__file__).parent),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds or raises.
            image=DockerImage.from_registry("scratch"),
            local=cast(ILocalBundling, _LocalCopy(dependencies.resolve())),
        ),
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m mumble_cdk.bundling DEPENDENCY_FOLDER")
    build_dependencies(Path(args[0]))


if __name__ == "__main__":
    main()
