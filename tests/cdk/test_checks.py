"""cfn-lint and cdk-nag on the synthesized templates."""

from __future__ import annotations

import subprocess
import sys

from .conftest import CDK_DIR, Synthesis

PACK = "AwsSolutions::"


def test_cfn_lint_is_clean(synthesis: Synthesis) -> None:
    """Clean under cdk/.cfnlintrc.yaml, whose every ignored rule says why."""
    config = CDK_DIR / ".cfnlintrc.yaml"
    assert "# W3005" in config.read_text()
    templates = [str(synthesis.template_path(stage)) for stage in ("prod", "dev")]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            "--config-file",
            str(config),
            "--",
            *templates,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cdk_nag_aws_solutions_is_clean(synthesis: Synthesis) -> None:
    assert synthesis.validation_error is None, synthesis.validation_error


def test_every_acknowledged_finding_has_a_reason(synthesis: Synthesis) -> None:
    acknowledged: dict[str, str] = {}
    for stage, metadata in synthesis.metadata.items():
        for path, entries in metadata.items():
            for entry in entries:
                if entry["type"] != "aws:cdk:acknowledged-rules":
                    continue
                for rule, reason in entry["data"].items():
                    if rule.startswith(PACK):
                        acknowledged[f"{stage} {path} {rule}"] = reason
    assert len(acknowledged) > 20
    short = {rule: reason for rule, reason in acknowledged.items() if len(reason) < 40}
    assert short == {}
    # Development alone may relax MFA and point-in-time recovery.
    assert not [k for k in acknowledged if k.startswith("prod") and "COG2" in k]
    assert not [k for k in acknowledged if k.startswith("prod") and "DDB3" in k]
    # With a custom domain, TLSv1.2 is enforced and nothing is acknowledged.
    assert not [k for k in acknowledged if k.startswith("dev") and "CFR4" in k]
