"""A config resolved once into the plan of one run: the loaded config (agents with their
cards, tools and models), the target repository, the workspace and the tasks that must not
run together. launch, resume and the coordinator consume it; nothing downstream re-derives
it. The plan is stored in the run's meta, so a resumed run is the same run."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from swarm.blackboard.board import Blackboard
from swarm.config import LoadedConfig, TaskSpec, load_config, split_model
from swarm.errors import BadInput
from swarm.paths import is_shipped
from swarm.providers.registry import settings_for
from swarm.tools.repo_tools import check_repo_tools
from swarm.workspace.git import toplevel
from swarm.workspace.paths import overlapping_pairs
from swarm.workspace.worktrees import (
    WorkspaceSettings,
    dirty_files,
    prepare_run_branch,
    run_branch_name,
)


class RunPlan(BaseModel):
    run_id: str
    loaded: LoadedConfig
    repo: Path
    workspace: WorkspaceSettings
    exclusive: list[tuple[str, str]] = []  # task pairs whose declared paths overlap


def resolve_repo(loaded: LoadedConfig, repo: Path | None) -> Path:
    """--repo, else the config's `repo` relative to the config's folder; a config shipped
    with swarm (configs/mesh10.yaml) takes it relative to the current directory instead,
    and no run works inside the installed package's data."""
    if repo is not None:
        path = repo
    else:
        base = Path.cwd() if is_shipped(loaded.path) else loaded.path.parent
        path = base / loaded.config.repo
    path = path.resolve()
    where = "--repo" if repo is not None else f"{loaded.path}: repo"
    if not path.is_dir():
        raise BadInput(f"{where}: {path} is not a directory")
    if is_shipped(path):
        raise BadInput(f"{where}: {path} is swarm's own shipped data; name your repository")
    return path


def check_credentials(loaded: LoadedConfig) -> None:
    missing: dict[str, list[str]] = {}
    providers = {k: v.model_dump() for k, v in loaded.config.providers.items()}
    for agent in loaded.agents:
        provider, _ = split_model(agent.model)
        s = settings_for(provider, providers)
        if s.key_required and not s.has_key:
            missing.setdefault(s.api_key_env, []).append(agent.name)
    if missing:
        lines = [f"  {env} (needed by {', '.join(names)})" for env, names in missing.items()]
        raise BadInput(
            f"{loaded.path}: no credentials for the configured models. Set:\n"
            + "\n".join(lines)
            + "\n(or store one with `swarm auth login PROVIDER`; and the provider's base URL "
            "if it is not the public API). "
            "To see a swarm work offline without keys, run `make demo` (or `swarm demo`)."
        )


def resolve_workspace(
    loaded: LoadedConfig, repo: Path, run_id: str, state: Path, include_dirty: bool
) -> WorkspaceSettings:
    """``worktree`` when the repository is the root of a git checkout (unless the config
    says ``shared``), else ``shared``. Refuses a dirty tree unless ``include_dirty``."""
    cfg = loaded.config
    top = toplevel(repo)
    is_root = top is not None and top.resolve() == repo.resolve()
    mode = cfg.workspace or ("worktree" if is_root else "shared")
    if mode == "shared":
        return WorkspaceSettings(mode="shared", repo=str(repo))
    if not is_root:
        what = (
            "is not a git repository"
            if top is None
            else f"is inside the git checkout {top}, not its root"
        )
        raise BadInput(
            f"{loaded.path}: workspace: worktree needs the root of a git checkout, but {repo} "
            f"{what} (use workspace: shared, or point --repo at the checkout's root)"
        )
    if dirty_files(repo) and not include_dirty:
        prepare_run_branch(repo, run_id, include_dirty=False)  # raises, naming the files
    return WorkspaceSettings(
        mode="worktree",
        repo=str(repo),
        run_branch=run_branch_name(run_id),
        root=str(state / "worktrees" / run_id),
        gate=cfg.merge.gate,
        gate_timeout_s=cfg.merge.gate_timeout_s,
        max_attempts=cfg.merge.max_attempts,
    )


def make_plan(
    config: Path,
    repo: Path | None,
    run_id: str,
    state: Path,
    include_dirty: bool = False,
    loaded: LoadedConfig | None = None,
) -> RunPlan:
    """Everything checked before anything starts: a bad input is exit 2 and costs nothing."""
    loaded = loaded or load_config(config)
    repo_path = resolve_repo(loaded, repo)
    check_repo_tools(repo_path, [a.tools for a in loaded.agents])
    check_credentials(loaded)
    return RunPlan(
        run_id=run_id,
        loaded=loaded,
        repo=repo_path,
        workspace=resolve_workspace(loaded, repo_path, run_id, state, include_dirty),
        exclusive=overlapping_pairs([t for _, t in loaded.tasks]),
    )


def start_workspace(plan: RunPlan, include_dirty: bool) -> None:
    """Create the run's branch (worktree runs); the base commit goes into the plan."""
    ws = plan.workspace
    if ws.mode == "worktree":
        _, ws.base_commit = prepare_run_branch(plan.repo, plan.run_id, include_dirty)


async def store_plan(board: Blackboard, plan: RunPlan) -> None:
    """The run's meta, agents and tasks on the blackboard."""
    loaded, cfg = plan.loaded, plan.loaded.config
    # the plan (the whole config: MBs for a thousand agents and tasks) is a key of its
    # own, read by whoever needs it; the meta hash stays small enough to poll
    await board.r.set(board.k.plan, plan.model_dump_json())
    await board.r.set(board.k.edges, json.dumps(loaded.topology_edges))  # a mesh: MBs too
    await board.init_run(
        meta={
            "name": cfg.name,
            "goal": cfg.goal,
            "repo": str(plan.repo),
            "config_path": str(loaded.path),
            "topology": loaded.topology_kind,
            "phases": json.dumps([p.name for p in cfg.phases]),
            "budget": _budget_json(plan),
            "workspace": plan.workspace.mode,
            "branch": plan.workspace.run_branch,
            "base_commit": plan.workspace.base_commit,
        },
        agents=[{"name": a.name, "role": a.role, "model": a.model} for a in loaded.agents],
    )
    await board.set_exclusive(plan.exclusive)
    for phase, task in loaded.tasks:
        await board.create_task(_task_fields(phase, task), needs=task.needs)


def _task_fields(phase: str, task: TaskSpec) -> dict[str, object]:
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "phase": phase,
        "role": task.role or "",
        "agent": task.agent or "",
        "max_attempts": task.max_attempts,
        "max_turns": task.max_turns or 0,
        "paths": json.dumps(task.paths),
        "created_by": "config",
    }


def _budget_json(plan: RunPlan) -> str:
    """The run's budget as the meta hash holds it (status reads it there)."""
    budget = plan.loaded.config.budget
    return json.dumps({"max_usd": budget.max_usd, "max_tokens": budget.max_tokens})


async def load_plan(board: Blackboard) -> RunPlan:
    text = await board.plan_json()
    if text is None:
        raise BadInput(f"RUN: run {board.run_id!r} was made by an older swarm and cannot resume")
    return RunPlan.model_validate_json(text)


async def save_plan(board: Blackboard, plan: RunPlan) -> None:
    pipe = board.r.pipeline(transaction=True)
    pipe.set(board.k.plan, plan.model_dump_json())
    pipe.hset(board.k.meta, "budget", _budget_json(plan))
    pipe.hdel(board.k.meta, "plan", "config")  # a run stored before the plan had its key
    await pipe.execute()
