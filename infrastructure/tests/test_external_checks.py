"""checkov and cfn-guard with the AWS Control Tower rules, tools nobody here wrote: every
finding is either fixed in the templates or listed, with its reason, in
checks-allowlist.yaml, and the allow-list names no finding that is gone."""

from functools import cache

import pytest

import external_checks
import templates


@cache
def findings() -> frozenset:
    every_template = [templates.ROOT_TEMPLATE, templates.BOOTSTRAP_TEMPLATE, *sorted(templates.STACKS.glob("*.yaml"))]
    return frozenset(external_checks.checkov_findings() | external_checks.guard_findings(every_template))


@pytest.mark.parametrize("tool", ["checkov", "cfn-guard"])
def test_every_finding_is_fixed_or_allowlisted_with_a_reason(tool):
    accepted = external_checks.allowlisted()
    unlisted = sorted(str(f) for f in findings() if f.tool == tool and f not in accepted)
    assert not unlisted, (
        "fix these in the templates, or list them with a reason in checks-allowlist.yaml:\n"
        + "\n".join(unlisted)
    )


def test_the_allowlist_names_only_findings_that_still_occur():
    stale = sorted(str(f) for f in external_checks.allowlisted() if f not in findings())
    assert not stale, "remove these from checks-allowlist.yaml:\n" + "\n".join(stale)
