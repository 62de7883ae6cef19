//! The controller's logging (tracing to stderr and/or `controller.log`) and
//! reading the tail of a log file for error messages.

use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Bytes read from the end of a file to find its last lines.
const TAIL_BYTES: u64 = 64 << 10;

/// Set once [`init`] succeeded.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Whether [`init`] succeeded (errors are then logged, not just returned).
pub fn initialized() -> bool {
    INITIALIZED.load(Ordering::Relaxed)
}

/// Logging set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The filter does not parse (config validation normally catches it).
    #[error("log filter {filter:?}: {reason}")]
    Filter {
        /// The filter.
        filter: String,
        /// The parser's message.
        reason: String,
    },
    /// The log file cannot be opened.
    #[error("opening log {}: {source}", path.display())]
    File {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A subscriber was already installed.
    #[error("installing the logger: {0}")]
    Install(String),
}

/// Logs at `filter` to stderr and, when given, appends to `file` too.
pub fn init(filter: &str, file: Option<&Path>) -> Result<(), LogError> {
    let env_filter = EnvFilter::try_new(filter).map_err(|e| LogError::Filter {
        filter: filter.to_string(),
        reason: e.to_string(),
    })?;
    let file_layer = match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LogError::File {
                    path: path.to_path_buf(),
                    source,
                })?;
            Some(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(Mutex::new(f))
                    .boxed(),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(env_filter)
        .with(
            fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .with(file_layer)
        .try_init()
        .map_err(|e| LogError::Install(e.to_string()))?;
    INITIALIZED.store(true, Ordering::Relaxed);
    Ok(())
}

/// The last `n` lines of `path` written after byte `from` (empty if the
/// file cannot be read).
pub fn tail_lines(path: &Path, from: u64, n: usize) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(TAIL_BYTES));
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_the_last_lines_after_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "old\none\n\ntwo\nthree\n").unwrap();
        assert_eq!(tail_lines(&path, 0, 2), vec!["two", "three"]);
        assert_eq!(tail_lines(&path, 4, 10), vec!["one", "two", "three"]);
        assert!(tail_lines(&dir.path().join("missing"), 0, 3).is_empty());
    }
}
