//! The transactional outbox in DynamoDB: the events a state change causes are put in the
//! service's `outbox` table in the same `TransactWriteItems` as the change, and the relay
//! (`bus::relay`) publishes them afterwards.
//!
//! The relay remembers only the highest position it has published, so positions must become
//! visible in increasing order. Each entry is keyed by (the constant partition `outbox`,
//! position), and a counter item (partition `counter`) holds the last position drawn. A
//! transaction that appends reads the counter, puts its entries at the next positions and sets
//! the counter on condition that it still holds the value read; the transaction that loses that
//! race is made again with new positions. So positions are drawn in commit order, with no holes:
//! a transaction that fails takes none. DynamoDB Streams would be the alternative, but a stream
//! keeps records for 24 hours only, orders them per item rather than per table, and needs a
//! reader that tracks shards; a table read with `Query` in key order needs none of that.
//!
//! A `Query` may see part of a transaction that is being applied, so [`pending`] stops at the
//! first hole: the entries after it belong to a commit that is not whole yet, and are read on
//! the next round.
//!
//! [`pending`]: DynamoOutbox::pending

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use contracts::Envelope;
use tokio::sync::Notify;

use crate::item::{Item, get_n, get_s, get_s_opt, item, n, s};
use crate::{Dynamo, DynamoError, KeyKind, Query, Table, Write};

pub const TABLE: &str = "outbox";
/// Partition of the entries.
const ENTRIES: &str = "outbox";
/// Partition of the counter item.
const COUNTER: &str = "counter";

/// The outbox table every service that emits events has.
pub fn table() -> Table {
    Table::new(TABLE, ("p", KeyKind::S)).sorted_by(("n", KeyKind::N))
}

fn counter_key() -> Item {
    item([("p", s(COUNTER)), ("n", n(0))])
}

/// The counter item: (last position drawn, highest position published), 0 when none.
async fn counter(db: &Dynamo) -> Result<(i64, i64), DynamoError> {
    match db.get(TABLE, counter_key()).await? {
        Some(c) => Ok((
            get_n_or_zero(&c, "last_drawn")?,
            get_n_or_zero(&c, "last_published")?,
        )),
        None => Ok((0, 0)),
    }
}

fn get_n_or_zero(item: &Item, name: &str) -> Result<i64, DynamoError> {
    if item.contains_key(name) {
        get_n(item, name)
    } else {
        Ok(0)
    }
}

/// The last position drawn.
pub(crate) async fn head(db: &Dynamo) -> Result<i64, DynamoError> {
    Ok(counter(db).await?.0)
}

/// The writes that append `envelopes` after position `head`, which must be the counter's value
/// when the transaction commits.
pub(crate) fn append(db: &Dynamo, head: i64, envelopes: &[Envelope]) -> Vec<Write> {
    if envelopes.is_empty() {
        return Vec::new();
    }
    let table = db.table(TABLE);
    let last = head + envelopes.len() as i64;
    let condition = if head == 0 {
        "attribute_not_exists(last_drawn)"
    } else {
        "last_drawn = :head"
    };
    let mut counter = Write::update(table.clone(), counter_key(), "SET last_drawn = :last")
        .when(condition)
        .value(":last", n(last));
    if head != 0 {
        counter = counter.value(":head", n(head));
    }
    let mut writes = vec![counter];
    for (i, e) in envelopes.iter().enumerate() {
        let mut entry = item([
            ("p", s(ENTRIES)),
            ("n", n(head + 1 + i as i64)),
            ("id", s(&e.id)),
            ("name", s(&e.name)),
            ("key", s(&e.key)),
            (
                "at",
                s(e.occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            ),
            ("payload", s(&e.payload)),
        ]);
        if let Some(trace) = &e.trace {
            entry.insert("trace".into(), s(trace));
        }
        writes.push(Write::put(table.clone(), entry));
    }
    writes
}

fn envelope(entry: &Item) -> Result<(i64, Envelope), DynamoError> {
    let at = get_s(entry, "at")?;
    let occurred_at = DateTime::parse_from_rfc3339(&at)
        .map_err(|e| DynamoError::Data(format!("outbox time {at:?}: {e}")))?
        .with_timezone(&Utc);
    Ok((
        get_n(entry, "n")?,
        Envelope {
            id: get_s(entry, "id")?,
            name: get_s(entry, "name")?,
            key: get_s(entry, "key")?,
            occurred_at,
            trace: get_s_opt(entry, "trace")?,
            payload: get_s(entry, "payload")?,
        },
    ))
}

fn entries_after(after: i64) -> Query {
    Query::new("p = :p AND n > :after")
        .value(":p", s(ENTRIES))
        .value(":after", n(after))
}

/// The outbox table of a DynamoDB service database, for the relay.
pub struct DynamoOutbox(pub Dynamo);

#[async_trait]
impl bus::Outbox for DynamoOutbox {
    async fn pending(&self, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Envelope)>> {
        // Below `published` everything was published already, and may be deleted in part.
        let (_, published) = counter(&self.0).await?;
        let after = after.max(published);
        let entries = self
            .0
            .query(TABLE, entries_after(after).limit(limit))
            .await?;
        let mut pending = Vec::with_capacity(entries.len());
        for entry in &entries {
            let (position, envelope) = envelope(entry)?;
            // A hole: a commit that is not whole yet (see the module comment).
            if position != after + 1 + pending.len() as i64 {
                break;
            }
            pending.push((position, envelope));
        }
        Ok(pending)
    }

    async fn mark_published(&self, position: i64) -> anyhow::Result<()> {
        let db = &self.0;
        // Recorded first, so that entries a crash leaves undeleted are not published again.
        let recorded = Write::update(db.table(TABLE), counter_key(), "SET last_published = :p")
            .when("attribute_not_exists(last_published) OR last_published < :p")
            .value(":p", n(position));
        db.write(recorded).await?;
        let done = db
            .query(
                TABLE,
                Query::new("p = :p AND n <= :last")
                    .value(":p", s(ENTRIES))
                    .value(":last", n(position)),
            )
            .await?;
        for entry in done {
            let key = item([("p", s(ENTRIES)), ("n", n(get_n::<i64>(&entry, "n")?))]);
            db.write(Write::delete(db.table(TABLE), key)).await?;
        }
        Ok(())
    }

    async fn backlog(&self, after: i64) -> anyhow::Result<bus::Backlog> {
        let (head, published) = counter(&self.0).await?;
        let after = after.max(published);
        let events = u64::try_from(head - after).unwrap_or(0);
        if events == 0 {
            return Ok(bus::Backlog::default());
        }
        let first = self.0.query(TABLE, entries_after(after).limit(1)).await?;
        let oldest = first
            .first()
            .map(envelope)
            .transpose()?
            .map(|(_, e)| e.occurred_at);
        Ok(bus::Backlog { events, oldest })
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.0.committed()
    }
}
