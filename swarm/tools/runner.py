"""ToolRunner: what the agent loop calls for each tool call of a model turn.

It looks the tool up, checks permissions, guards against doom loops, runs the tool
(which never raises) and reports a cheap event for the dashboard.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from swarm.providers.types import ToolSpec
from swarm.tools.base import Tool, ToolContext, ToolOutput
from swarm.tools.sandbox import (
    PermissionRules,
    SandboxError,
    check_permission,
    permission_message,
    relpath,
    resolve_in_workspace,
)

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], Awaitable[None]]
#: Asked when a rule says ``ask``: (tool, subject, rule) -> approved, or (approved, why):
#: ``why`` (a person's message, a timeout) is what the model is told on a refusal.
Approver = Callable[[str, str, str | None], Awaitable[bool | tuple[bool, str]]]

DOOM_LOOP_THRESHOLD = 3


def _canonical(args: Any) -> str:
    try:
        return json.dumps(args, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(args)


class ToolRunner:
    """Runs tool calls for one agent.

    ``tools``: name -> Tool (e.g. a subset of BUILTIN_TOOLS plus swarm tools);
    ``ctx``: the agent's ToolContext; ``rules``: permission rules (None: allow all);
    ``on_event(kind, data)``: ``tool_result``, ``doom_loop`` and ``permission_denied``
    events; ``approver``: resolves ``ask`` rules (None: ``ask`` means deny).
    """

    def __init__(
        self,
        tools: dict[str, Tool],
        ctx: ToolContext,
        rules: PermissionRules | None = None,
        on_event: EventSink | None = None,
        *,
        approver: Approver | None = None,
        doom_loop_threshold: int = DOOM_LOOP_THRESHOLD,
    ) -> None:
        self.tools = tools
        self.ctx = ctx
        self.rules = rules
        self.on_event = on_event
        self.approver = approver
        self.doom_loop_threshold = doom_loop_threshold
        self._last_key: str | None = None
        self._repeats = 0

    def specs(self) -> list[ToolSpec]:
        """The tool specs to offer the model, in registration order."""
        return [tool.spec() for tool in self.tools.values()]

    def subject(self, name: str, args: dict[str, Any]) -> str:
        """What permission patterns are matched against for this call."""
        if name == "bash" and isinstance(args.get("command"), str):
            return str(args["command"])
        file_path = args.get("file_path")
        if isinstance(file_path, str):
            try:
                return relpath(
                    self.ctx.workspace, resolve_in_workspace(self.ctx.workspace, file_path)
                )
            except (SandboxError, ValueError, OSError):
                return file_path
        return _canonical(args)

    async def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            await self.on_event(kind, data)
        except Exception:  # the dashboard must never break a tool call
            log.exception("tool event sink failed")

    def _doom_key(self, name: str, args: Any) -> str:
        text = _canonical(args)
        if len(text) > 512:
            text = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{name}\0{text}"

    async def run(self, name: str, args: dict[str, Any]) -> ToolOutput:
        """Run one tool call; always returns a ToolOutput (errors included)."""
        if not isinstance(args, dict):
            args = {}
        out = await self._run(name, args)
        await self._emit("tool_result", {"tool": name, "is_error": out.is_error, "meta": out.meta})
        return out

    async def _run(self, name: str, args: dict[str, Any]) -> ToolOutput:
        tool = self.tools.get(name)
        if tool is None:
            available = ", ".join(self.tools) or "none"
            return ToolOutput.error(f"Unknown tool '{name}'. Available tools: {available}.")
        key = self._doom_key(name, args)
        if key == self._last_key:
            self._repeats += 1
        else:
            self._last_key, self._repeats = key, 1
        if self._repeats >= self.doom_loop_threshold:
            await self._emit(
                "doom_loop",
                {"tool": name, "count": self._repeats, "input": _canonical(args)[:200]},
            )
            return ToolOutput.error(
                f"You have called {name} with identical input {self._repeats} times in a row; "
                "the result will not change. Try a different approach.",
                doom_loop=True,
            )
        subject = self.subject(name, args)
        permission, rule = check_permission(self.rules, name, subject)
        note: str | None = None
        if permission == "ask" and self.approver is not None:
            try:
                answer = await self.approver(name, subject, rule)
            except Exception:
                log.exception("approver failed")
                answer = False
            approved, note = answer if isinstance(answer, tuple) else (answer, None)
            if approved:
                permission = "allow"
        if permission != "allow":
            await self._emit(
                "permission_denied",
                {"tool": name, "subject": subject[:200], "rule": rule, "permission": permission},
            )
            return ToolOutput.error(
                permission_message(
                    name, subject, permission, rule, approver=self.approver is not None, note=note
                ),
                permission=permission,
                rule=rule,
            )
        return await tool(args, self.ctx)
