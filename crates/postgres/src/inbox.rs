//! The idempotent inbox in PostgreSQL: a consumer records each message id in the same
//! transaction in which it applies the message, so a redelivered message changes nothing.

use sqlx::PgConnection;

pub const MIGRATION: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    message_id TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

/// Records `message_id`; true the first time, false for a redelivery. A concurrent delivery of
/// the same id waits here until the first one's transaction ends, then sees it.
pub async fn first_delivery(
    conn: &mut PgConnection,
    message_id: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query("INSERT INTO inbox (message_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(message_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(inserted == 1)
}
