-- What was done inside a session, as the agent reported it: command lines and exit codes,
-- shells opened and closed, files pushed and pulled with sizes and checksums.
CREATE TABLE session_actions (
    session_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    action      TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
