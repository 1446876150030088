//! `plc_operations` (inline): the embedded PLC directory's read model — every did:plc operation
//! it accepted (`plc.operation` events of the `plc/<did>` streams, `domain::plc_directory`), in
//! acceptance order per DID, with the ones a recovery nullified marked. What the directory's
//! `GET` routes read.
//!
//! Never reads the clock: times come from the events.

use domain::plc::SignedOp;
use domain::plc_directory::{IndexedOp, OperationAccepted, EVENT_TYPES};
use eventlog::{Envelope, EventLog, ReadPool, Tx};
use futures_util::future::BoxFuture;

use crate::sql::{exec, numbered};
use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "plc_operations";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::Inline,
    handles: &EVENT_TYPES,
    tables: &[Table {
        name: "plc_operations",
        columns: &["did", "seq", "cid", "operation", "nullified", "created_at"],
    }],
    apply,
};

fn apply<'a>(mut tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        for e in events {
            let fail = |message: String| ProjectionError::Apply { projector: NAME, position: e.position, message };
            let event = OperationAccepted::from_payload(&e.event_type, e.event_version, &e.payload)
                .map_err(|err| fail(err.to_string()))?;
            for cid in &event.nullifies {
                exec(
                    &mut tx,
                    "UPDATE plc_operations SET nullified = 1 WHERE did = ? AND cid = ?",
                    &[event.did.clone().into(), cid.to_string().into()],
                )
                .await?;
            }
            let operation = event.op.to_cbor().map_err(|err| fail(err.to_string()))?;
            exec(
                &mut tx,
                "INSERT INTO plc_operations (did, seq, cid, operation, nullified, created_at) VALUES (?, ?, ?, ?, 0, ?)",
                &[
                    event.did.clone().into(),
                    e.stream_version.into(),
                    event.cid.to_string().into(),
                    operation.into(),
                    event.created_at.into(),
                ],
            )
            .await?;
        }
        Ok(())
    })
}

type Row = (String, Vec<u8>, i64, i64);

/// The operations held for `did` in acceptance order (nullified ones only with
/// `include_nullified`); empty for an unknown DID.
pub async fn operations(log: &EventLog, did: &str, include_nullified: bool) -> Result<Vec<IndexedOp>, ProjectionError> {
    let sql = if include_nullified {
        "SELECT cid, operation, nullified, created_at FROM plc_operations WHERE did = ? ORDER BY seq"
    } else {
        "SELECT cid, operation, nullified, created_at FROM plc_operations WHERE did = ? AND nullified = 0 ORDER BY seq"
    };
    let rows: Vec<Row> = match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_as(sql).bind(did).fetch_all(p).await?,
        ReadPool::Postgres(p) => sqlx::query_as(&numbered(sql)).bind(did).fetch_all(p).await?,
    };
    rows.into_iter()
        .map(|(cid, operation, nullified, created_at)| {
            let bad = |m: String| ProjectionError::Apply { projector: NAME, position: 0, message: format!("{did}: {m}") };
            Ok(IndexedOp {
                op: SignedOp::from_cbor(&operation).map_err(|e| bad(e.to_string()))?,
                cid: domain::cbor::Cid::try_from(cid.as_str()).map_err(|e| bad(e.to_string()))?,
                created_at,
                nullified: nullified != 0,
            })
        })
        .collect()
}

/// The latest operation of `did` that is not nullified (what `GET /{did}` renders).
pub async fn last_operation(log: &EventLog, did: &str) -> Result<Option<IndexedOp>, ProjectionError> {
    Ok(operations(log, did, false).await?.pop())
}
