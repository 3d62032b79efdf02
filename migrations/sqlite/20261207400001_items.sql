-- An order's line items (a JSON array of {name, quantity, sku, price}) and
-- where its time zone came from ('order', or 'address' when it was derived
-- from the shipping address; NULL when the order has no zone).
ALTER TABLE orders ADD COLUMN items TEXT NOT NULL DEFAULT '[]';
ALTER TABLE orders ADD COLUMN time_zone_source TEXT;
