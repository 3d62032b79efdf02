-- `logs --email` compares recipients ignoring case; without this index it
-- read the whole send log.
CREATE INDEX send_log_by_lower_recipient ON send_log (lower(recipient));
