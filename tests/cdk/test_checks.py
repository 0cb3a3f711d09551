"""cfn-lint and cdk-nag on the synthesized templates."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import CDK_DIR, Synthesis

PACK = "AwsSolutions::"


def ignored_rules(config: str) -> dict[str, str]:
    """Each rule ``ignore_checks`` lists, with the comment just above it."""
    rules: dict[str, str] = {}
    comment: list[str] = []
    listing = False
    for line in config.splitlines():
        text = line.strip()
        if not line.startswith(" ") and text:
            listing = text == "ignore_checks:"
            comment = []
        elif listing and text.startswith("#"):
            comment.append(text.lstrip("# "))
        elif listing and text.startswith("- "):
            rules[text[2:].strip()] = " ".join(comment)
            comment = []
    return rules


def test_every_rule_cfn_lint_ignores_says_why() -> None:
    rules = ignored_rules((CDK_DIR / ".cfnlintrc.yaml").read_text())
    assert rules, "the config is read"
    unexplained = {
        rule: why
        for rule, why in rules.items()
        if not why.startswith(rule) or len(why) < len(rule) + 40
    }
    assert unexplained == {}


def test_the_reason_check_sees_a_rule_without_one() -> None:
    config = "ignore_checks:\n  # W1 because of x, y and z, at some length...\n  - W1\n  - E2\n"
    assert ignored_rules(config) == {
        "W1": "W1 because of x, y and z, at some length...",
        "E2": "",
    }


def test_cfn_lint_is_clean(synthesis: Synthesis) -> None:
    """Clean under cdk/.cfnlintrc.yaml, whose every ignored rule says why."""
    config = CDK_DIR / ".cfnlintrc.yaml"
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
    # Warnings do not fail a synthesis; they are findings all the same.
    report = json.loads((synthesis.outdir / "validation-report.json").read_text())
    [nag] = [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    open_findings = [
        (
            v["ruleName"],
            v["severity"],
            [c["constructPath"] for c in v["violatingConstructs"]],
        )
        for v in nag["violations"]
    ]
    assert open_findings == []
    assert nag["conclusion"] == "success"
    assert len(nag["suppressedViolations"]) > 20


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
