"""The templates under test, parsed the way cfn-lint parses them (short-form tags
such as !Ref become their long form, e.g. {"Ref": ...})."""

from functools import cache
from pathlib import Path

from cfnlint.decode import cfn_yaml

INFRASTRUCTURE = Path(__file__).resolve().parent.parent
ROOT_TEMPLATE = INFRASTRUCTURE / "adtrack.yaml"
BOOTSTRAP_TEMPLATE = INFRASTRUCTURE / "bootstrap.yaml"
STACKS = INFRASTRUCTURE / "stacks"


@cache
def load(path: Path) -> dict:
    """One template as plain dicts and lists (parsed once; do not modify it)."""
    return cfn_yaml.load(str(path))


def root() -> dict:
    """The root template."""
    return load(ROOT_TEMPLATE)


def nested_stacks() -> dict[str, Path]:
    """The root's nested stacks: logical id -> template path."""
    return {
        logical_id: (INFRASTRUCTURE / resource["Properties"]["TemplateURL"])
        for logical_id, resource in root()["Resources"].items()
        if resource["Type"] == "AWS::CloudFormation::Stack"
    }


def nested(logical_id: str) -> dict:
    """The template of one nested stack of the root, by its logical id."""
    return load(nested_stacks()[logical_id])


def all_templates() -> dict[str, dict]:
    """Every template: file name -> parsed template."""
    paths = [ROOT_TEMPLATE, BOOTSTRAP_TEMPLATE, *sorted(STACKS.glob("*.yaml"))]
    return {path.name: load(path) for path in paths}
