-- Orders that arrive over HTTP (Shopify and WooCommerce webhooks).

-- Every delivery applied, by the id its source gives it: a retried or
-- twice-delivered webhook finds its row and is applied once. The primary
-- key makes that hold across instances sharing one database: the second
-- insert of an id waits for the first transaction and then does nothing.
CREATE TABLE webhook_deliveries (
    source       TEXT    NOT NULL,   -- shopify, woocommerce
    delivery_id  TEXT    NOT NULL,   -- topic and X-Shopify-Event-Id, or X-WC-Webhook-Delivery-ID
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (source, delivery_id)
);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (received_at);

-- What the source last said about an order: its own updated_at (so an
-- older update arriving late never rolls the order back) and its line
-- items with the quantities refunded so far (so a refund can be told full
-- or partial). JSON: [[line item id, quantity, refunded], ...].
CREATE TABLE webhook_orders (
    marketplace  TEXT    NOT NULL,
    order_id     TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    items        TEXT    NOT NULL DEFAULT '[]',
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (marketplace, order_id)
);
