"""cdk-nag (AwsSolutions) and cfn-lint on every synthesized template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Warnings CDK itself produces (not our resources): W3005 a DependsOn next to a GetAtt
# (CDK-generated providers, and the release guard's explicit DependsOn on its function).
# W3045 (access-log bucket ACLs) is no longer ignored: access logs use a bucket policy.
IGNORED = ["W3005"]


def test_cdk_nag_reports_no_unacknowledged_finding(synth):
    report = json.loads((synth.outdir / "validation-report.json").read_text()) if (
        synth.outdir / "validation-report.json").exists() else {"pluginReports": []}
    violations = [v for r in report["pluginReports"] for v in r.get("violations", [])]
    assert violations == []
    # Acknowledgments are recorded in the stacks' metadata, each with its reason.
    acknowledged: dict[str, str] = {}
    for path in synth.outdir.glob("*.metadata.json"):
        for entries in json.loads(path.read_text()).values():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    acknowledged.update(entry["data"])
    assert any("AwsSolutions-IAM5" in rule for rule in acknowledged)
    assert all(len(reason) > 30 for reason in acknowledged.values()), acknowledged


def test_cfn_lint_passes_on_every_template(synth):
    templates = sorted(str(p) for p in Path(synth.outdir).glob("*.template.json"))
    assert len(templates) == 3
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--ignore-checks", *IGNORED, "--", *templates],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_synth_without_a_region_passes_cdk_nag_too(tmp_path):
    """Offline with no region configured, ARNs keep `<AWS::Region>` references; nag still passes."""
    from infra.app import build_app
    from tests.integration.infra.conftest import SPEC, synth_environment

    with synth_environment(tmp_path, region=None):
        assembly = build_app({"conveyor:pipelines": [str(SPEC)]}, outdir=str(tmp_path / "cdk.out")).synth()
    assert len(assembly.stacks) == 3
