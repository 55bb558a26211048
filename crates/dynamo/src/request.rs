//! Writes and queries as a service builds them: expressions with their `#name` and `:value`
//! placeholders, turned into the SDK's requests by [`crate::Dynamo`].

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem, Update};

use crate::DynamoError;
use crate::item::Item;

/// What a transaction made of its writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    Done,
    /// Nothing was written: the conditions of the caller's writes at these indexes did not hold.
    Refused(Vec<usize>),
}

/// The `#name` and `:value` placeholders of a request's expressions and what they stand for;
/// [`Write`] and [`Query`] bind them the same way.
#[derive(Debug, Clone, Default)]
pub(crate) struct Placeholders {
    names: HashMap<String, String>,
    values: Item,
}

impl Placeholders {
    fn value(&mut self, name: &str, value: aws_sdk_dynamodb::types::AttributeValue) {
        self.values.insert(name.to_owned(), value);
    }

    fn name(&mut self, placeholder: &str, attribute: &str) {
        self.names
            .insert(placeholder.to_owned(), attribute.to_owned());
    }

    /// As the SDK takes them: none rather than empty, which DynamoDB refuses.
    pub(crate) fn into_parts(self) -> (Option<HashMap<String, String>>, Option<Item>) {
        (
            (!self.names.is_empty()).then_some(self.names),
            (!self.values.is_empty()).then_some(self.values),
        )
    }
}

/// One write of a transaction (or on its own, see [`crate::Dynamo::write`]), with its condition.
#[derive(Debug, Clone)]
pub struct Write {
    kind: Kind,
    table: String,
    condition: Option<String>,
    placeholders: Placeholders,
}

#[derive(Debug, Clone)]
enum Kind {
    Put(Item),
    Update { key: Item, expression: String },
    Delete(Item),
    Check(Item),
}

impl Write {
    fn of(kind: Kind, table: String) -> Write {
        Write {
            kind,
            table,
            condition: None,
            placeholders: Placeholders::default(),
        }
    }

    pub fn put(table: String, item: Item) -> Write {
        Write::of(Kind::Put(item), table)
    }

    pub fn update(table: String, key: Item, expression: &str) -> Write {
        let expression = expression.to_owned();
        Write::of(Kind::Update { key, expression }, table)
    }

    pub fn delete(table: String, key: Item) -> Write {
        Write::of(Kind::Delete(key), table)
    }

    /// A condition on an item that is not written (give it one with [`Write::when`]).
    pub fn check(table: String, key: Item) -> Write {
        Write::of(Kind::Check(key), table)
    }

    pub fn when(mut self, condition: &str) -> Write {
        self.condition = Some(condition.to_owned());
        self
    }

    /// Binds placeholder `:name` of the expressions.
    pub fn value(mut self, name: &str, value: aws_sdk_dynamodb::types::AttributeValue) -> Write {
        self.placeholders.value(name, value);
        self
    }

    /// Binds placeholder `#name` to an attribute (for attribute names DynamoDB reserves).
    pub fn name(mut self, placeholder: &str, attribute: &str) -> Write {
        self.placeholders.name(placeholder, attribute);
        self
    }

    pub(crate) fn into_transact(self) -> Result<TransactWriteItem, DynamoError> {
        let built = |e: aws_sdk_dynamodb::error::BuildError| DynamoError::Data(e.to_string());
        let (names, values) = self.placeholders.into_parts();
        let item = TransactWriteItem::builder();
        Ok(match self.kind {
            Kind::Put(attributes) => item.put(
                Put::builder()
                    .table_name(self.table)
                    .set_item(Some(attributes))
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(built)?,
            ),
            Kind::Update { key, expression } => item.update(
                Update::builder()
                    .table_name(self.table)
                    .set_key(Some(key))
                    .update_expression(expression)
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(built)?,
            ),
            Kind::Delete(key) => item.delete(
                Delete::builder()
                    .table_name(self.table)
                    .set_key(Some(key))
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(built)?,
            ),
            Kind::Check(key) => item.condition_check(
                ConditionCheck::builder()
                    .table_name(self.table)
                    .set_key(Some(key))
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(built)?,
            ),
        }
        .build())
    }
}

/// A query of one table or index, built up like a [`Write`].
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) index: Option<&'static str>,
    pub(crate) condition: String,
    pub(crate) filter: Option<String>,
    pub(crate) placeholders: Placeholders,
    pub(crate) backward: bool,
    pub(crate) limit: Option<usize>,
}

impl Query {
    /// Items whose key matches `condition` (a key condition expression), in key order.
    pub fn new(condition: &str) -> Query {
        Query {
            index: None,
            condition: condition.to_owned(),
            filter: None,
            placeholders: Placeholders::default(),
            backward: false,
            limit: None,
        }
    }

    /// Reads index `name` instead of the table. Indexes are eventually consistent on AWS.
    pub fn index(mut self, name: &'static str) -> Query {
        self.index = Some(name);
        self
    }

    pub fn filter(mut self, filter: &str) -> Query {
        self.filter = Some(filter.to_owned());
        self
    }

    pub fn value(mut self, name: &str, value: aws_sdk_dynamodb::types::AttributeValue) -> Query {
        self.placeholders.value(name, value);
        self
    }

    pub fn name(mut self, placeholder: &str, attribute: &str) -> Query {
        self.placeholders.name(placeholder, attribute);
        self
    }

    pub fn limit(mut self, limit: usize) -> Query {
        self.limit = Some(limit);
        self
    }
}
