"""checkov and cfn-guard (with the AWS Control Tower rules) over the templates, their
findings as (tool, check, template, resource), and the reviewed allow-list of findings.

`cargo xtask infrastructure test` installs both tools and names them in CHECKOV,
CFN_GUARD and CFN_GUARD_RULES; without those variables the tests fail, they never skip.
"""

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from templates import INFRASTRUCTURE

ALLOWLIST = INFRASTRUCTURE / "checks-allowlist.yaml"


@dataclass(frozen=True, order=True)
class Finding:
    """One check that one resource of one template fails."""

    tool: str
    check: str
    template: str
    resource: str

    def __str__(self) -> str:
        return f"{self.tool} {self.check} {self.template} {self.resource}"


def tool(variable: str) -> str:
    value = os.environ.get(variable)
    assert value, f"{variable} is not set: run `cargo xtask infrastructure test`, which installs the tool"
    return value


def checkov_findings() -> set[Finding]:
    """checkov's failed checks over every template under infrastructure/."""
    result = subprocess.run(
        [
            tool("CHECKOV"), "--quiet", "--compact", "--skip-download",
            "--framework", "cloudformation", "--output", "json",
            "--directory", str(INFRASTRUCTURE),
        ],
        capture_output=True, text=True, check=False, env=os.environ | {"BC_SKIP_MAPPING": "TRUE"},
    )
    # checkov exits 1 when a check fails; anything else, or no JSON, is a broken run.
    assert result.returncode in (0, 1), result.stderr
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert reports, "checkov checked nothing"
    findings = set()
    for report in reports:
        assert report["check_type"] == "cloudformation", report["check_type"]
        assert report["summary"]["passed"] > 0, "checkov passed nothing: did it read the templates?"
        for failed in report["results"]["failed_checks"]:
            resource = failed["resource"].rsplit(".", 1)[-1]
            findings.add(Finding("checkov", failed["check_id"], failed["file_path"].lstrip("/"), resource))
    return findings


def guard_findings(templates: list[Path]) -> set[Finding]:
    """cfn-guard's non-compliant rules, per resource, over `templates`."""
    command = [tool("CFN_GUARD"), "validate", "--rules", tool("CFN_GUARD_RULES")]
    for template in templates:
        command += ["--data", str(template)]
    command += ["--output-format", "json", "--show-summary", "none", "--structured"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    # 0: all compliant, 19: some rule failed; anything else is a broken run.
    assert result.returncode in (0, 19), result.stderr
    files = json.loads(result.stdout)
    assert {Path(file["name"]).resolve() for file in files} == {t.resolve() for t in templates}
    findings = set()
    for file in files:
        template = str(Path(file["name"]).resolve().relative_to(INFRASTRUCTURE))
        for failed in file["not_compliant"]:
            rule = failed["Rule"]
            for resource in resources_in(rule):
                findings.add(Finding("cfn-guard", rule["name"], template, resource))
    return findings


def resources_in(report) -> set[str]:
    """The logical ids of the resources a cfn-guard rule report points at."""
    found = set()
    if isinstance(report, dict):
        for key, value in report.items():
            if key == "path" and isinstance(value, str) and value.startswith("/Resources/"):
                found.add(value.split("/")[2])
            else:
                found |= resources_in(value)
    elif isinstance(report, list):
        for value in report:
            found |= resources_in(value)
    return found


def allowlisted() -> dict[Finding, str]:
    """The reviewed findings, each with the reason it is accepted."""
    entries = yaml.safe_load(ALLOWLIST.read_text())
    accepted = {}
    for tool_name, checks in entries.items():
        for check, entry in checks.items():
            reason = entry.get("reason", "").strip()
            assert len(reason) > 20, f"{tool_name} {check}: every allow-list entry needs its reason"
            for where in entry["resources"]:
                template, resource = where.split()
                accepted[Finding(tool_name, check, template, resource)] = reason
    return accepted
