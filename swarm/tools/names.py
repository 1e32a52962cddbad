"""Names of the tools swarm ships, for config validation without importing the tools."""

BUILTIN_TOOL_NAMES = (
    "read",
    "write",
    "edit",
    "multiedit",
    "bash",
    "grep",
    "glob",
    "todowrite",
    "todoread",
)
SWARM_TOOL_NAMES = (
    "task_list",
    "task_create",
    "task_fail",
    "send_message",
    "read_inbox",
    "note_write",
    "note_read",
)
