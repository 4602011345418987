//! Backend URLs: parsing, validation and redaction.
//!
//! SQLite follows the SQLAlchemy convention: `sqlite:///relative.db`,
//! `sqlite:////absolute/path.db`, `sqlite::memory:`. `memory://` is the in-process
//! parity backend (an in-memory SQLite database: same semantics as the SQL backends).

use std::path::PathBuf;

use crate::error::{CoreError, CoreResult};
pub use crate::redact::redact;

/// A parsed, validated backend location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendUrl {
    /// A SQLite database file, with extra query options (e.g. `synchronous=full`).
    SqliteFile {
        /// Path of the database file.
        path: PathBuf,
        /// `synchronous` pragma (`normal` by default, `full` for power-loss durability).
        synchronous_full: bool,
    },
    /// An in-memory SQLite database that lives as long as the process (`sqlite::memory:`,
    /// `memory://`).
    Memory,
    /// PostgreSQL (`postgres://` or `postgresql://`).
    Postgres(String),
    /// MySQL 8 or MariaDB (`mysql://` or `mariadb://`).
    MySql(String),
    /// Redis (`redis://` or `rediss://`).
    Redis(String),
    /// The pure-Python in-process fast path; the engine never opens it.
    InProcess,
}

impl BackendUrl {
    /// Parses and validates `url`; errors name the bad part and never echo a password.
    pub fn parse(url: &str) -> CoreResult<Self> {
        let url = url.trim();
        if url == "sqlite::memory:" || url == "sqlite://" || url == "sqlite:///:memory:" {
            return Ok(Self::Memory);
        }
        if let Some(rest) = url.strip_prefix("sqlite:///") {
            return parse_sqlite_path(rest);
        }
        if url.starts_with("sqlite:") {
            return Err(CoreError::config(format!(
                "malformed SQLite URL {:?}: use sqlite:///relative.db, sqlite:////absolute/path.db or sqlite::memory:",
                redact(url)
            )));
        }
        let parsed = url::Url::parse(url).map_err(|e| {
            CoreError::config(format!("malformed backend URL {:?}: {e}", redact(url)))
        })?;
        match parsed.scheme() {
            "memory" => Ok(Self::Memory),
            "inprocess" => Ok(Self::InProcess),
            "postgres" | "postgresql" => {
                require_host(&parsed, url)?;
                require_feature("postgres", cfg!(feature = "postgres"), url)?;
                Ok(Self::Postgres(url.to_owned()))
            }
            "mysql" | "mariadb" => {
                require_host(&parsed, url)?;
                require_feature("mysql", cfg!(feature = "mysql"), url)?;
                Ok(Self::MySql(url.replacen("mariadb://", "mysql://", 1)))
            }
            "redis" | "rediss" => {
                require_host(&parsed, url)?;
                require_feature("redis", cfg!(feature = "redis"), url)?;
                Ok(Self::Redis(url.to_owned()))
            }
            other => Err(CoreError::config(format!(
                "unsupported backend scheme {other:?} in {:?}: expected sqlite, memory, inprocess, postgres, mysql or redis",
                redact(url)
            ))),
        }
    }

    /// A short name of the backend kind (`sqlite`, `memory`, `postgres`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SqliteFile { .. } => "sqlite",
            Self::Memory => "memory",
            Self::Postgres(_) => "postgres",
            Self::MySql(_) => "mysql",
            Self::Redis(_) => "redis",
            Self::InProcess => "inprocess",
        }
    }
}

fn parse_sqlite_path(rest: &str) -> CoreResult<BackendUrl> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(CoreError::config(
            "malformed SQLite URL: no database path after sqlite:///",
        ));
    }
    let mut synchronous_full = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", v)) if v.eq_ignore_ascii_case("full") => synchronous_full = true,
            Some(("synchronous", v)) if v.eq_ignore_ascii_case("normal") => {
                synchronous_full = false
            }
            _ => {
                // Only the key: a value may be a password put in the wrong URL.
                let key = pair.split('=').next().unwrap_or("");
                return Err(CoreError::config(format!(
                    "unsupported SQLite URL option {key:?}: only synchronous=normal|full is known"
                )));
            }
        }
    }
    Ok(BackendUrl::SqliteFile {
        path: PathBuf::from(path),
        synchronous_full,
    })
}

fn require_host(parsed: &url::Url, url: &str) -> CoreResult<()> {
    match parsed.host_str() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err(CoreError::config(format!(
            "malformed backend URL {:?}: no host",
            redact(url)
        ))),
    }
}

fn require_feature(feature: &str, compiled: bool, url: &str) -> CoreResult<()> {
    if compiled {
        Ok(())
    } else {
        Err(CoreError::config(format!(
            "backend URL {:?} needs the `{feature}` feature, which this build of spikard-tasks was compiled without",
            redact(url)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_forms() {
        assert_eq!(
            BackendUrl::parse("sqlite:///rel.db").unwrap(),
            BackendUrl::SqliteFile {
                path: "rel.db".into(),
                synchronous_full: false
            }
        );
        assert_eq!(
            BackendUrl::parse("sqlite:////abs/x.db?synchronous=full").unwrap(),
            BackendUrl::SqliteFile {
                path: "/abs/x.db".into(),
                synchronous_full: true
            }
        );
        assert_eq!(
            BackendUrl::parse("sqlite::memory:").unwrap(),
            BackendUrl::Memory
        );
        assert_eq!(BackendUrl::parse("memory://").unwrap(), BackendUrl::Memory);
        assert!(BackendUrl::parse("sqlite:/x.db").is_err());
        assert!(BackendUrl::parse("sqlite:///x.db?bogus=1").is_err());
        assert!(BackendUrl::parse("nonsense").is_err());
    }

    #[test]
    fn errors_never_echo_passwords() {
        let err = BackendUrl::parse("ftp://bob:hunter2@host/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("bob:***"), "{err}");
        let err = BackendUrl::parse("postgres://bob:hunter2@/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
