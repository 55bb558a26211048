//! A fresh database for each test, on a real server: `MYEVENTS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`), dropped when the [`TestDatabase`] is.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub const URL_VARIABLE: &str = "MYEVENTS_TEST_POSTGRES_URL";
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432";

pub struct TestDatabase {
    name: String,
    server: String,
    /// The URL of the new database.
    pub url: String,
}

pub use platform::url::with_database;

impl TestDatabase {
    pub async fn create() -> Result<TestDatabase, sqlx::Error> {
        let server = std::env::var(URL_VARIABLE).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let name = format!("myevents_test_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(&with_database(&server, "postgres")).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(TestDatabase {
            url: with_database(&server, &name),
            name,
            server,
        })
    }
}

impl Drop for TestDatabase {
    /// Drops the database, closing what still uses it; best effort, from a thread of its own
    /// because `Drop` cannot wait for async work on the test's runtime.
    fn drop(&mut self) {
        let admin_url = with_database(&self.server, "postgres");
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                sqlx::raw_sql(AssertSqlSafe(statement))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
