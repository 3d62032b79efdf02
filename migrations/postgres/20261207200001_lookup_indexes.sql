-- Support's lookups: `followupd why ORDER|EMAIL` and `plan --order/--email`
-- find a buyer's orders through these instead of reading every order. The
-- primary key starts with the marketplace, which support rarely knows.
CREATE INDEX orders_by_order_id ON orders (order_id);
-- Addresses are stored as imported; the lookup ignores case.
CREATE INDEX orders_by_buyer_email ON orders (lower(buyer_email));
