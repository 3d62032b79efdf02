-- The suppression list and the bounces and complaints received.

-- Addresses that get no further message. The address is normalised (the
-- domain lower-cased and in ASCII, the local part as written), so one
-- primary key lookup answers "may we write to this buyer?", and two
-- instances suppressing the same address at once leave one row.
CREATE TABLE suppressions (
    address     TEXT    PRIMARY KEY,
    reason      TEXT    NOT NULL,      -- unsubscribed, bounced, complained, manual
    detail      TEXT,                  -- what put it there, for people
    created_at  INTEGER NOT NULL
);

-- Every delivery status notification, feedback report or relay event read,
-- matched to the message it answers where it could be. Temporary failures
-- are counted from here.
CREATE TABLE bounces (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    address     TEXT    NOT NULL,      -- normalised, as in suppressions
    kind        TEXT    NOT NULL,      -- permanent, temporary, complaint
    status      TEXT,                  -- enhanced status code (5.1.1) or feedback type
    diagnostic  TEXT,
    message_id  TEXT,                  -- of the message it answers, without brackets
    marketplace TEXT,
    order_id    TEXT,
    stage       TEXT,
    source      TEXT    NOT NULL       -- dsn, arf, or the relay's name
);
CREATE INDEX bounces_by_address ON bounces (address, at);
