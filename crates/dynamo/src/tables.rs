//! The tables a service declares: their keys and indexes, created when missing.

/// The type of a key attribute.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    S,
    N,
}

pub(crate) type Key = (&'static str, KeyKind);

/// A global secondary index: its name and key.
#[derive(Debug, Clone)]
pub struct Index {
    pub name: &'static str,
    pub key: Key,
    pub sort: Option<Key>,
}

/// A table a service needs, created when missing.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: &'static str,
    pub key: Key,
    pub sort: Option<Key>,
    pub indexes: Vec<Index>,
    /// The attribute (a Number, Unix seconds) after which DynamoDB deletes an item by itself.
    pub expires_by: Option<&'static str>,
}

impl Table {
    pub fn new(name: &'static str, key: Key) -> Table {
        Table {
            name,
            key,
            sort: None,
            indexes: Vec::new(),
            expires_by: None,
        }
    }

    /// Items are deleted by DynamoDB some time after the Unix second in `attribute` (its time
    /// to live; AWS takes up to a few days, so readers must still ignore expired items).
    pub fn expiring(mut self, attribute: &'static str) -> Table {
        self.expires_by = Some(attribute);
        self
    }

    pub fn sorted_by(mut self, sort: Key) -> Table {
        self.sort = Some(sort);
        self
    }

    pub fn index(mut self, name: &'static str, key: Key, sort: Option<Key>) -> Table {
        self.indexes.push(Index { name, key, sort });
        self
    }
}

/// How to open a service's database.
#[derive(Debug, Clone)]
pub struct Options {
    /// The service, the middle part of every table name: `<prefix>.<service>.<table>`.
    pub service: &'static str,
    pub tables: Vec<Table>,
}
