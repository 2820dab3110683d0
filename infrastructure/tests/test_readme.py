"""The runbook's parameter table (infrastructure/README.md) names exactly the root
template's parameters, with their defaults: the table is what operators read."""

import re

import templates

README = templates.INFRASTRUCTURE / "README.md"


def parameter_rows() -> list[tuple[list[str], list[str]]]:
    """(names, defaults) of each row of the README's parameter table."""
    section = README.read_text().split("## Parameters", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[1] in ("parameter", "---"):
            continue
        names = []
        for name in re.findall(r"`([A-Za-z0-9{},]+)`", cells[1]):
            expanded = re.sub(r"\{([^}]+)\}", "{}", name)
            variants = re.search(r"\{([^}]+)\}", name)
            names += [expanded.format(v) for v in variants.group(1).split(",")] if variants else [name]
        defaults = [value.strip().strip("`") for value in re.split(r" / |, ", cells[2])] if cells[2] else []
        rows.append((names, defaults))
    return rows


def test_the_parameter_table_names_every_root_parameter_and_nothing_else():
    documented = [name for names, _ in parameter_rows() for name in names]
    assert sorted(documented) == sorted(templates.root()["Parameters"])


def test_the_parameter_table_gives_the_template_defaults():
    parameters = templates.root()["Parameters"]
    checked = 0
    for names, defaults in parameter_rows():
        if len(names) != len(defaults):
            continue
        checked += len(names)
        for name, default in zip(names, defaults):
            expected = str(parameters[name].get("Default", ""))
            shown = "" if default == "empty" else default.split(" ")[0]
            assert shown == expected, f"{name}: README says {default!r}, the template {expected!r}"
    assert checked >= 30, "the table's defaults could not be read"
