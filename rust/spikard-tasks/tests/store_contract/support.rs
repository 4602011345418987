//! Opening each backend for one test, and small helpers the cases share.

use std::sync::Arc;
use std::time::Duration;

use spikard_tasks::job::JobRow;
use spikard_tasks::store::{self, Store};
use spikard_tasks::time::now_ms;
use spikard_tasks::{ClaimedJob, JobRecord};

/// A lease no test outlives.
pub const LEASE: Duration = Duration::from_secs(60);

/// The backends of the suite (server ones are tested only when compiled in).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Memory,
    Postgres,
    MySql,
    Redis,
}

impl Kind {
    /// The server's URL (from the environment or the default) for server backends.
    fn server_url(self) -> Option<(&'static str, String)> {
        let (var, default) = match self {
            Kind::Sqlite | Kind::Memory => return None,
            Kind::Postgres => (
                "SPIKARD_TASKS_TEST_POSTGRES",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            Kind::MySql => (
                "SPIKARD_TASKS_TEST_MYSQL",
                "mysql://root@127.0.0.1:3306/test",
            ),
            Kind::Redis => ("SPIKARD_TASKS_TEST_REDIS", "redis://127.0.0.1:6379/0"),
        };
        Some((
            var,
            std::env::var(var).unwrap_or_else(|_| default.to_owned()),
        ))
    }
}

/// True when something listens at the URL's host and port.
fn reachable(url: &str) -> bool {
    let parsed = url::Url::parse(url).expect("test URL");
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = parsed
        .port_or_known_default()
        .unwrap_or(match parsed.scheme() {
            "postgres" | "postgresql" => 5432,
            "mysql" | "mariadb" => 3306,
            _ => 6379,
        });
    let Ok(addrs) = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)) else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// The server URL of `kind`, or `None` (with a note) when the server does not answer;
/// with `SPIKARD_TASKS_REQUIRE_BACKENDS=1` an unreachable server fails the test.
fn server(kind: Kind) -> Option<String> {
    let (var, url) = kind.server_url()?;
    if reachable(&url) {
        return Some(url);
    }
    if std::env::var("SPIKARD_TASKS_REQUIRE_BACKENDS").as_deref() == Ok("1") {
        panic!(
            "{kind:?} server at {url} ({var}) is unreachable and SPIKARD_TASKS_REQUIRE_BACKENDS=1"
        );
    }
    eprintln!("skipping {kind:?}: no server at {url} (set {var})");
    None
}

/// The Redis database index the tests of global operations use (rescue, purge and
/// maintenance see every job of a database, so they do not run on the shared one).
pub const REDIS_PRIVATE_DB: &str = "/14";

/// Those tests on Redis share [`REDIS_PRIVATE_DB`]: one at a time.
static REDIS_PRIVATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A database created for one test and dropped after it (PostgreSQL, MySQL).
struct PrivateDb {
    kind: Kind,
    admin_url: String,
    name: String,
}

