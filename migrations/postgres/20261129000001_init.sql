-- followupd schema, PostgreSQL flavour. Times are Unix seconds (UTC) so that the
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
    shipped_at    BIGINT,
    delivered_at  BIGINT,
    status        TEXT    NOT NULL,
    complaint     BIGINT NOT NULL DEFAULT 0,
    opted_out     BIGINT NOT NULL DEFAULT 0,
    order_url     TEXT,
    tracking_url  TEXT,
    review_url    TEXT,
    extra         TEXT    NOT NULL DEFAULT '{}',  -- JSON object of unmapped columns
    revision      BIGINT NOT NULL DEFAULT 1,     -- 1 after the first import, +1 per update
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (marketplace, order_id)
);

-- One row per stage of each order: the primary key is what makes
-- "never send a stage twice" a database guarantee.
CREATE TABLE stages (
    marketplace   TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'scheduled',
    next_check_at BIGINT,          -- when the scheduler looks again; NULL: only new order data can change it
    retry_at      BIGINT,          -- earliest next attempt after a transient failure
    attempts      BIGINT NOT NULL DEFAULT 0,
    reason        TEXT,             -- why it is in this state, for people
    message_id    TEXT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (marketplace, order_id, stage),
    FOREIGN KEY (marketplace, order_id) REFERENCES orders (marketplace, order_id)
);

-- Only open stages are ever looked up by time, so the index holds only them.
CREATE INDEX stages_open_by_check ON stages (next_check_at)
    WHERE state IN ('scheduled', 'retrying');

-- The exact bytes handed to a transport (or that would have been, if blocked).
CREATE TABLE messages (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    marketplace   TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    message_id    TEXT    NOT NULL,
    recipient     TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    raw           BYTEA   NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX messages_by_stage ON messages (marketplace, order_id, stage);

-- Every attempt and every decision not to send, newest last.
CREATE TABLE send_log (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            BIGINT NOT NULL,
    marketplace   TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    recipient     TEXT    NOT NULL,
    message_id    TEXT,
    attempt       BIGINT NOT NULL,
    status        TEXT    NOT NULL,
    smtp_code     BIGINT,
    smtp_text     TEXT,
    detail        TEXT,             -- lint findings or error text
    duration_ms   BIGINT,
    subject       TEXT,
    message_ref   BIGINT REFERENCES messages (id)
);
CREATE INDEX send_log_by_order ON send_log (order_id);
CREATE INDEX send_log_by_recipient ON send_log (recipient);
CREATE INDEX send_log_by_time ON send_log (at);

-- Small key/value facts about the database itself.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
