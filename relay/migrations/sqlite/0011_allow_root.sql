-- Groups whose devices may run a session's shells, commands and file access as root (the
-- technician asks with --as-root and the user sees it in the prompt). Off: the desktop user.
ALTER TABLE group_policy ADD COLUMN allow_root INTEGER NOT NULL DEFAULT 0;
