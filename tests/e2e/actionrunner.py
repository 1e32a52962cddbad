"""Run a composite action's steps locally the way a GitHub runner does, for its tests.

Small on purpose: the expression evaluator knows what action.yml uses (contexts `inputs`,
`steps`, `github`, `env`, `runner`; literals; `!`, `==`, `!=`, `&&`, `||`, parentheses;
`always()`, `success()`, `failure()`, `cancelled()`) and raises on anything else, so the
action cannot quietly grow an expression these tests do not really evaluate.

Runner behaviour reproduced: an `if:` without a status function means `success() && ...`;
`run:` steps with `shell: bash` run as `bash --noprofile --norc -eo pipefail {0}` in the
workspace (or `working-directory`), with a fresh GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH and
GITHUB_STEP_SUMMARY file per step (the job summary is their concatenation); outputs are
read in both `key=value` and `key<<DELIM` forms; GITHUB_ENV and GITHUB_PATH reach the later
steps; `continue-on-error` gives outcome failure and conclusion success; composite actions
get no INPUT_* variables of their own (the action maps inputs through `env:`). `uses:`
steps are handed to Python stand-ins chosen by the action's name. A job cancelled (or timed
out) while a step runs is reproduced with `cancel`: the step's whole process tree is
killed, and only the steps whose `if:` holds with cancelled() true run after it.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml


class ExpressionError(Exception):
    pass


_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<str>'(?:[^']|'')*')"
    r"|(?P<op>==|!=|&&|\|\||[()!.\[\]])"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_-]*)"
    r")"
)
STATUS_FUNCTIONS = ("always", "success", "failure", "cancelled")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:]!r} in {text!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _number(v: Any) -> float:
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip() or 0)
        except ValueError:
            return math.nan
    return math.nan


def _equal(a: Any, b: Any) -> bool:
    """GitHub's ==: strings case-insensitively, other type mixes as numbers."""
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) and not isinstance(a, str):
        return bool(a == b)
    return _number(a) == _number(b)


def truthy(v: Any) -> bool:
    if isinstance(v, float) and math.isnan(v):
        return False
    return v not in (None, False, 0, "") and v != 0.0


