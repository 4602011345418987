//! `maintain` on the server backends: one worker at a time. Another worker holding
//! the maintenance lock is played by a connection of the test's own that takes the
//! store's lock the way the store takes it (these names are the store's).

#![cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]

use std::time::{Duration, Instant};

use spikard_tasks::store::Maintenance;
use spikard_tasks::time::now_ms;
use spikard_tasks::JobStatus;

use crate::support::{lapse, open, Fixture, Kind};

/// `pg_try_advisory_lock` key of the PostgreSQL store ("spkt").
#[cfg(feature = "postgres")]
const PG_LOCK: i64 = 0x7370_6b74;
/// `GET_LOCK` name of the MySQL store (server-wide).
#[cfg(feature = "mysql")]
const MYSQL_LOCK: &str = "spikard_tasks.maintenance";
/// `SET NX PX` key of the Redis store.
#[cfg(feature = "redis")]
const REDIS_LOCK: &str = "spikard:maintenance";

/// A held maintenance lock.
enum Held {
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgConnection),
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlConnection),
    #[cfg(feature = "redis")]
    Redis(redis::aio::MultiplexedConnection, String),
}

/// Takes the store's maintenance lock as another worker would (waiting while some
/// other process holds it; MySQL's lock is server-wide).
async fn take(fx: &Fixture) -> Held {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(held) = try_take(fx).await {
            return held;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}: the lock stays taken",
            fx.kind
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn try_take(fx: &Fixture) -> Option<Held> {
    match fx.kind {
        #[cfg(feature = "postgres")]
        Kind::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&fx.url).await.unwrap();
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(PG_LOCK)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            got.then_some(Held::Postgres(conn))
        }
        #[cfg(feature = "mysql")]
        Kind::MySql => {
            use sqlx::Connection;
            let mut conn = sqlx::MySqlConnection::connect(&fx.url).await.unwrap();
            let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
                .bind(MYSQL_LOCK)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            (got == Some(1)).then_some(Held::MySql(conn))
        }
        #[cfg(feature = "redis")]
        Kind::Redis => {
            let client = redis::Client::open(fx.url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let token = format!("contract-{}", uuid::Uuid::now_v7().simple());
            let set: Option<String> = redis::cmd("SET")
                .arg(REDIS_LOCK)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(30_000)
                .query_async(&mut conn)
                .await
                .unwrap();
            set.map(|_| Held::Redis(conn, token))
        }
        other => panic!("{other:?} takes no maintenance lock"),
    }
}

impl Held {
    async fn give_back(self) {
        match self {
            #[cfg(feature = "postgres")]
            Held::Postgres(mut conn) => {
                let freed: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                    .bind(PG_LOCK)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                assert!(freed);
            }
            #[cfg(feature = "mysql")]
            Held::MySql(mut conn) => {
                let freed: Option<i64> = sqlx::query_scalar("SELECT RELEASE_LOCK(?)")
                    .bind(MYSQL_LOCK)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(freed, Some(1));
            }
            #[cfg(feature = "redis")]
            Held::Redis(mut conn, token) => {
                let freed: i64 = redis::Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                     return redis.call('DEL', KEYS[1]) end return 0",
                )
                .key(REDIS_LOCK)
                .arg(&token)
                .invoke_async(&mut conn)
                .await
                .unwrap();
                assert_eq!(freed, 1);
            }
        }
    }
}

/// While another worker holds the purge lock, `maintain` still rescues (a stalled
/// worker holding the lock must not hold up takeovers) but purges nothing
/// (`purged: None`); once the lock is free, it purges again.
pub async fn maintain_returns_none_while_another_worker_holds_the_lock(kind: Kind) {
    let fx = open!(private(kind));
    let id = fx.add(1).await.remove(0);
    let w = fx.worker();
    let claimed = fx.claim(&w, 1).await;
    let marks = [(id.clone(), now_ms())];
    assert_eq!(fx.store.mark_started(&w, &marks).await.unwrap(), 1);
    fx.store
        .heartbeat(&w, &[claimed[0].id.clone()], Duration::ZERO)
        .await
        .unwrap();
    lapse().await;
    let done = fx.add(1).await.remove(0);
    assert!(fx.store.cancel(&done).await.unwrap());

    let held = take(&fx).await;
    let round = fx.store.maintain(Some(now_ms() + 1)).await.unwrap();
    assert_eq!(
        round,
        Maintenance {
            rescued: 1,
            purged: None
        },
        "{kind:?}"
    );
    assert_eq!(fx.get(&id).await.status, JobStatus::Retrying, "{kind:?}");
    let other = fx.second_handle().await;
    assert_eq!(
        other.maintain(Some(now_ms() + 1)).await.unwrap().purged,
        None,
        "{kind:?}"
    );
    assert!(
        fx.store.get(&done).await.unwrap().is_some(),
        "{kind:?}: not purged"
    );
    held.give_back().await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fx.store.maintain(Some(now_ms() + 1)).await.unwrap().purged {
            Some(purged) => {
                assert!(purged >= 1, "{kind:?}");
                break;
            }
            // Only MySQL's server-wide lock can be held by someone else meanwhile.
            None if kind == Kind::MySql && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None => panic!("{kind:?}: no purge after the lock was freed"),
        }
    }
    assert!(fx.store.get(&done).await.unwrap().is_none(), "{kind:?}");
}
