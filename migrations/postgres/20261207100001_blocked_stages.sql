-- Blocked stages are looked up when a new template set or forbidden list
-- loads, to be composed again while their windows are open.
CREATE INDEX stages_blocked ON stages (marketplace, order_id) WHERE state = 'blocked';
