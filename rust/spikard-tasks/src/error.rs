//! The engine's one error type.

/// Every error the engine returns.
///
/// Messages never contain credentials: URLs are redacted before they are formatted.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Invalid configuration (malformed URL, backend not compiled in, bad option).
    #[error("{0}")]
    Config(String),
    /// A task name that no handler is registered for.
    #[error("unknown task: {0:?}")]
    UnknownTask(String),
    /// Arguments, results or stored payloads that are not valid JSON of the expected shape.
    #[error("{0}")]
    Serialization(String),
    /// The storage backend failed (unreachable, query error, corrupt row).
    #[error("backend error: {0}")]
    Backend(String),
    /// The worker could not run.
    #[error("worker error: {0}")]
    Worker(String),
}

/// Result alias for engine calls.
pub type CoreResult<T> = Result<T, CoreError>;

impl CoreError {
    /// Builds a [`CoreError::Config`] from anything displayable.
    pub fn config(msg: impl Into<String>) -> Self {
        Self::Config(msg.into())
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
impl From<sqlx::Error> for CoreError {
    fn from(err: sqlx::Error) -> Self {
        // sqlx errors carry no connection string; a driver may still quote a password
        // (a reconnect's reason), so the passwords of opened URLs are scrubbed.
        match err {
            // sqlx retries refused connections until its acquire timeout, then reports
            // only this: say what it usually means.
            sqlx::Error::PoolTimedOut => Self::Backend(
                "no database connection became available in time: the server is down, \
                 restarting or unreachable (or every connection is busy)"
                    .into(),
            ),
            err => Self::Backend(scrubbed(err.to_string())),
        }
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for CoreError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Backend(err.to_string())
    }
}

/// `text` without the password of any URL this process opened.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
fn scrubbed(text: String) -> String {
    crate::redact::scrub_known(&text).unwrap_or(text)
}

impl From<serde_json::Error> for CoreError {
    fn from(err: serde_json::Error) -> Self {
        Self::Serialization(err.to_string())
    }
}
