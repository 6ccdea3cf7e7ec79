"""The package face of glimpse: one version, and one sentence naming the extra a feature needs."""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.extras import DISTRIBUTION, MODULES, MissingExtraError, require

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

runner = CliRunner()


def said(result) -> str:
    """The command's output as one line (the console wraps long lines)."""
    return " ".join(result.output.split())


def test_version_option_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"glimpse {glimpse.__version__}\n"


def test_installed_distribution_has_the_package_version():
    try:
        installed = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{DISTRIBUTION} is not installed here (tests run from the source tree)")
    assert installed == glimpse.__version__


def test_all_extra_installs_every_feature_extra():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    features = set(extras) - {"all", "test"}
    (everything,) = map(Requirement, extras["all"])
    assert (everything.name, everything.extras) == (DISTRIBUTION, features), "a new extra goes into `all` too"
    assert project["name"] == DISTRIBUTION and f"{DISTRIBUTION}[all]" in extras["test"]
    assert set(MODULES) <= features


@pytest.fixture
def without(monkeypatch):
    """Make ``import module`` fail as if it were not installed, and forget modules imported with it."""

    def hide(module: str, *importers: str) -> None:
        monkeypatch.setitem(sys.modules, module, None)  # None in sys.modules: ModuleNotFoundError
        for name in importers:
            monkeypatch.delitem(sys.modules, name, raising=False)

    return hide


def test_require_names_the_extra(without):
    without("matplotlib")
    with pytest.raises(MissingExtraError) as raised:
        require("eval", "plotting")
    assert str(raised.value) == "plotting needs the eval extra: pip install 'glimpse-retrieval[eval]'"
    assert isinstance(raised.value, ImportError) and raised.value.name == "matplotlib"


def test_serve_without_the_server_extra(without, tmp_path):
    without("fastapi", "glimpse.server", "glimpse.server.app")
    result = runner.invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 2
    assert said(result) == "error: glimpse serve needs the server extra: pip install 'glimpse-retrieval[server]'"


def test_server_import_without_the_server_extra(without):
    without("uvicorn", "glimpse.server", "glimpse.server.app")
    with pytest.raises(MissingExtraError, match=r"needs the server extra: pip install 'glimpse-retrieval\[server\]'"):
        import glimpse.server  # noqa: F401


def test_demo_without_the_demo_extra(without, tmp_path):
    without("skimage")
    result = runner.invoke(app, ["demo", "-c", str(tmp_path / "demo")])
    assert result.exit_code == 2
    assert said(result).endswith("error: glimpse demo without a folder of your own needs the demo extra: "
                                 "pip install 'glimpse-retrieval[demo]'")
    assert not (tmp_path / "demo").exists()


def test_eval_without_the_eval_extra_stops_before_any_work(without, tmp_path):
    without("matplotlib")
    result = runner.invoke(app, ["eval", "groups", str(tmp_path / "no-such-dataset")])
    assert result.exit_code == 2
    assert said(result) == "error: glimpse eval needs the eval extra: pip install 'glimpse-retrieval[eval]'"
