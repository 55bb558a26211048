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

/// `url` naming database `database` instead of the one it names, if any.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

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

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_url_gets_another_database() {
        assert_eq!(
            with_database("mongodb://127.0.0.1:27017", "t"),
            "mongodb://127.0.0.1:27017/t"
        );
        assert_eq!(
            with_database("mongodb://u:p@h:1,h:2/old?replicaSet=rs", "t"),
            "mongodb://u:p@h:1,h:2/t?replicaSet=rs"
        );
    }
}
