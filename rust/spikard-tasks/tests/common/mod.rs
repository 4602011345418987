//! Helpers shared by the integration tests: the backends to run on.

#![allow(dead_code)] // each test crate uses its own part

use std::net::SocketAddr;
use std::time::Duration;

/// Every backend URL the suite runs against: the embedded ones always, each server
/// backend compiled in when its server answers (with `SPIKARD_TASKS_REQUIRE_BACKENDS=1`
/// an unreachable server fails the suite instead of being skipped).
#[allow(clippy::vec_init_then_push)]
pub fn urls(dir: &tempfile::TempDir) -> Vec<String> {
    let mut urls = vec![
        format!("sqlite:///{}", dir.path().join("jobs.db").display()),
        "memory://".to_owned(),
    ];
    #[allow(unused_mut)]
    let mut servers: Vec<(&str, &str, &str)> = Vec::new();
    #[cfg(feature = "postgres")]
    servers.push((
        "postgres",
        "SPIKARD_TASKS_TEST_POSTGRES",
        "postgres://postgres@127.0.0.1:5432/test",
    ));
    #[cfg(feature = "mysql")]
    servers.push((
        "mysql",
        "SPIKARD_TASKS_TEST_MYSQL",
        "mysql://root@127.0.0.1:3306/test",
    ));
    #[cfg(feature = "redis")]
    servers.push((
        "redis",
        "SPIKARD_TASKS_TEST_REDIS",
        "redis://127.0.0.1:6379/0",
    ));
    for (name, var, default) in servers {
        let url = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        if reachable(&url) {
            urls.push(url);
        } else if std::env::var("SPIKARD_TASKS_REQUIRE_BACKENDS").as_deref() == Ok("1") {
            panic!("{name} server at {url} is unreachable and SPIKARD_TASKS_REQUIRE_BACKENDS=1");
        } else {
            eprintln!("skipping {name}: no server at {url}");
        }
    }
    urls
}

pub fn reachable(url: &str) -> bool {
    std::net::TcpStream::connect_timeout(&server_addr(url), Duration::from_secs(1)).is_ok()
}

/// The address of the server a (server backend's) URL names.
pub fn server_addr(url: &str) -> SocketAddr {
    let parsed = url::Url::parse(url).expect("test URL");
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = parsed
        .port_or_known_default()
        .unwrap_or(match parsed.scheme() {
            "postgres" | "postgresql" => 5432,
            "mysql" | "mariadb" => 3306,
            _ => 6379,
        });
    format!("{host}:{port}").parse().expect("socket address")
}
