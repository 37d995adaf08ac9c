-- Inventory: the latest report per device, its packages (normalized, for fleet-wide queries),
-- and the history of what changed.

CREATE TABLE inventory (
    device_num   INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT NOT NULL UNIQUE REFERENCES devices (id) ON DELETE CASCADE,
    hash         INTEGER NOT NULL,
    collected_at INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    body         TEXT NOT NULL,   -- the whole inventory, JSON
    summary      TEXT NOT NULL    -- key facts, JSON (protocol::inventory::Summary)
);

CREATE TABLE packages (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL,
    version TEXT NOT NULL,
    arch    TEXT NOT NULL,
    source  TEXT NOT NULL,
    UNIQUE (name, version, arch, source)
);

CREATE TABLE device_packages (
    device_num INTEGER NOT NULL REFERENCES inventory (device_num) ON DELETE CASCADE,
    package_id INTEGER NOT NULL REFERENCES packages (id),
    PRIMARY KEY (device_num, package_id)
) WITHOUT ROWID;
CREATE INDEX device_packages_by_package ON device_packages (package_id, device_num);

CREATE TABLE inventory_changes (
    id        INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX inventory_changes_by_device ON inventory_changes (device_id, at);
