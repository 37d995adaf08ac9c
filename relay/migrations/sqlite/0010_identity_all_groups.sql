-- "Every device group" becomes a grant of its own (group_name '*', which no group name can be):
-- a technician without any row now sees no device. Technicians who had no rows saw every group
-- until now, so they keep that, explicitly; withdrawing their last group grant later leaves them
-- with nothing instead of everything. Admins see every group whatever their rows say.
INSERT OR IGNORE INTO technician_groups (technician, group_name, granted_at)
    SELECT t.name, '*', CAST(strftime('%s', 'now') AS INTEGER) * 1000 FROM technicians t
    WHERE NOT EXISTS (SELECT 1 FROM technician_groups g WHERE g.technician = t.name);
-- The same for technicians whose token was made before this change but not yet used: it was
-- made when a new technician saw every group.
INSERT OR IGNORE INTO technician_groups (technician, group_name, granted_at)
    SELECT DISTINCT k.tech_name, '*', CAST(strftime('%s', 'now') AS INTEGER) * 1000 FROM tokens k
    WHERE k.kind = 'technician' AND k.used_at IS NULL AND k.tech_name IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM technician_groups g WHERE g.technician = k.tech_name);
