//! `dynamodb://` URLs: where the tables are, their names' prefix, and how to write.

/// Where a `dynamodb://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `http://HOST:PORT` of a server of one's own (moto, DynamoDB Local); `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// The first part of every table name.
    pub prefix: String,
    /// `writes=serial`: this process makes its writes one at a time, for a server that does not
    /// isolate concurrent transactions (see [`serial_writes`]).
    pub serial_writes: bool,
}

pub const DEFAULT_PREFIX: &str = "myevents";

/// Reads `dynamodb://HOST:PORT?region=R&prefix=P&writes=serial` (the last two optional), or `dynamodb://aws?region=R` (also
/// `dynamodb://` without a host) for AWS's own endpoint of the region.
pub fn parse_url(url: &str) -> Result<Address, String> {
    let rest = url
        .strip_prefix("dynamodb://")
        .ok_or("expected dynamodb://HOST:PORT, or dynamodb://aws for AWS")?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '@']) {
        return Err("expected no path and no user name: dynamodb://HOST:PORT".into());
    }
    let endpoint = match authority {
        "" | "aws" => None,
        host => Some(format!("http://{host}")),
    };
    let (mut region, mut prefix) = (None, DEFAULT_PREFIX.to_owned());
    let mut serial_writes = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("region", value)) if !value.is_empty() => region = Some(value.to_owned()),
            Some(("prefix", value)) if valid_prefix(value) => prefix = value.to_owned(),
            Some(("prefix", value)) => {
                return Err(format!(
                    "prefix {value:?} must be letters, digits, '_', '-' or '.'"
                ));
            }
            Some(("writes", "serial")) => serial_writes = true,
            _ => {
                return Err(format!(
                    "unknown parameter {pair:?} (region=…, prefix=… and writes=serial are known)"
                ));
            }
        }
    }
    Ok(Address {
        endpoint,
        region: bus::aws::region(region),
        prefix,
        serial_writes,
    })
}

/// Table names allow these characters only, and at most 255 of them.
fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 150
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
