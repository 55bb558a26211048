//! The outbox of a SQLite service database (a real file), as the relay reads it.

use std::sync::Arc;

use bus::SqliteOutbox;
use bus::conformance::{self, Append};
use sqlite::{Db, DbError, Options};

#[tokio::test]
async fn the_backlog_counts_what_waits_and_dates_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        migrations: vec![sqlite::outbox::MIGRATION],
        ..Options::default()
    };
    let db = Db::open(&dir.path().join("service.db"), options).expect("open");
    let writer = db.clone();
    let append: Append = Box::new(move |envelope| {
        let db = writer.clone();
        Box::pin(async move {
            db.write(move |c| sqlite::outbox::append(c, &envelope).map_err(DbError::from))
                .await?;
            Ok(())
        })
    });
    conformance::the_backlog_counts_what_waits_and_dates_the_oldest(
        Arc::new(SqliteOutbox(db)),
        append,
    )
    .await;
}
