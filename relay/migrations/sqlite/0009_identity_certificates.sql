-- Every certificate the CA issued to a device or technician, not only the latest one: revoking
-- an identity revokes all of its certificates, and a certificate whose serial is not here (one
-- overwritten by a re-enrollment before this table existed) is refused at connect.
CREATE TABLE certificates (
    serial    TEXT PRIMARY KEY NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('device', 'technician')),
    name      TEXT NOT NULL,      -- device id or technician name
    detail    TEXT NOT NULL,      -- the group or role written into the certificate
    issued_at INTEGER NOT NULL
);
CREATE INDEX certificates_by_identity ON certificates (kind, name);

INSERT OR IGNORE INTO certificates (serial, kind, name, detail, issued_at)
    SELECT cert_serial, 'device', id, group_name, first_seen FROM devices;
INSERT OR IGNORE INTO certificates (serial, kind, name, detail, issued_at)
    SELECT cert_serial, 'technician', name, role, enrolled_at FROM technicians;

-- A technician token made with --replace: enrolling with it revokes the name's older
-- certificates. Without it, a token for a name that holds a valid certificate is not redeemed.
ALTER TABLE tokens ADD COLUMN replace_existing INTEGER NOT NULL DEFAULT 0;