impl Drop for PrivateDb {
    fn drop(&mut self) {
        let (kind, admin, name) = (self.kind, self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(drop_database(kind, &admin, &name));
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// Deletes the (by now empty) per-queue keys of this test's queues, `queue` and
/// `queue-…`, which the Redis store keeps (its counters) after their last job is gone.
#[allow(unused_variables)]
async fn drop_queue_keys(url: &str, queue: &str) {
    #[cfg(feature = "redis")]
    {
        let result: redis::RedisResult<()> = async {
            let client = redis::Client::open(url)?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let mut keys: Vec<String> = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("spikard:q:{queue}*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(keys)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            eprintln!("could not delete the keys of queue {queue}: {e}");
        }
    }
}

#[allow(unused_variables)]
async fn create_database(kind: Kind, admin: &str, name: &str) {
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    {
        use sqlx::Connection;
        let sql = sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"));
        match kind {
            #[cfg(feature = "postgres")]
            Kind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            #[cfg(feature = "mysql")]
            Kind::MySql => {
                let mut conn = sqlx::MySqlConnection::connect(admin).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            _ => unreachable!("no private databases on {kind:?}"),
        }
    }
}

#[allow(unused_variables)]
async fn drop_database(kind: Kind, admin: &str, name: &str) {
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    {
        use sqlx::Connection;
        let result = match kind {
            #[cfg(feature = "postgres")]
            Kind::Postgres => match sqlx::PgConnection::connect(admin).await {
                Ok(mut conn) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .map(|_| ()),
                Err(e) => Err(e),
            },
            #[cfg(feature = "mysql")]
            Kind::MySql => match sqlx::MySqlConnection::connect(admin).await {
                Ok(mut conn) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name}"
                )))
                .execute(&mut conn)
                .await
                .map(|_| ()),
                Err(e) => Err(e),
            },
            _ => Ok(()),
        };
        if let Err(e) = result {
            eprintln!("could not drop the test database {name}: {e}");
        }
    }
}

/// One test's store: its backend, its own queue, and whatever keeps its database.
pub struct Fixture {
    pub kind: Kind,
    pub store: Arc<dyn Store>,
    /// A queue name no other test uses.
    pub queue: String,
    /// The URL the store was opened with.
    pub url: String,
    /// Every job id and worker name this test made (to clean up after it on Redis).
    made: std::sync::Mutex<(Vec<String>, Vec<String>)>,
    // Dropped after the store (fields drop in order).
    _private: Option<PrivateDb>,
    _serial: Option<tokio::sync::MutexGuard<'static, ()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    /// The Redis database of global tests outlives them: take this test's jobs out of
    /// it (release its workers' jobs, cancel its jobs, purge what finished).
    fn drop(&mut self) {
        if self._serial.is_none() {
            return;
        }
        let url = self.url.clone();
        let queue = self.queue.clone();
        let (ids, workers) = std::mem::take(&mut *self.made.lock().unwrap());
        let cleaned = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let store = store::open(&url).await?;
                for w in &workers {
                    store.release(w, None).await?;
                }
                for id in &ids {
                    store.cancel(id).await?;
                }
                while store.purge_finished(now_ms() + 1, 1000).await? > 0 {}
                drop_queue_keys(&url, &queue).await;
                Ok::<_, spikard_tasks::CoreError>(())
            })
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) {
            eprintln!(
                "could not clean up after a test in {}: {cleaned:?}",
                self.url
            );
        }
    }
}

impl Fixture {
    /// `kind` on the database every test shares (tests keep to their own queue);
    /// `None` when the backend's server is unreachable.
    pub async fn shared(kind: Kind) -> Option<Self> {
        Self::open(kind, false).await
    }

    /// `kind` on a database of this test's own, for operations that act on every job
    /// of a database (rescue, purge, maintenance, lease expiry): a fresh SQLite file,
    /// in-memory database or PostgreSQL/MySQL database (dropped afterwards); on Redis
    /// the database [`REDIS_PRIVATE_DB`], one test at a time, cleared of expired
    /// leases and finished jobs first.
    pub async fn private(kind: Kind) -> Option<Self> {
        Self::open(kind, true).await
    }

