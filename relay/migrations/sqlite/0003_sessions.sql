-- The audit trail: one row per session request, from the request to the resolution notes.

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY NOT NULL,
    technician          TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    reason              TEXT NOT NULL,
    ticket              TEXT NOT NULL,
    permissions_asked   TEXT NOT NULL,
    permissions_granted TEXT NOT NULL DEFAULT '',
    -- pending | approved | denied | timed_out | unattended | failed
    decision            TEXT NOT NULL DEFAULT 'pending',
    decision_detail     TEXT NOT NULL DEFAULT '',
    requested_at        INTEGER NOT NULL,
    started_at          INTEGER,
    ended_at            INTEGER,
    ended_by            TEXT,
    bytes_up            INTEGER NOT NULL DEFAULT 0,
    bytes_down          INTEGER NOT NULL DEFAULT 0,
    notes               TEXT NOT NULL DEFAULT '',
    rating              INTEGER,
    rating_comment      TEXT
);
CREATE INDEX sessions_by_device ON sessions (device_id, requested_at);
CREATE INDEX sessions_by_technician ON sessions (technician, requested_at);
