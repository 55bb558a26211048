//! Items as maps of attribute values, and reading them back into Rust types with errors that
//! say which attribute was wrong.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::DynamoError;

pub type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// An item from (name, value) pairs.
pub fn item<const N: usize>(pairs: [(&str, AttributeValue); N]) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn malformed(name: &str, what: &str) -> DynamoError {
    DynamoError::Data(format!("attribute {name:?} {what}"))
}

/// String attribute `name` of `item`.
pub fn get_s(item: &Item, name: &str) -> Result<String, DynamoError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        Some(_) => Err(malformed(name, "is not a string")),
        None => Err(malformed(name, "is missing")),
    }
}

/// String attribute `name` of `item`, if it has one.
pub fn get_s_opt(item: &Item, name: &str) -> Result<Option<String>, DynamoError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(_) => get_s(item, name).map(Some),
    }
}

/// Number attribute `name` of `item`, as the type asked for (refusing one that does not fit).
pub fn get_n<T: FromStr>(item: &Item, name: &str) -> Result<T, DynamoError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| malformed(name, &format!("= {v} is out of range"))),
        Some(_) => Err(malformed(name, "is not a number")),
        None => Err(malformed(name, "is missing")),
    }
}

/// Map attribute `name` of `item`.
pub fn get_m<'i>(item: &'i Item, name: &str) -> Result<&'i Item, DynamoError> {
    match item.get(name) {
        Some(AttributeValue::M(v)) => Ok(v),
        Some(_) => Err(malformed(name, "is not a map")),
        None => Err(malformed(name, "is missing")),
    }
}
