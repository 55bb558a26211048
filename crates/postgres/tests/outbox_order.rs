//! Outbox positions become visible in increasing order even when many transactions append at
//! once (see `postgres::outbox` and the shared check in `bus::conformance`), and the backlog is
//! measured right. Against a real server, in a fresh database.

use std::sync::Arc;

use bus::conformance::{self, Append, Positions};
use postgres::testing::TestDatabase;
use postgres::{Options, Pg, PgOutbox, outbox};

const WRITERS: usize = 4;
const COMMITS_EACH: usize = 25;

async fn fresh() -> (TestDatabase, Pg) {
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let pg = Pg::connect_lazy(
        &db.url,
        Options {
            schema: "ordering".into(),
            migrations: vec![outbox::MIGRATION],
            max_connections: 8,
        },
    )
    .expect("a valid URL");
    pg.migrate().await.expect("migrations");
    (db, pg)
}

fn appender(pg: &Pg) -> Append {
    let pg = pg.clone();
    Box::new(move |envelope| {
        let pg = pg.clone();
        Box::pin(async move {
            let tx = pg.begin().await?;
            pg.commit(tx, std::slice::from_ref(&envelope)).await?;
            Ok(())
        })
    })
}

#[tokio::test]
async fn the_backlog_counts_what_waits_and_dates_the_oldest() {
    let (_db, pg) = fresh().await;
    conformance::the_backlog_counts_what_waits_and_dates_the_oldest(
        Arc::new(PgOutbox::new(pg.clone())),
        appender(&pg),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_remembers_its_position_misses_no_concurrent_commit() {
    let (_db, pg) = fresh().await;

    let writers = (0..WRITERS)
        .map(|_| {
            let pg = pg.clone();
            let append: Append = Box::new(move |envelope| {
                let pg = pg.clone();
                Box::pin(async move {
                    let mut tx = pg.begin().await?;
                    outbox::append(&mut tx, std::slice::from_ref(&envelope)).await?;
                    // Widens the gap between drawing a position and committing, where a plain
                    // sequence lets a later position become visible first.
                    postgres::sqlx::query("SELECT pg_sleep(random() * 0.004)")
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                })
            });
            append
        })
        .collect();
    conformance::a_reader_that_only_moves_forward_misses_no_concurrent_commit(
        Arc::new(PgOutbox::new(pg)),
        writers,
        COMMITS_EACH,
        Positions::Increasing,
    )
    .await;
}
