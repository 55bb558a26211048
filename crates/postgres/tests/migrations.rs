//! Migrations run once per set of statements: a second handle (a replica starting beside one
//! that serves) finds them applied and takes no lock on the tables, where `ALTER TABLE … ADD
//! COLUMN IF NOT EXISTS` would wait for every open transaction on the table.

use std::time::Duration;

use postgres::testing::TestDatabase;
use postgres::{Options, Pg};

const TABLE: &str = "CREATE TABLE IF NOT EXISTS seats (id TEXT PRIMARY KEY)";
const COLUMN: &str = "ALTER TABLE seats ADD COLUMN IF NOT EXISTS note TEXT";

fn handle(url: &str, migrations: Vec<&'static str>) -> Pg {
    let options = Options {
        schema: "migrated".into(),
        migrations,
        max_connections: 2,
    };
    Pg::connect_lazy(url, options).expect("a valid URL")
}

#[tokio::test]
async fn migrations_applied_before_take_no_lock_on_a_busy_table() {
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let serving = handle(&db.url, vec![TABLE, COLUMN]);
    serving.migrate().await.unwrap();
    // A transaction in flight on the table, as a serving replica has.
    let mut busy = serving.begin().await.unwrap();
    postgres::query("INSERT INTO seats (id) VALUES ('a')".into())
        .execute(&mut *busy)
        .await
        .unwrap();

    let starting = handle(&db.url, vec![TABLE, COLUMN]);
    let migrated = tokio::time::timeout(Duration::from_secs(10), starting.migrate()).await;
    assert!(
        matches!(migrated, Ok(Ok(()))),
        "the second migration waited on the busy table: {migrated:?}"
    );
    busy.commit().await.unwrap();

    // New statements do run (and wait for the table, as they must).
    let upgraded = handle(
        &db.url,
        vec![
            TABLE,
            COLUMN,
            "CREATE INDEX IF NOT EXISTS by_note ON seats (note)",
        ],
    );
    upgraded.migrate().await.unwrap();
    let indexed: bool = postgres::sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'migrated' AND indexname = 'by_note')",
    )
    .fetch_one(upgraded.pool().await.unwrap())
    .await
    .unwrap();
    assert!(indexed);
}
