"""The Python snippets of docs/plugins/*.md run: each hook implementation registers with a
real plugin host (pluggy checks its arguments against the spec), each registration hook
is called with a real `Register`, and every import a snippet makes is public."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs" / "plugins").glob("*.md"))


def snippets() -> list[tuple[str, int, str]]:
    out = []
    for doc in DOCS:
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)):
            out.append((doc.name, i, code))
    return out


class _Placeholders(dict):
    """A snippet's globals: a name it leaves to the reader (``MyBackend``, ``chat``) is a
    stand-in object; ``hookimpl`` and every import are the real ones."""

    def __missing__(self, name: str) -> object:
        if name in dir(__builtins__) if isinstance(__builtins__, types.ModuleType) \
                else name in __builtins__:
            raise KeyError(name)
        value = type(name, (), {"__call__": lambda self, *a, **k: self})()
        self[name] = value
        return value


def _imports(code: str) -> list[str]:
    return re.findall(r"^\s*(?:from|import)\s+(tts_ops[\w.]*)", code, re.M)


@pytest.mark.parametrize(("doc", "index", "code"), snippets(),
                         ids=[f"{d}-{i}" for d, i, _ in snippets()])
def test_a_snippet_runs_against_the_real_host(doc, index, code):
    from tts_ops import plugin
    from tts_ops.plugins import PluginHost
    from tts_ops.registry import Register

    for module in _imports(code):  # plugins import the public API only
        public = ("tts_ops.plugin", *plugin.PUBLIC_MODULES)
        assert any(module == p or module.startswith(p + ".") for p in public), module
    namespace = _Placeholders(__name__=f"snippet_{index}", hookimpl=plugin.hookimpl,
                              register=Register("backend"), __builtins__=__builtins__)
    exec(compile(code, f"{doc}[{index}]", "exec"), namespace)
    hooks = {n: f for n, f in dict(namespace).items() if n.startswith("tts_ops_")}
    if not hooks:
        return  # a fragment (a factory, a test class): it compiled and ran
    module = types.ModuleType(f"snippet_{doc}_{index}")
    module.__dict__.update(hooks)
    host = PluginHost(load_entrypoints=False, builtins=())
    host.register(module)  # a wrong argument name is a PluginValidationError
    core_commands = set(_core_commands())
    for name, function in hooks.items():
        kind = name.removeprefix("tts_ops_register_")
        if kind == name:
            continue
        register = Register(kind)
        function(register)
        assert register.names(), name
        if kind == "commands":
            assert not set(register.names()) & core_commands, register.names()


def _core_commands() -> list[str]:
    from tts_ops.cli import create_cli

    return list(create_cli().commands)


def test_the_docs_have_snippets_to_run():
    assert len(snippets()) >= 20
