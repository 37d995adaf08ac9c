-- Per-group policy set by an admin with `tether-relay policy`. A group without a row has the
-- defaults (no unattended access).
CREATE TABLE group_policy (
    group_name  TEXT PRIMARY KEY NOT NULL,
    unattended  INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
);
