//! Keeps `myevents replay` and a running service of the same schema apart, as the lock file does
//! for SQLite: a replay swaps the service's schema for a rebuilt one, and a service writing into
//! the old schema meanwhile would confirm bookings that the new one does not have.
//!
//! Both sides take one PostgreSQL advisory lock, named after the schema: every serving process
//! holds it shared (several processes may serve one database), a replay takes it exclusively.
//! PostgreSQL releases a session's locks when its connection ends, also when the process is
//! killed, so a crash never leaves the lock behind.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::PgError;

/// How often the serving side checks that its connection (and so its lock) is still there.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The advisory lock's key for `schema`: FNV-1a of a fixed prefix and the name, so that another
/// program's advisory locks in the same database are unlikely to collide with it.
pub fn replay_lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "myevents replay ".bytes().chain(schema.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Takes the lock of `schema` exclusively for a replay, or says that a service is using it. The
/// lock lasts as long as the returned connection.
pub async fn lock_for_replay(url: &str, schema: &str) -> Result<PgConnection, PgError> {
    let mut conn = PgConnection::connect(url).await?;
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(replay_lock_key(schema))
        .fetch_one(&mut conn)
        .await?;
    if !taken {
        return Err(PgError::Internal(format!(
            "a service is serving schema {schema} of this database: stop it first"
        )));
    }
    Ok(conn)
}

/// A replay holds the lock.
struct ReplayRunning;

/// One attempt at the shared lock: the connection that holds it, or the news that a replay does.
async fn take_shared(
    url: &str,
    key: i64,
) -> Result<Result<PgConnection, ReplayRunning>, sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock_shared($1)")
        .bind(key)
        .fetch_one(&mut conn)
        .await?;
    Ok(if taken { Ok(conn) } else { Err(ReplayRunning) })
}

fn replay_running(schema: &str) -> PgError {
    PgError::Unavailable(format!(
        "a replay is rebuilding schema {schema} of this database"
    ))
}

/// Takes the lock of `schema` shared for a serving process: an error if a replay holds it (the
/// service must not start); otherwise a future that holds it for as long as the service runs,
/// taking it again whenever its connection is lost (also when the database was down at start),
/// and that ends only if a replay got it meanwhile: the service must then stop serving.
pub async fn lock_for_serving(
    url: &str,
    schema: &str,
) -> Result<impl Future<Output = PgError> + Send + use<>, PgError> {
    let key = replay_lock_key(schema);
    let first = match take_shared(url, key).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(ReplayRunning)) => return Err(replay_running(schema)),
        Err(sqlx::Error::Configuration(e)) => return Err(PgError::Url(e.to_string())),
        // The database does not answer yet: the lock is taken once it does.
        Err(_) => None,
    };
    let (url, schema) = (url.to_owned(), schema.to_owned());
    Ok(async move {
        let mut held = first;
        loop {
            if let Some(mut conn) = held.take() {
                // The lock lasts as long as this connection does.
                while sqlx::query("SELECT 1").execute(&mut conn).await.is_ok() {
                    tokio::time::sleep(HEARTBEAT).await;
                }
            }
            tokio::time::sleep(HEARTBEAT).await;
            match take_shared(&url, key).await {
                Ok(Ok(conn)) => held = Some(conn),
                Ok(Err(ReplayRunning)) => return replay_running(&schema),
                Err(error) => {
                    tracing::debug!(schema, %error, "the replay lock is not held; trying again");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::replay_lock_key;

    #[test]
    fn each_schema_has_its_own_key() {
        assert_eq!(replay_lock_key("bookings"), replay_lock_key("bookings"));
        assert_ne!(
            replay_lock_key("bookings"),
            replay_lock_key("bookings_replay")
        );
    }
}
