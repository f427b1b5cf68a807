"""The docs keep up with the code: every hook has a heading with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from tts_ops import hookspecs

ROOT = Path(__file__).resolve().parents[1]


def hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("tts_ops_"))


def test_every_hook_is_documented_with_its_signature():
    doc = (ROOT / "docs" / "plugins" / "hooks.md").read_text()
    headings = re.findall(r"^### `(tts_ops_\w+)\((.*)\)`$", doc, flags=re.M)
    documented = {name: args for name, args in headings}
    assert sorted(documented) == hook_names()
    for name in hook_names():
        params = list(inspect.signature(getattr(hookspecs, name)).parameters)
        assert documented[name] == ", ".join(params), name


def test_every_hook_has_a_docstring():
    for name in hook_names():
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name


def test_readme_opens_with_two_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.S)
    first = [ln.split("#")[0].strip() for ln in blocks[0].splitlines()]
    first = [ln for ln in first if ln]
    assert first == ["./deploy.sh", "./test.sh"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./test.sh" in ci


def test_the_public_api_is_documented_and_every_name_resolves():
    from tts_ops import plugin

    doc = (ROOT / "docs" / "plugins" / "writing-a-plugin.md").read_text()
    section = doc.split("## What is public and stable", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Za-z_]+)`", section.split("Besides", 1)[0]))
    assert set(plugin.__all__) <= documented
    for name in plugin.__all__:
        assert getattr(plugin, name) is not None
    for module in plugin.PUBLIC_MODULES:
        assert f"`{module}`" in section
        __import__(module)


def test_the_command_reference_is_current():
    """docs/cli.md is what ``python -m tts_ops.cli.reference`` prints for these commands;
    regenerate it after changing a command."""
    from tts_ops.cli import create_cli
    from tts_ops.cli.reference import render

    assert (ROOT / "docs" / "cli.md").read_text() == render(create_cli()), (
        "docs/cli.md is stale: python -m tts_ops.cli.reference > docs/cli.md")


def test_the_import_allow_list_is_the_public_api():
    """pyproject's plugin-boundary contract allows exactly `tts_ops.plugin` and its
    PUBLIC_MODULES (an allow-list: every other module of tts_ops is private)."""
    import tomllib

    from tts_ops import plugin

    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in settings["contracts"] if c["type"] == "allowlist"]
    assert sorted(contract["allowed"]) == sorted(["tts_ops.plugin", *plugin.PUBLIC_MODULES])
