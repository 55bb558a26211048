//! Database server URLs.

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

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_url_gets_another_database() {
        assert_eq!(
            with_database("postgres://u@h:5432", "t"),
            "postgres://u@h:5432/t"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/old?sslmode=disable", "t"),
            "postgresql://u:p@h/t?sslmode=disable"
        );
    }

    #[test]
    fn a_mongodb_url_gets_another_database() {
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