def to_string(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class Evaluator:
    def __init__(self, contexts: Mapping[str, Any], functions: Mapping[str, Callable[[], Any]]):
        self.contexts = contexts
        self.functions = functions

    def evaluate(self, text: str) -> Any:
        self.toks, self.i = _tokens(text), 0
        value = self._or()
        if self.i != len(self.toks):
            raise ExpressionError(f"unexpected {self.toks[self.i][1]!r} in {text!r}")
        return value

    def _peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise ExpressionError("unexpected end of expression")
        tok = self.toks[self.i]
        if expected is not None and tok[1] != expected:
            raise ExpressionError(f"expected {expected!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def _or(self) -> Any:
        left = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            left = left if truthy(left) else right
        return left

    def _and(self) -> Any:
        left = self._compare()
        while self._peek() == "&&":
            self._take()
            right = self._compare()
            left = right if truthy(left) else left
        return left

    def _compare(self) -> Any:
        left = self._unary()
        if self._peek() in ("==", "!="):
            op = self._take()[1]
            right = self._unary()
            same = _equal(left, right)
            return same if op == "==" else not same
        return left

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(" and kind == "op":
            inner = self._or()
            self._take(")")
            return inner
        if kind == "num":
            return float(text)
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind != "id":
            raise ExpressionError(f"unexpected {text!r}")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self._peek() == "(":
            self._take("(")
            self._take(")")
            if text not in self.functions:
                raise ExpressionError(f"function {text}() is not supported here")
            return self.functions[text]()
        if text not in self.contexts:
            raise ExpressionError(f"context {text!r} is not supported here")
        value: Any = self.contexts[text]
        while self._peek() in (".", "["):
            if self._take()[1] == ".":
                key = self._take()[1]
            else:
                key_kind, key = self._take()
                if key_kind != "str":
                    raise ExpressionError("only 'literal' indexes are supported")
                key = key[1:-1]
                self._take("]")
            value = value.get(key) if isinstance(value, Mapping) else None
        return value


_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def interpolate(text: Any, ev: Evaluator) -> str:
    if not isinstance(text, str):
        return to_string(text)
    return _TEMPLATE.sub(lambda m: to_string(ev.evaluate(m.group(1))), text)


def _condition(text: Any) -> str:
    cond = str(text).strip()
    whole = re.fullmatch(r"\$\{\{(.*)\}\}", cond, re.S)
    if whole:
        cond = whole.group(1).strip()
    if not re.search(rf"\b({'|'.join(STATUS_FUNCTIONS)})\s*\(", cond):
        cond = f"success() && ({cond})"
    return cond


def read_file_commands(path: Path) -> dict[str, str]:
    """A GITHUB_OUTPUT / GITHUB_ENV file: `key=value` lines and `key<<DELIM` blocks."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        heredoc = re.fullmatch(r"([^=]+?)<<(.+)", line)
        if heredoc and "=" not in line.split("<<", 1)[0]:
            key, delim, value = heredoc.group(1), heredoc.group(2), []
            while i < len(lines) and lines[i] != delim:
                value.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ValueError(f"{path}: {key}<<{delim} is never closed")
            i += 1
            out[key] = "\n".join(value)
        elif "=" in line:
            key, value_ = line.split("=", 1)
            out[key] = value_
        else:
            raise ValueError(f"{path}: not a file command: {line!r}")
    return out


@dataclass
class StepResult:
    name: str
    id: str | None
    outcome: str  # success | failure | cancelled | skipped
    conclusion: str
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""
    returncode: int | None = None


@dataclass
class ActionResult:
    steps: list[StepResult]
    outputs: dict[str, str]
    summary: str
    failed: bool

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name or s.id == name)

    def log(self) -> str:
        return "\n".join(f"--- {s.name} [{s.outcome}]\n{s.log}" for s in self.steps)


# a `uses:` stand-in: (with, env) -> outputs; raising fails the step
UsesHandler = Callable[[dict[str, str], dict[str, str]], dict[str, str]]


@dataclass
class Runner:
    action_dir: Path
    workspace: Path
    runner_temp: Path
    github: dict[str, Any]
    env: dict[str, str]  # the job's environment (the caller's step env included)
    uses: dict[str, UsesHandler]
    timeout_s: float = 600
    # (step id, predicate): cancel the job once the predicate holds while that step runs
    cancel: tuple[str, Callable[[], bool]] | None = None
    last_log: str = ""

    def _execute(self, sid: str | None, cmd: list[str], cwd: Path, env: dict[str, str]) -> int:
        """Run one script; -1 if the job was cancelled meanwhile (its tree killed)."""
        with open(self.runner_temp / f"log_{uuid.uuid4().hex}", "w+", encoding="utf-8") as log:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            deadline = time.monotonic() + self.timeout_s
            watch = self.cancel[1] if self.cancel and self.cancel[0] == sid else None
            while proc.poll() is None:
                if time.monotonic() > deadline or (watch is not None and watch()):
                    tree = [proc, *psutil.Process(proc.pid).children(recursive=True)]
                    for p in tree:
                        try:
                            os.kill(p.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    proc.wait()
                    self.last_log = self._read(log)
                    return -1
                time.sleep(0.1)
            self.last_log = self._read(log)
            return proc.returncode

    @staticmethod
    def _read(log: Any) -> str:
        log.flush()
        log.seek(0)
        return str(log.read())

    def run(self, inputs: dict[str, str]) -> ActionResult:
        meta = yaml.safe_load((self.action_dir / "action.yml").read_text(encoding="utf-8"))
        assert meta["runs"]["using"] == "composite"
        self.runner_temp.mkdir(parents=True, exist_ok=True)
        files = self.runner_temp / "_runner_file_commands"
        files.mkdir(exist_ok=True)
        env = dict(self.env)
        path_prefix: list[str] = []
        steps_ctx: dict[str, dict[str, Any]] = {}
        results: list[StepResult] = []
        summary_parts: list[str] = []
        failed = False
        cancelled = False
        self.last_log = ""

        def contexts(step_env: Mapping[str, str]) -> dict[str, Any]:
            return {
                "inputs": resolved_inputs,
                "steps": steps_ctx,
                "github": self.github,
                "env": dict(env) | dict(step_env),
                "runner": {"temp": str(self.runner_temp), "os": "Linux"},
            }

        functions: dict[str, Callable[[], Any]] = {
            "always": lambda: True,
            "success": lambda: not failed and not cancelled,
            "failure": lambda: failed and not cancelled,
            "cancelled": lambda: cancelled,
        }
        base = Evaluator(
            {"github": self.github, "runner": {"temp": str(self.runner_temp)}}, functions
        )
        resolved_inputs: dict[str, str] = {}
        for name, spec in meta.get("inputs", {}).items():
            if name in inputs:
                resolved_inputs[name] = inputs[name]
            elif spec.get("required") and "default" not in spec:
                raise AssertionError(f"input {name} is required")
            else:
                resolved_inputs[name] = interpolate(spec.get("default", ""), base)
        unknown = set(inputs) - set(resolved_inputs)
        assert not unknown, f"inputs action.yml does not declare: {unknown}"

        for n, step in enumerate(meta["runs"]["steps"]):
            name = step.get("name") or step.get("id") or f"step {n}"
            sid = step.get("id")
            ev = Evaluator(contexts({}), functions)
            run_it = truthy(ev.evaluate(_condition(step.get("if", "success()"))))
            if not run_it:
                res = StepResult(name, sid, "skipped", "skipped")
            else:
                step_env = {k: interpolate(v, ev) for k, v in (step.get("env") or {}).items()}
                ev = Evaluator(contexts(step_env), functions)
                res = StepResult(name, sid, "success", "success")
                if "run" in step:
                    tag = uuid.uuid4().hex
                    paths = {
                        key: files / f"{key.lower()}_{tag}"
                        for key in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH")
                    }
                    paths["GITHUB_STEP_SUMMARY"] = files / f"step_summary_{tag}"
                    for p in paths.values():
                        p.write_text("", encoding="utf-8")
                    assert step.get("shell") == "bash", f"{name}: only shell: bash is emulated"
                    script = self.runner_temp / f"{tag}.sh"
                    script.write_text(step["run"], encoding="utf-8")
                    cwd = self.workspace / interpolate(step.get("working-directory", "."), ev)
                    proc_env = env | step_env | {k: str(p) for k, p in paths.items()}
                    if path_prefix:
                        proc_env["PATH"] = os.pathsep.join([*path_prefix, proc_env["PATH"]])
                    code = self._execute(
                        sid,
                        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                        cwd,
                        proc_env,
                    )
                    res.log, res.returncode = self.last_log, code
                    res.outputs = read_file_commands(paths["GITHUB_OUTPUT"])
                    env.update(read_file_commands(paths["GITHUB_ENV"]))
                    path_prefix = [
                        *reversed(paths["GITHUB_PATH"].read_text().split()),
                        *path_prefix,
                    ]
                    summary_parts.append(paths["GITHUB_STEP_SUMMARY"].read_text("utf-8"))
                    if code == -1:
                        res.outcome = res.conclusion = "cancelled"
                        cancelled = True
                    elif code != 0:
                        res.outcome = "failure"
                else:
                    action = str(step["uses"]).split("@", 1)[0]
                    handler = self.uses.get(action)
                    assert handler is not None, f"{name}: no stand-in for {step['uses']}"
                    with_ = {k: interpolate(v, ev) for k, v in (step.get("with") or {}).items()}
                    try:
                        res.outputs = handler(with_, env | step_env)
                    except Exception as exc:  # the action failed
                        res.outcome, res.log = "failure", f"{type(exc).__name__}: {exc}"
                if res.outcome == "failure":
                    keep_going = step.get("continue-on-error", False)
                    if isinstance(keep_going, str):
                        keep_going = truthy(ev.evaluate(_condition(keep_going)))
                    res.conclusion = "success" if keep_going else "failure"
                    failed = failed or res.conclusion == "failure"
            results.append(res)
            if sid:
                steps_ctx[sid] = {
                    "outputs": res.outputs,
                    "outcome": res.outcome,
                    "conclusion": res.conclusion,
                }

        ev = Evaluator(contexts({}), functions)
        outputs = {
            name: interpolate(spec.get("value", ""), ev)
            for name, spec in meta.get("outputs", {}).items()
        }
        return ActionResult(results, outputs, "".join(summary_parts), failed or cancelled)
