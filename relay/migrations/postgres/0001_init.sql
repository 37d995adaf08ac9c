-- Tether relay store on PostgreSQL, version 1: the schema the SQLite store reaches after its
-- migrations 0001..0012 (same tables and columns, so the two backends' queries mirror each
-- other). A PostgreSQL store starts here; SQLite's data migrations (0009, 0010) concern stores
-- older than this one and have nothing to convert.
--
-- Times are milliseconds since the Unix epoch (UTC), BIGINT. Hashes are BYTEA. Text that is
-- sorted (ids, names, hostnames, serials) is COLLATE "C": byte order, as SQLite sorts, whatever
-- the database's locale. Only plain SQL: no extensions, no stored procedures.

-- Enrollment and presence (sqlite 0001).
CREATE TABLE devices (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    hostname      TEXT COLLATE "C" NOT NULL,
    group_name    TEXT COLLATE "C" NOT NULL,
    os            TEXT NOT NULL DEFAULT '',
    agent_version TEXT NOT NULL DEFAULT '',
    cert_serial   TEXT COLLATE "C" NOT NULL,
    first_seen    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL
);
CREATE INDEX devices_group ON devices (group_name);
CREATE INDEX devices_hostname ON devices (hostname);

CREATE TABLE technicians (
    name        TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'support', 'admin')),
    cert_serial TEXT COLLATE "C" NOT NULL,
    enrolled_at BIGINT NOT NULL
);

-- Only a hash of each token's secret is kept: a stolen database enrolls nothing.
-- replace_existing (sqlite 0009): a technician token made with --replace.
CREATE TABLE tokens (
    secret_hash      BYTEA PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('agent', 'technician')),
    group_name       TEXT COLLATE "C",
    tech_name        TEXT COLLATE "C",
    role             TEXT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    used_at          BIGINT,
    used_by          TEXT,
    replace_existing BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE revoked_certs (
    serial     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    subject    TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    reason     TEXT NOT NULL DEFAULT ''
);

-- Inventory (sqlite 0002): the latest report per device, its packages (normalized, for
-- fleet-wide queries), and the history of what changed.
CREATE TABLE inventory (
    device_num   BIGSERIAL PRIMARY KEY,
    device_id    TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES devices (id) ON DELETE CASCADE,
    hash         BIGINT NOT NULL,   -- the u64 fingerprint's bits
    collected_at BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    body         TEXT NOT NULL,     -- the whole inventory, JSON
    summary      TEXT NOT NULL      -- key facts, JSON (protocol::inventory::Summary)
);

CREATE TABLE packages (
    id      BIGSERIAL PRIMARY KEY,
    name    TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    arch    TEXT COLLATE "C" NOT NULL,
    source  TEXT COLLATE "C" NOT NULL,
    UNIQUE (name, version, arch, source)
);

CREATE TABLE device_packages (
    device_num BIGINT NOT NULL REFERENCES inventory (device_num) ON DELETE CASCADE,
    package_id BIGINT NOT NULL REFERENCES packages (id),
    PRIMARY KEY (device_num, package_id)
);
CREATE INDEX device_packages_by_package ON device_packages (package_id, device_num);

CREATE TABLE inventory_changes (
    id        BIGSERIAL PRIMARY KEY,
    device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX inventory_changes_by_device ON inventory_changes (device_id, at);

-- The audit trail (sqlite 0003, 0012): one row per session request, from the request to the
-- resolution notes; what it was for, and the engagement it belongs to.
CREATE TABLE sessions (
    id                  TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    technician          TEXT COLLATE "C" NOT NULL,
    device_id           TEXT COLLATE "C" NOT NULL,
    reason              TEXT NOT NULL,
    ticket              TEXT NOT NULL,
    permissions_asked   TEXT NOT NULL,
    permissions_granted TEXT NOT NULL DEFAULT '',
    -- pending | approved | denied | timed_out | unattended | failed
    decision            TEXT NOT NULL DEFAULT 'pending',
    decision_detail     TEXT NOT NULL DEFAULT '',
    requested_at        BIGINT NOT NULL,
    started_at          BIGINT,
    ended_at            BIGINT,
    ended_by            TEXT,
    bytes_up            BIGINT NOT NULL DEFAULT 0,
    bytes_down          BIGINT NOT NULL DEFAULT 0,
    notes               TEXT NOT NULL DEFAULT '',
    rating              BIGINT,
    rating_comment      TEXT,
    activity            TEXT NOT NULL DEFAULT '',
    engagement_id       TEXT COLLATE "C"
);
CREATE INDEX sessions_by_device ON sessions (device_id, requested_at);
CREATE INDEX sessions_by_technician ON sessions (technician, requested_at);
CREATE INDEX sessions_by_requested ON sessions (requested_at);
CREATE INDEX sessions_engagement ON sessions (engagement_id);

-- Per-group session policy (sqlite 0004, 0007, 0011). A group without a row has the defaults.
CREATE TABLE group_policy (
    group_name    TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    unattended    BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at    BIGINT NOT NULL,
    record_shells BOOLEAN NOT NULL DEFAULT FALSE,
    allow_root    BOOLEAN NOT NULL DEFAULT FALSE
);

-- Health (sqlite 0005): the latest report of each device, the alerts raised from reports, and
-- per-group alert thresholds.
CREATE TABLE health (
    device_id    TEXT COLLATE "C" PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    collected_at BIGINT NOT NULL,   -- the agent's clock
    received_at  BIGINT NOT NULL,   -- the relay's clock
    body         TEXT NOT NULL      -- protocol::health::HealthReport, JSON, sanitized
);

CREATE TABLE alerts (
    id           BIGSERIAL PRIMARY KEY,
    device_id    TEXT COLLATE "C" NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind         TEXT COLLATE "C" NOT NULL CHECK (kind IN ('disk', 'memory', 'failed_unit', 'silent')),
    subject      TEXT COLLATE "C" NOT NULL,
    value        BIGINT NOT NULL,
    threshold    BIGINT NOT NULL,
    detail       TEXT NOT NULL,
    opened_at    BIGINT NOT NULL,
    closed_at    BIGINT,
    close_detail TEXT
);
-- At most one open alert per device and subject.
CREATE UNIQUE INDEX alerts_open ON alerts (device_id, kind, subject) WHERE closed_at IS NULL;
CREATE INDEX alerts_by_closed ON alerts (closed_at);

CREATE TABLE alert_policy (
    group_name      TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    disk_percent    BIGINT NOT NULL,
    memory_percent  BIGINT NOT NULL,
    memory_for_ms   BIGINT NOT NULL,
    silent_after_ms BIGINT NOT NULL,
    webhook_url     TEXT,
    updated_at      BIGINT NOT NULL
);

-- What was done inside a session, as the agent reported it (sqlite 0006).
CREATE TABLE session_actions (
    session_id TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    action     TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);

-- Which device groups a technician may see and reach (sqlite 0008, 0010: '*' is every group).
CREATE TABLE technician_groups (
    technician TEXT COLLATE "C" NOT NULL,
    group_name TEXT COLLATE "C" NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (technician, group_name)
);

-- Every certificate the CA issued to a device or technician (sqlite 0009).
CREATE TABLE certificates (
    serial    TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('device', 'technician')),
    name      TEXT COLLATE "C" NOT NULL,
    detail    TEXT NOT NULL,
    issued_at BIGINT NOT NULL
);
CREATE INDEX certificates_by_identity ON certificates (kind, name);
