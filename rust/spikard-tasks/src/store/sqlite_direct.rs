//! SQLite inserts on the calling thread, for producers that block anyway.
//!
//! sqlx runs every SQLite statement on a worker thread of its own, so a blocking enqueue
//! from Python crossed threads twice per job (to that worker and back). `perf` put half
//! of a single enqueue's time in those wake-ups. A producer thread that is going to wait
//! for its insert anyway runs it here instead, on a connection of its own (rusqlite,
//! linked against the same SQLite library as sqlx). It takes the store's write lock like
//! every other writer of the process, so writers never meet in SQLite's busy handler.
//!
//! Only plain rows (no unique key) take this path; rows with a unique key go through
//! [`super::Store::enqueue`], which holds the one implementation of that look-up.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params_from_iter, Connection, OpenFlags, ToSql};

use super::sqlite::INSERT_CHUNK;
use crate::error::{CoreError, CoreResult};
use crate::job::{Enqueued, JobRow};

/// How long an insert waits while another process holds the database's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection for inserts made on the calling thread.
#[derive(Debug)]
pub(crate) struct DirectWriter {
    conn: Mutex<Connection>,
}

impl DirectWriter {
    /// Opens the existing database file at `path` (its schema already set up).
    pub(crate) fn open(path: &Path, synchronous_full: bool) -> CoreResult<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| CoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let sync = if synchronous_full { "FULL" } else { "NORMAL" };
        conn.pragma_update(None, "synchronous", sync)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Inserts `rows` (none with a unique key) in one transaction; the caller holds the
    /// store's write lock.
    pub(crate) fn insert(&self, rows: &[JobRow]) -> CoreResult<Vec<Enqueued>> {
        debug_assert!(rows.iter().all(|r| r.unique_key.is_none()));
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if rows.len() <= INSERT_CHUNK {
            // One statement: atomic on its own.
            insert_chunk(&conn, rows)?;
        } else {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for chunk in rows.chunks(INSERT_CHUNK) {
                insert_chunk(&tx, chunk)?;
            }
            tx.commit()?;
        }
        Ok(super::all_created(rows))
    }
}

/// One multi-row INSERT of `rows` (the same statement the async path runs).
fn insert_chunk(conn: &Connection, rows: &[JobRow]) -> rusqlite::Result<()> {
    let sql = super::rows::insert_jobs_sql("spikard_jobs", rows.len());
    let mut stmt = conn.prepare_cached(&sql)?;
    let values = rows.iter().flat_map(|r| -> [&dyn ToSql; 12] {
        [
            &r.id,
            &r.queue,
            &r.task,
            &r.args,
            &r.kwargs,
            &r.priority,
            &r.max_attempts,
            &r.run_at_ms,
            &r.timeout_ms,
            &r.unique_key,
            &r.enqueued_at_ms,
            &r.trace_context,
        ]
    });
    stmt.execute(params_from_iter(values))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::job::{JobRow, JobStatus};
    use crate::store::sqlite::SqliteStore;
    use crate::store::Store;

    fn row(id: &str, unique_key: Option<&str>) -> JobRow {
        JobRow {
            id: id.into(),
            queue: "default".into(),
            task: "add".into(),
            args: "[1, 2]".into(),
            kwargs: "{}".into(),
            priority: 3,
            max_attempts: 5,
            run_at_ms: 1,
            timeout_ms: Some(1000),
            unique_key: unique_key.map(Into::into),
            enqueued_at_ms: 1,
            trace_context: None,
        }
    }

    /// A store on a fresh database file, with a runtime to call its async methods.
    fn file_store() -> (tempfile::TempDir, tokio::runtime::Runtime, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt
            .block_on(SqliteStore::open_file(&dir.path().join("q.db"), false))
            .unwrap();
        (dir, rt, store)
    }

    #[test]
    fn blocking_inserts_are_the_jobs_the_async_path_reads() {
        let (_dir, rt, store) = file_store();

        let one = store
            .enqueue_blocking(&[row("a", None)])
            .expect("a file store can");
        assert_eq!(one.unwrap()[0].id, "a");
        // More rows than one statement holds: one transaction of several statements.
        let many: Vec<JobRow> = (0..1000).map(|i| row(&format!("m{i:04}"), None)).collect();
        let out = store.enqueue_blocking(&many).unwrap().unwrap();
        assert_eq!(out.len(), 1000);
        assert!(out.iter().all(|e| e.created));

        let a = rt.block_on(store.get("a")).unwrap().expect("stored");
        assert_eq!(
            (a.status, a.max_attempts, a.task.as_str()),
            (JobStatus::Pending, 5, "add")
        );
        let last = rt.block_on(store.get("m0999")).unwrap();
        assert!(last.is_some_and(|j| j.status == JobStatus::Pending));
        assert_eq!(a.trace_context, None);
        let traced = JobRow {
            trace_context: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            ..row("t", None)
        };
        store
            .enqueue_blocking(std::slice::from_ref(&traced))
            .unwrap()
            .unwrap();
        let t = rt.block_on(store.get("t")).unwrap().expect("stored");
        assert_eq!(t.trace_context, traced.trace_context);

        // A duplicate id fails as a whole and inserts nothing of its batch.
        let dup = vec![row("fresh", None), row("a", None)];
        assert!(store.enqueue_blocking(&dup).unwrap().is_err());
        assert!(rt.block_on(store.get("fresh")).unwrap().is_none());
    }

    #[test]
    fn unique_rows_and_async_callers_take_the_async_path() {
        let (_dir, rt, store) = file_store();
        assert!(store.enqueue_blocking(&[row("u", Some("k"))]).is_none());
        let inside = rt.block_on(async { store.enqueue_blocking(&[row("b", None)]).is_none() });
        assert!(inside, "never blocks a runtime thread");
        let memory = rt.block_on(SqliteStore::open_memory()).unwrap();
        assert!(memory.enqueue_blocking(&[row("c", None)]).is_none());
    }
}
