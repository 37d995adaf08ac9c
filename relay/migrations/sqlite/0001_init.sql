-- Tether relay store, version 1: enrollment and presence.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE devices (
    id            TEXT PRIMARY KEY NOT NULL,
    hostname      TEXT NOT NULL,
    group_name    TEXT NOT NULL,
    os            TEXT NOT NULL DEFAULT '',
    agent_version TEXT NOT NULL DEFAULT '',
    cert_serial   TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);
CREATE INDEX devices_group ON devices (group_name);

CREATE TABLE technicians (
    name        TEXT PRIMARY KEY NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'support', 'admin')),
    cert_serial TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL
);

-- Only a hash of each token's secret is kept: a stolen database enrolls nothing.
CREATE TABLE tokens (
    secret_hash BLOB PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('agent', 'technician')),
    group_name  TEXT,
    tech_name   TEXT,
    role        TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    used_by     TEXT
);

CREATE TABLE revoked_certs (
    serial     TEXT PRIMARY KEY NOT NULL,
    subject    TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    reason     TEXT NOT NULL DEFAULT ''
);
