//! A fresh database for each test, on a real server: `MYEVENTS_TEST_MONGO_URL` (default
//! `mongodb://127.0.0.1:27017`). A test's URL names the database `myevents_test_<random>`; each
//! service opened on it makes `myevents_test_<random>_<service>`, and every database with that
//! prefix is dropped when the [`TestDatabase`] is.

use mongodb::Client;
use mongodb::bson::doc;

pub const URL_VARIABLE: &str = "MYEVENTS_TEST_MONGO_URL";
pub const DEFAULT_URL: &str = "mongodb://127.0.0.1:27017";

pub struct TestDatabase {
    prefix: String,
    server: String,
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
            server,
        })
    }
}

impl Drop for TestDatabase {
    /// Drops the test's databases; best effort, from a thread of its own because `Drop` cannot
    /// wait for async work on the test's runtime.
    fn drop(&mut self) {
        let (server, prefix) = (self.server.clone(), format!("{}_", self.prefix));
        let dropped = std::thread::spawn(move || {
            // One drop at a time per test binary: SecantusDB once hung (a WiredTiger cursor
            // spinning) while several tests dropped their databases at once.
            static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _turn = ONE_AT_A_TIME.lock();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = Client::with_uri_str(&server).await?;
                for name in client.list_database_names().await? {
                    if name.starts_with(&prefix) {
                        client.database(&name).drop().await?;
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test databases {}*", self.prefix);
        }
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
