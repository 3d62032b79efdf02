//! Support's lookups: one buyer's or one order id's orders with their
//! stages, through the indexes of migration 20261207200001 (milliseconds
//! at a million orders, where reading every order took seconds).

use super::decode::{group_by_order, ORDER_COLUMNS, STAGE_COLUMNS};
use super::{Store, StoreError};
use crate::order::Order;
use crate::store::StageRow;

/// An order with all its stage rows.
pub type OrderWithStages = (Order, Vec<StageRow>);

impl Store {
    /// Every order with this id, on any marketplace, in marketplace order.
    pub async fn orders_with_id(&self, order_id: &str) -> Result<Vec<OrderWithStages>, StoreError> {
        self.orders_where("o.order_id = $1", order_id).await
    }

    /// Every order of the buyer with this address (case ignored), in key
    /// order.
    pub async fn orders_of_buyer(&self, email: &str) -> Result<Vec<OrderWithStages>, StoreError> {
        self.orders_where("lower(o.buyer_email) = lower($1)", email)
            .await
    }

    async fn orders_where(
        &self,
        condition: &str,
        value: &str,
    ) -> Result<Vec<OrderWithStages>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS}, {STAGE_COLUMNS} FROM orders o \
             JOIN stages s ON s.marketplace = o.marketplace AND s.order_id = o.order_id \
             WHERE {condition} ORDER BY o.marketplace, o.order_id"
        );
        let rows = sqlx::query(&sql).bind(value).fetch_all(self.pool()).await?;
        group_by_order(&rows)?
            .into_iter()
            .map(|order| order.loaded)
            .collect()
    }
}
