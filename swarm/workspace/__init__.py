"""Workspaces: a git worktree per task (``worktrees``), the merge queue (``queue``), the
gate (``gate``), and the one git wrapper they all use (``git``)."""
