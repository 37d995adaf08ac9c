-- Which device groups a technician may see and reach. A technician without rows sees every
-- group (so adding the first grant narrows them); admins always see everything.
CREATE TABLE technician_groups (
    technician  TEXT NOT NULL,
    group_name  TEXT NOT NULL,
    granted_at  INTEGER NOT NULL,
    PRIMARY KEY (technician, group_name)
);
