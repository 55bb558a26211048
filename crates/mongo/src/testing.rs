//! A fresh database for each test, on a real server: `MYEVENTS_TEST_MONGO_URL` (default
//! `mongodb://127.0.0.1:27017`). A test's URL names the database `myevents_test_<random>`; each
//! service opened on it makes `myevents_test_<random>_<service>`.

use mongodb::Client;
use mongodb::bson::doc;

pub const URL_VARIABLE: &str = "MYEVENTS_TEST_MONGO_URL";
pub const DEFAULT_URL: &str = "mongodb://127.0.0.1:27017";

/// Test databases are left on the server, not dropped: SecantusDB, the test server, hung twice
/// (a WiredTiger cursor spinning while holding Python's lock, every client waiting) while a
/// test dropped its databases, and a hung server hangs the whole suite. The test server keeps
/// them in memory (`scripts/services.sh`), so they go when it stops.
pub struct TestDatabase {
    prefix: String,
    /// The URL to open stores with.
    pub url: String,
}

pub use platform::url::with_database;

impl TestDatabase {
    /// The database the URL names, and the prefix of every service's database.
    pub fn name(&self) -> &str {
        &self.prefix
    }

    /// Checks that the server answers, so that a test without one fails here, saying so.
    pub async fn create() -> Result<TestDatabase, mongodb::error::Error> {
        let server = std::env::var(URL_VARIABLE).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let prefix = format!("myevents_test_{:016x}", rand::random::<u64>());
        let client = Client::with_uri_str(&server).await?;
        client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await?;
        Ok(TestDatabase {
            url: with_database(&server, &prefix),
            prefix,
        })
    }
}
