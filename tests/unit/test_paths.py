"""The shipped data inside the package, `configs/NAME.yaml` naming it, and --version."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import swarm
from swarm.cli import app
from swarm.config import load_config
from swarm.errors import BadInput
from swarm.paths import DATA_DIR, data_dirs, is_shipped, resolve_config, shipped
from swarm.plan import resolve_repo


def test_the_data_ships_inside_the_package() -> None:
    assert DATA_DIR == Path(swarm.__file__).resolve().parent / "data"
    for name in ("agents", "topologies", "configs", "examples"):
        assert shipped(name).is_dir(), name
    assert shipped("examples", "calc", ".gitignore").is_file()  # hidden files ship too
    assert data_dirs("agents") == [DATA_DIR / "agents"]


def test_a_bare_configs_name_is_the_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config(Path("configs/mesh10.yaml")) == DATA_DIR / "configs" / "mesh10.yaml"
    assert resolve_config(Path("configs/nope.yaml")) == Path("configs/nope.yaml")
    assert resolve_config(Path("mesh10.yaml")) == Path("mesh10.yaml")
    absolute = tmp_path / "configs" / "mesh10.yaml"
    assert resolve_config(absolute) == absolute
    # one of your own wins
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mesh10.yaml").write_text("name: mine\n")
    assert resolve_config(Path("configs/mesh10.yaml")) == Path("configs/mesh10.yaml")


def test_a_shipped_configs_repo_is_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_config(shipped("configs", "mesh10.yaml"))
    assert is_shipped(loaded.path)
    assert resolve_repo(loaded, None) == tmp_path.resolve()
    with pytest.raises(BadInput, match="shipped data"):
        resolve_repo(loaded, shipped("examples", "calc"))


def test_cli_version_and_shipped_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0
    assert out.stdout.strip() == f"swarm {swarm.version()}"
    assert swarm.version() == swarm.__version__  # the distribution's, where installed
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["validate", "configs/demo.yaml"])
    assert out.exit_code == 0, out.output
    assert "demo.yaml: ok (4 agents, 4 tasks, mesh topology)" in out.stdout
