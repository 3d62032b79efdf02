-- followupd schema, SQLite flavour. Times are Unix seconds (UTC) so that the
-- same queries run on SQLite and PostgreSQL and "what is due" is a range scan.

-- One row per order, as last imported.
CREATE TABLE orders (
    marketplace   TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    buyer_email   TEXT    NOT NULL,
    buyer_name    TEXT,
    product_name  TEXT    NOT NULL,
    locale        TEXT,
    time_zone     TEXT,
    shipped_at    INTEGER,
    delivered_at  INTEGER,
    status        TEXT    NOT NULL,
    complaint     INTEGER NOT NULL DEFAULT 0,
    opted_out     INTEGER NOT NULL DEFAULT 0,
    order_url     TEXT,
    tracking_url  TEXT,
    review_url    TEXT,
    extra         TEXT    NOT NULL DEFAULT '{}',  -- JSON object of unmapped columns
    revision      INTEGER NOT NULL DEFAULT 1,     -- 1 after the first import, +1 per update
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (marketplace, order_id)
);

-- One row per stage of each order: the primary key is what makes
-- "never send a stage twice" a database guarantee.
CREATE TABLE stages (
    marketplace   TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'scheduled',
    next_check_at INTEGER,          -- when the scheduler looks again; NULL: only new order data can change it
    retry_at      INTEGER,          -- earliest next attempt after a transient failure
    attempts      INTEGER NOT NULL DEFAULT 0,
    reason        TEXT,             -- why it is in this state, for people
    message_id    TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (marketplace, order_id, stage),
    FOREIGN KEY (marketplace, order_id) REFERENCES orders (marketplace, order_id)
);

-- Only open stages are ever looked up by time, so the index holds only them.
CREATE INDEX stages_open_by_check ON stages (next_check_at)
    WHERE state IN ('scheduled', 'retrying');

-- The exact bytes handed to a transport (or that would have been, if blocked).
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    marketplace   TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    message_id    TEXT    NOT NULL,
    recipient     TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    raw           BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX messages_by_stage ON messages (marketplace, order_id, stage);

-- Every attempt and every decision not to send, newest last.
CREATE TABLE send_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    marketplace   TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    recipient     TEXT    NOT NULL,
    message_id    TEXT,
    attempt       INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    smtp_code     INTEGER,
    smtp_text     TEXT,
    detail        TEXT,             -- lint findings or error text
    duration_ms   INTEGER,
    subject       TEXT,
    message_ref   INTEGER REFERENCES messages (id)
);
CREATE INDEX send_log_by_order ON send_log (order_id);
CREATE INDEX send_log_by_recipient ON send_log (recipient);
CREATE INDEX send_log_by_time ON send_log (at);

-- Small key/value facts about the database itself.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
