//! Statements prepared once per pooled connection and run by name after
//! that: one round trip each instead of two (parse, then bind and execute).

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::super::StoreError;

/// The parameters of a statement.
pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// At most one row.
pub(super) async fn query_opt(
    c: &ClientWrapper,
    sql: &str,
    params: &Params<'_>,
) -> Result<Option<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&statement, params).await?)
}

/// Every row.
pub(super) async fn query(
    c: &ClientWrapper,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

/// The rows changed.
pub(super) async fn execute(
    c: &ClientWrapper,
    sql: &str,
    params: &Params<'_>,
) -> Result<u64, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}
