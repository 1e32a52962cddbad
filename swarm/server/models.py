"""The API's request and response bodies (its OpenAPI document is generated from them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
EVENT_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Strict):
    code: str
    message: str


class ErrorResponse(Strict):
    error: ErrorBody


class StartRun(Strict):
    config: str | dict[str, Any] = Field(
        description="the path of a YAML config (relative to the server's directory), or "
        "the config itself as an object"
    )
    repo: str | None = Field(default=None, description="the target repository's path")
    run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)


class RunState(Strict):
    run_id: str
    state: str


class RunSummary(Strict):
    run_id: str
    name: str
    state: str
    created_ms: int
    finished_ms: int


class RunList(Strict):
    runs: list[RunSummary]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null on the last page"
    )


class ApprovalView(Strict):
    id: str
    agent: str
    task: str
    tool: str
    summary: str
    rule: str | None
    created_ms: int


class ApprovalList(Strict):
    approvals: list[ApprovalView]


class ApprovalAnswer(Strict):
    decision: Literal["allow", "deny"]
    remember: Literal["once", "always"] = "once"
    message: str = Field(default="", max_length=2000)


class Answered(Strict):
    id: str
    decision: Literal["allow", "deny"]
    remember: Literal["once", "always"]


class Session(Strict):
    run_id: str
    task: str
    messages: list[dict[str, Any]]


class Health(Strict):
    status: Literal["ok"]
    version: str
