//! The engine's log lines: to stderr, filtered by `SPIKARD_TASKS_LOG`, and never with
//! the password of a URL this process opened (whichever crate wrote the line).

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber (once per process; later calls do nothing).
pub fn init() {
    let filter =
        EnvFilter::try_from_env("SPIKARD_TASKS_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr)
        // No colour codes in log files and pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Makes one [`Line`] per log event.
struct ScrubbedStderr;

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::with_capacity(256))
    }
}

/// One event's text, written to stderr in one piece, passwords scrubbed, when dropped.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let scrubbed = spikard_tasks::redact::scrub_known(&String::from_utf8_lossy(&self.0));
        let bytes = scrubbed.as_deref().map_or(self.0.as_slice(), str::as_bytes);
        let _ = std::io::stderr().lock().write_all(bytes);
    }
}
