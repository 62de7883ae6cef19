//! The controller's logging (tracing to stderr and/or `controller.log`),
//! reopening the log on SIGHUP ([`reopen`], for logrotate's rename), how
//! errors are written for the operator (with their causes), and reading
//! the tail of a log file for error messages. A line whose write fails
//! (a full log disk) is dropped and counted
//! (`spp_ipc::logging::DropCounting`, [`dropped`]), never a panic.

use spp_ipc::logging::DropCounting;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Bytes read from the end of a file to find its last lines.
const TAIL_BYTES: u64 = 64 << 10;

/// Set once [`init`] succeeded.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The log file [`reopen`] reopens, and where it goes.
#[derive(Debug)]
struct Reopenable {
    path: PathBuf,
    target: Target,
}

/// Where the log file is written from.
#[derive(Debug)]
enum Target {
    /// The file layer's own fd (its number never changes: a reopen
    /// `dup2`s the new file onto it).
    Fd(RawFd),
    /// stdout and stderr (a detached controller's stderr is the log).
    Stdio,
}

/// Set by [`init`] when there is a log file to reopen.
static REOPEN: OnceLock<Reopenable> = OnceLock::new();
/// The file layer's fd (-1: none); kept open for the process's life.
static FILE_FD: AtomicI32 = AtomicI32::new(-1);

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
    #[error("opening log {}", path.display())]
    File {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The log file could not be reopened.
    #[error("reopening log {}", path.display())]
    Reopen {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A subscriber was already installed.
    #[error("installing the logger{}", file.as_ref().map(|f| format!(" (log file {})", f.display())).unwrap_or_default())]
    Install {
        /// The log file it would have written to, if any.
        file: Option<PathBuf>,
        /// Why it could not be installed.
        source: tracing_subscriber::util::TryInitError,
    },
}

/// Where the controller's log goes.
#[derive(Clone, Copy, Debug)]
pub enum Output<'a> {
    /// stderr, and appended to this file.
    AlsoFile(&'a Path),
    /// stderr, which is this file already (a detached controller).
    StderrIsFile(&'a Path),
}

/// Logs at `filter` to stderr and, as `output` says, to a log file that
/// [`reopen`] reopens.
pub fn init(filter: &str, output: Output<'_>) -> Result<(), LogError> {
    let file = match output {
        Output::AlsoFile(path) => Some(path),
        Output::StderrIsFile(_) => None,
    };
    let env_filter = EnvFilter::try_new(filter).map_err(|e| LogError::Filter {
        filter: filter.to_string(),
        reason: e.to_string(),
    })?;
    let file_layer = match file {
        Some(path) => {
            let f = crate::privileges::open_log(path, None).map_err(|source| LogError::File {
                path: path.to_path_buf(),
                source,
            })?;
            // Kept open for the process's life ([`reopen`] `dup2`s onto it).
            let fd = f.into_raw_fd();
            FILE_FD.store(fd, Ordering::Relaxed);
            Some(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(DropCounting::new(fd))
                    .log_internal_errors(false)
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
                .with_writer(DropCounting::stderr())
                .log_internal_errors(false),
        )
        .with(file_layer)
        .try_init()
        .map_err(|source| LogError::Install {
            file: file.map(Path::to_path_buf),
            source,
        })?;
    INITIALIZED.store(true, Ordering::Relaxed);
    let reopenable = match output {
        Output::AlsoFile(path) => Reopenable {
            path: path.to_path_buf(),
            target: Target::Fd(FILE_FD.load(Ordering::Relaxed)),
        },
        Output::StderrIsFile(path) => Reopenable {
            path: path.to_path_buf(),
            target: Target::Stdio,
        },
    };
    let _ = REOPEN.set(reopenable);
    Ok(())
}

/// Log lines the controller dropped because writing them failed, and
/// child log files it could not open ([`count_unopened_log`]).
pub fn dropped() -> u64 {
    spp_ipc::logging::dropped() + UNOPENED.load(Ordering::Relaxed)
}

/// Child log files that could not be opened (the child's output went to
/// /dev/null instead).
static UNOPENED: AtomicU64 = AtomicU64::new(0);

/// Counts a child log file that could not be opened.
pub fn count_unopened_log() {
    UNOPENED.fetch_add(1, Ordering::Relaxed);
}

/// Whether the file system holding `dir` has no space left for ordinary
/// writes (`statvfs`: no available block). False when it cannot be asked.
pub fn dir_full(dir: &Path) -> bool {
    nix::sys::statvfs::statvfs(dir).is_ok_and(|s| s.blocks_available() == 0)
}

/// "log dir full: DIR" when [`dir_full`] says so.
pub fn dir_full_message(dir: &Path) -> Option<String> {
    dir_full(dir).then(|| format!("log dir full: {}", dir.display()))
}

/// The log file [`reopen`] reopens (`None` before [`init`]).
pub fn log_path() -> Option<&'static Path> {
    REOPEN.get().map(|r| r.path.as_path())
}

/// Reopens the log file by its path (after logrotate renamed it): lines
/// from now on go to the file now at that path. Returns the path, or
/// `None` before [`init`].
pub fn reopen() -> Result<Option<PathBuf>, LogError> {
    let Some(r) = REOPEN.get() else {
        return Ok(None);
    };
    let fail = |source| LogError::Reopen {
        path: r.path.clone(),
        source,
    };
    match r.target {
        Target::Stdio => spp_ipc::logfile::reopen_stdio(&r.path).map_err(fail)?,
        Target::Fd(fd) => {
            let file = crate::privileges::open_log(&r.path, None).map_err(fail)?;
            // SAFETY: dup2 onto the file layer's fd, which stays open for
            // the process's life; it atomically replaces what the fd
            // refers to and leaves `file` (closed on return) alone.
            if unsafe { libc::dup2(file.as_raw_fd(), fd) } < 0 {
                return Err(fail(std::io::Error::last_os_error()));
            }
        }
    }
    Ok(Some(r.path.clone()))
}

pub use spp_ipc::error_chain;

/// The last lines of a child's log, quoted under an error message.
#[derive(Debug, Default)]
pub struct LogTail(pub Vec<String>);

impl std::fmt::Display for LogTail {
    /// Each line on its own, indented: `\n    | line`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0
            .iter()
            .try_for_each(|line| write!(f, "\n    | {line}"))
    }
}

/// The last `n` lines of `path` written after byte `from`, reading at most
/// [`TAIL_BYTES`] from its end (empty if the file cannot be read).
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
    // Bounded: the file may keep growing while we read.
    if file.take(TAIL_BYTES).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > from {
        // We started inside a line: drop its end.
        let cut = text.find('\n').map_or(text.len(), |at| at + 1);
        text.drain(..cut);
    }
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

    #[test]
    fn tail_reads_only_the_end_of_a_big_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let line = "x".repeat(99);
        let mut text: String = (0..2 * TAIL_BYTES / 100)
            .map(|_| format!("{line}\n"))
            .collect();
        text.push_str("last\n");
        std::fs::write(&path, &text).unwrap();
        let all = tail_lines(&path, 0, usize::MAX);
        // What fits in TAIL_BYTES: whole 100-byte lines, and "last".
        assert!(all.len() as u64 <= TAIL_BYTES / 100 + 1, "{}", all.len());
        assert!(
            all.iter().rev().skip(1).all(|l| *l == line),
            "no partial line"
        );
        assert_eq!(all.last().map(String::as_str), Some("last"));
    }

    #[test]
    fn a_chain_names_every_cause_once() {
        #[derive(Debug, thiserror::Error)]
        enum E {
            #[error("opening log /x")]
            Plain { source: std::io::Error },
            #[error("opening log /x: {source}")]
            Repeats { source: std::io::Error },
        }
        let io = || std::io::Error::other("Permission denied");
        assert_eq!(
            error_chain(&E::Plain { source: io() }),
            "opening log /x: Permission denied"
        );
        assert_eq!(
            error_chain(&E::Repeats { source: io() }),
            "opening log /x: Permission denied"
        );
        assert_eq!(
            LogTail(vec!["a".into(), "b".into()]).to_string(),
            "\n    | a\n    | b"
        );
    }
}