    async fn open(kind: Kind, private: bool) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut db = None;
        let mut serial = None;
        let url = match kind {
            Kind::Sqlite => format!("sqlite:///{}", dir.path().join("jobs.db").display()),
            Kind::Memory => "memory://".to_owned(),
            Kind::Postgres | Kind::MySql => {
                let base = server(kind)?;
                if private {
                    let name = format!("spikard_contract_{}", uuid::Uuid::now_v7().simple());
                    create_database(kind, &base, &name).await;
                    let mut url = url::Url::parse(&base).unwrap();
                    url.set_path(&name);
                    db = Some(PrivateDb {
                        kind,
                        admin_url: base,
                        name,
                    });
                    url.to_string()
                } else {
                    base
                }
            }
            Kind::Redis => {
                let base = server(kind)?;
                if private {
                    serial = Some(REDIS_PRIVATE.lock().await);
                    let mut url = url::Url::parse(&base).unwrap();
                    url.set_path(REDIS_PRIVATE_DB);
                    url.to_string()
                } else {
                    base
                }
            }
        };
        let store = store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: cannot open {url}: {e}"));
        if serial.is_some() {
            // Leftovers of earlier runs would change the counts these tests check.
            while store.rescue_expired(1000).await.unwrap() > 0 {}
            while store.purge_finished(now_ms() + 1, 1000).await.unwrap() > 0 {}
        }
        Some(Self {
            kind,
            store,
            queue: format!("contract-{}", uuid::Uuid::now_v7().simple()),
            url,
            made: Default::default(),
            _private: db,
            _serial: serial,
            _dir: dir,
        })
    }

    /// Another handle on the same database (`memory://` has one handle only: itself).
    pub async fn second_handle(&self) -> Arc<dyn Store> {
        match self.kind {
            Kind::Memory => self.store.clone(),
            _ => store::open(&self.url).await.unwrap(),
        }
    }

    /// A new job row for this test's queue, ready now, with three attempts.
    pub fn row(&self) -> JobRow {
        let now = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        self.made.lock().unwrap().0.push(id.clone());
        JobRow {
            id,
            queue: self.queue.clone(),
            task: "contract.task".into(),
            args: "[]".into(),
            kwargs: "{}".into(),
            priority: 0,
            max_attempts: 3,
            run_at_ms: now,
            timeout_ms: None,
            unique_key: None,
            enqueued_at_ms: now,
            trace_context: None,
        }
    }

    /// Enqueues rows that must all be created; returns their ids.
    pub async fn enqueue(&self, rows: Vec<JobRow>) -> Vec<String> {
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let out = self.store.enqueue(rows).await.unwrap();
        assert!(out.iter().all(|e| e.created), "{:?}: {out:?}", self.kind);
        assert_eq!(
            out.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            ids,
            "{:?}",
            self.kind
        );
        ids
    }

    /// Enqueues `n` default rows; returns their ids.
    pub async fn add(&self, n: usize) -> Vec<String> {
        self.enqueue((0..n).map(|_| self.row()).collect()).await
    }

    /// This test's queue, as `claim` takes it.
    pub fn queues(&self) -> Vec<String> {
        vec![self.queue.clone()]
    }

    /// Claims up to `limit` jobs of this test's queue for `worker` with a long lease.
    pub async fn claim(&self, worker: &str, limit: usize) -> Vec<ClaimedJob> {
        self.store
            .claim(&self.queues(), worker, limit, LEASE)
            .await
            .unwrap()
    }

    /// Claims up to `limit` jobs whose lease has already run out when this returns.
    pub async fn claim_expired(&self, worker: &str, limit: usize) -> Vec<ClaimedJob> {
        let jobs = self
            .store
            .claim(&self.queues(), worker, limit, Duration::ZERO)
            .await
            .unwrap();
        lapse().await;
        jobs
    }

    /// A worker name no other test uses.
    pub fn worker(&self) -> String {
        let name = format!("worker-{}", uuid::Uuid::now_v7().simple());
        self.made.lock().unwrap().1.push(name.clone());
        name
    }

    /// The stored job (which must exist).
    pub async fn get(&self, id: &str) -> JobRecord {
        self.store
            .get(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{:?}: job {id} is gone", self.kind))
    }
}

/// Waits until a lease that ends now has ended (leases expire strictly after their end).
pub async fn lapse() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// `ids`, sorted (the order `mark_started` and `heartbeat` take).
pub fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

/// Ids of claimed jobs, sorted.
pub fn ids_of(jobs: &[ClaimedJob]) -> Vec<String> {
    sorted(&jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>())
}

/// The claimed job with this id, started at `at`.
pub fn started(jobs: &[ClaimedJob], id: &str, at: i64) -> ClaimedJob {
    let mut job = jobs
        .iter()
        .find(|j| j.id == id)
        .unwrap_or_else(|| panic!("job {id} was not claimed"))
        .clone();
    job.started_at_ms = Some(at);
    job
}

/// Opens the fixture or returns from the test when its backend is unreachable.
macro_rules! open {
    ($fixture:ident($kind:expr)) => {
        match $crate::support::Fixture::$fixture($kind).await {
            Some(fx) => fx,
            None => return,
        }
    };
}
pub(crate) use open;
