-- Several relays on one database (issue: several relays, failover): which relays are alive and
-- which relay holds each device's agent connection. Both tables are soft state: a relay
-- rewrites its rows while it runs and their times say when they stop being true, so nothing is
-- lost when a relay dies without cleaning up.

-- One row per relay id: where technicians and agents reach it, and when it last said it is
-- alive (every second while it runs).
CREATE TABLE relays (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    public_addr TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL
);

-- Presence leases: the device's agent is connected to `relay_id` (connection `epoch` there)
-- until `expires_at`, renewed in one statement per relay. The newest connection takes the
-- lease whichever relay held it; a relay gives back only the lease of its own connection.
CREATE TABLE leases (
    device_id  TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    relay_id   TEXT COLLATE "C" NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX leases_relay ON leases (relay_id);
