-- Health: the latest report of each device, the alerts raised from reports (open and closed),
-- and per-group alert thresholds set by an admin with `tether-relay alerts-policy`.

CREATE TABLE health (
    device_id    TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    collected_at INTEGER NOT NULL,   -- the agent's clock
    received_at  INTEGER NOT NULL,   -- the relay's clock
    body         TEXT NOT NULL       -- protocol::health::HealthReport, JSON, sanitized
);

CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    device_id    TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('disk', 'memory', 'failed_unit', 'silent')),
    subject      TEXT NOT NULL,      -- mount point or unit; '' for memory and silence
    value        INTEGER NOT NULL,   -- at opening: percent, or seconds without a report
    threshold    INTEGER NOT NULL,
    detail       TEXT NOT NULL,
    opened_at    INTEGER NOT NULL,
    closed_at    INTEGER,
    close_detail TEXT
);
-- At most one open alert per device and subject.
CREATE UNIQUE INDEX alerts_open ON alerts (device_id, kind, subject) WHERE closed_at IS NULL;
CREATE INDEX alerts_by_closed ON alerts (closed_at);

-- A group without a row has the defaults (disk 90 %, memory 95 % for 5 min, silent 10 min, no
-- webhook).
CREATE TABLE alert_policy (
    group_name      TEXT PRIMARY KEY NOT NULL,
    disk_percent    INTEGER NOT NULL,
    memory_percent  INTEGER NOT NULL,
    memory_for_ms   INTEGER NOT NULL,
    silent_after_ms INTEGER NOT NULL,
    webhook_url     TEXT,
    updated_at      INTEGER NOT NULL
);
