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

/// `url` without the password of its user-info (`scheme://user:***@host…`), for error messages
/// and logs: a mistyped URL must not put a password where operators read.
pub fn redacted(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| authority_start + i);
    let Some(at) = url[authority_start..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user_info = &url[authority_start..authority_start + at];
    match user_info.split_once(':') {
        Some((user, _)) => format!(
            "{}{user}:***{}",
            &url[..authority_start],
            &url[authority_start + at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{redacted, with_database};

    #[test]
    fn a_password_is_left_out_of_a_redacted_url() {
        assert_eq!(
            redacted("ampq://me:s3cret@h:5672/%2f"),
            "ampq://me:***@h:5672/%2f"
        );
        assert_eq!(
            redacted("postgresql+ssl://u:p@w:rd@h/db?x=y@z"),
            "postgresql+ssl://u:***@h/db?x=y@z"
        );
        assert_eq!(
            redacted("sqs://127.0.0.1:5000?zone=x"),
            "sqs://127.0.0.1:5000?zone=x"
        );
        assert_eq!(redacted("kafka://u@h:9092"), "kafka://u@h:9092");
    }

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
