"""The built wheel installs anywhere: a fresh virtualenv, outside the checkout, gets a
working `swarm` whose shipped data (role cards, topologies, configs, the demo's example
repository) come from the package, and `swarm demo` runs from an empty directory.

The wheel is built from a copy of the sources (pyproject.toml, README.md, swarm/). The
new virtualenv has no pip and no packages of its own but the wheel: its dependencies are
this interpreter's, seen through a .pth file (a plain path: the editable install of this
checkout that lives there is not activated), so `swarm` comes from the wheel alone, which
the test checks. SWARM_WHEEL_FULL=1 installs the dependencies from the package index
instead (slower: Ray and the providers' SDKs)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from swarm import DIST_NAME, __version__
from swarm.paths import DATA_DIR

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("SWARM_WHEEL_FULL") == "1"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200 if FULL else 420)]


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{cmd}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "swarm", src / "swarm", ignore=skip)
    dist = tmp / "dist"
    if importlib.util.find_spec("build") is not None:
        cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)]
    run(cmd, cwd=tmp)
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    assert wheels[0].name.startswith(f"{DIST_NAME.replace('-', '_')}-{__version__}-"), wheels[0]
    return wheels[0]


def shipped_files() -> set[str]:
    """Every file of the shipped data in the checkout, hidden ones too, as wheel names."""
    out = set()
    for path in DATA_DIR.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            out.add("swarm/data/" + path.relative_to(DATA_DIR).as_posix())
    return out


def make_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    python = venv / "bin" / "python"
    site = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp
        ).stdout.strip()
    )
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    if FULL:
        run([*pip, str(wheel)], cwd=tmp, timeout=900)
        return venv
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_swarm_test_deps.pth").write_text("".join(f"{p}\n" for p in ours))
    run([*pip, "--no-deps", str(wheel)], cwd=tmp)
    # what the ripgrep wheel would put beside the interpreter in a real install
    rg = Path(sys.executable).parent / "rg"
    if rg.exists():
        (venv / "bin" / "rg").symlink_to(rg.resolve())
    return venv


def clean_env(ray_tmp: Path) -> dict[str, str]:
    drop = (
        "ANTHROPIC_",
        "OPENAI_",
        "MISTRAL_",
        "REDIS_URL",
        "RAY_ADDRESS",
        "PYTHON",
        "VIRTUAL_ENV",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["RAY_TMPDIR"] = str(ray_tmp)  # the demo's Ray processes are known by their paths
    return env


def ours(*marks: Path) -> list[psutil.Process]:
    """Processes whose command line names one of our folders (the venv, the empty
    directory, Ray's temp dir)."""
    found = []
    needles = [str(m) for m in marks]
    for p in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            line = " ".join(p.info["cmdline"] or [])
            if p.pid != os.getpid() and any(n in line for n in needles):
                found.append(p)
    return found


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="swh-", dir="/tmp"))  # short: Ray's socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_wheel_installs_and_runs_the_demo_from_an_empty_directory(
    tmp_path: Path, ray_tmp: Path
) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert shipped_files() <= names, sorted(shipped_files() - names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "swarm = swarm.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()

    venv = make_venv(tmp_path, wheel)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = clean_env(ray_tmp)
    python, swarm = str(venv / "bin" / "python"), str(venv / "bin" / "swarm")

    where = run(
        [
            python,
            "-c",
            "import importlib.metadata as m, swarm, swarm.paths as p; "
            f"d = m.distribution({DIST_NAME!r}); "
            "print(swarm.__file__); print(p.DATA_DIR); print(d.locate_file('')); print(d.version)",
        ],
        cwd=empty,
        env=env,
    ).stdout.split("\n")
    for line in where[:3]:
        assert Path(line).resolve().is_relative_to(venv.resolve()), where
    assert where[3] == __version__

    version = run([swarm, "--version"], cwd=empty, env=env)
    assert version.stdout.strip() == f"swarm {__version__}"

    try:
        demo = run([swarm, "demo", "--no-dashboard"], cwd=empty, env=env, timeout=300)
        assert "tasks: 4/4 completed, 0 failed" in demo.stdout, demo.stdout[-3000:]
        assert "demo: fast-forwarded main to include swarm/calc-demo-" in demo.stdout
        runs = list((empty / ".swarm" / "demo").iterdir())
        assert len(runs) == 1
        repo = runs[0] / "calc"
        example = Path(where[1]) / "examples" / "calc"  # the installed copy
        for path in example.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert (repo / path.relative_to(example)).is_file(), path
        tests = run([python, "-m", "unittest", "-q"], cwd=repo, env=env, timeout=60)
        assert "OK" in tests.stderr
        assert (repo / "docs" / "CHANGES.md").is_file()
    finally:
        # the embedded Redis outlives the CLI for its lease: stop it now, with the
        # installed swarm, then nothing of ours may be left running
        subprocess.run(
            [
                python,
                "-c",
                "import sys; from pathlib import Path; "
                "from swarm.blackboard.connection import stop_embedded; "
                "stop_embedded(Path(sys.argv[1]))",
                str(empty / ".swarm"),
            ],
            cwd=empty,
            env=env,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while (left := ours(venv, empty, ray_tmp)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
    assert not left, [(p.pid, p.info["cmdline"]) for p in left]
