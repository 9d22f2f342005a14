"""The wheel (and so the Docker image) holds no dev tool, and the CLI without them says so."""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools import find_namespace_packages  # type: ignore[import-untyped]

from pipeline.__main__ import DEV_COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


def shipped_packages() -> list[str]:
    """What setuptools puts in the wheel: pyproject's package discovery, as setuptools reads it
    (`[tool.setuptools.packages.find]` finds namespace packages too)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    found = find_namespace_packages(str(ROOT), include=find["include"],
                                    exclude=find.get("exclude", ()))
    return [str(name) for name in found]


def test_the_wheel_leaves_the_dev_tools_out() -> None:
    shipped = shipped_packages()
    assert not [name for name in shipped if name.startswith("pipeline.devtools")]
    assert {"pipeline", "pipeline.crm", "pipeline.console", "agents", "schemas"} <= set(shipped)
    assert (ROOT / "pipeline" / "devtools" / "crmdouble").is_dir()  # the exclusion is no no-op


def test_nothing_shipped_imports_a_dev_tool() -> None:
    """The worker and the operator tools run without pipeline/devtools; only the CLI looks for it,
    and copes when it is not there (below)."""
    offenders = []
    for path in [*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("agents/**/*.py")]:
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("pipeline/devtools/") or relative == "pipeline/__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{relative}: {n}" for n in names if n.startswith("pipeline.devtools")]
    assert not offenders


def test_the_dev_commands_are_the_ones_the_cli_refuses_without_them() -> None:
    from pipeline.devtools.cli import add_dev_parsers

    sub = argparse.ArgumentParser().add_subparsers()
    add_dev_parsers(sub)
    assert tuple(sub.choices) == DEV_COMMANDS


@pytest.mark.parametrize("command", DEV_COMMANDS)
def test_an_install_without_dev_tools_refuses_a_dev_command_in_one_line(
        command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pipeline.devtools", None)  # as if never installed
    monkeypatch.setitem(sys.modules, "pipeline.devtools.cli", None)
    assert main([command, "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"python -m pipeline {command}: a dev tool, not in this install" in err
    with pytest.raises(SystemExit):  # --help still lists every command
        main(["--help"])
    assert command in capsys.readouterr().out
