//! Printing that survives a closed pipe.
//!
//! `std`'s `println!` panics when stdout is a pipe whose reader is gone
//! (`spp start -c F | head -1`: "failed printing to stdout: Broken pipe",
//! after the service was started). The crate's `println!`, `print!` and
//! `eprintln!` (defined in `lib.rs`, shadowing `std`'s for every module of
//! this crate) go through [`out`] and [`err`] instead: when the reader of
//! stdout is gone the process exits quietly with [`EXIT_BROKEN_PIPE`], as a
//! command killed by SIGPIPE would (a `spp stat --watch | head` must not
//! loop on); any other write error, and any error writing stderr, drops
//! the text.

use crate::cli::EXIT_BROKEN_PIPE;
use std::fmt;
use std::io::{self, Write};

/// Writes `args` (and a newline if `newline`) to stdout; exits quietly
/// when the pipe's reader is gone.
pub fn out(args: fmt::Arguments<'_>, newline: bool) {
    let mut stdout = io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| if newline { stdout.flush() } else { Ok(()) });
    if let Err(e) = written {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(EXIT_BROKEN_PIPE));
        }
    }
}

/// Writes `args` and a newline to stderr; a failed write is dropped.
pub fn err(args: fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr
        .write_fmt(args)
        .and_then(|()| stderr.write_all(b"\n"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_macros_format_like_std() {
        // Only what reaches the terminal differs; formatting must not.
        println!();
        println!("{} {x}", 1, x = 2);
        print!("{}", "");
        eprintln!("{:>3}", 7);
    }
}
