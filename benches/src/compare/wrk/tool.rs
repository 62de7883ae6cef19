//! The tools of the HTTP suite: running one `wrk` load (`--latency`) and
//! reading its summary, and finding nginx's workers (the children of its
//! master). CPU time comes from [`super::super::cpu`].

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::super::error::CompareError;
use super::super::process;

/// Threads of every wrk run (the machine's other CPU runs the servers).
pub const WRK_THREADS: usize = 1;

/// What one wrk run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrkRun {
    /// Requests answered.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Socket errors (connect, read, write, timeout) and non-2xx answers.
    pub errors: u64,
}

/// Runs `wrk` against `url` with `connections` for `duration`.
pub fn run_wrk(
    wrk: &Path,
    url: &str,
    connections: usize,
    duration: Duration,
) -> Result<WrkRun, CompareError> {
    let secs = duration.as_secs().max(1);
    let output = process::detach(
        Command::new(wrk)
            .arg("--latency")
            .arg(format!("-t{}", WRK_THREADS.min(connections)))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{secs}s"))
            .arg(url)
            .stdin(Stdio::null()),
    )
    .output()
    .map_err(|source| CompareError::Spawn {
        program: wrk.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(CompareError::NotStarted {
            system: "wrk",
            why: format!(
                "exit {}: {}{}",
                output.status,
                text.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    parse_wrk(&text).ok_or_else(|| CompareError::NotStarted {
        system: "wrk",
        why: format!("unreadable output: {text}"),
    })
}

/// A wrk duration (`812.00us`, `1.20ms`, `2.00s`, `1.00m`) in µs.
fn duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(n * scale)
}

/// Reads wrk's `--latency` summary.
pub fn parse_wrk(text: &str) -> Option<WrkRun> {
    let mut requests = None;
    let mut rps = None;
    let mut p99 = None;
    let mut errors = 0u64;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["99%", v] => p99 = duration_us(v),
            [n, "requests", "in", ..] => requests = n.parse().ok(),
            ["Requests/sec:", v] => rps = v.parse().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    Some(WrkRun {
        requests: requests?,
        rps: rps?,
        p99_us: p99?,
        errors,
    })
}

/// The children of `parent` (nginx's workers), by scanning `/proc`.
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 3s test @ http://127.0.0.1:8080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   1.02ms  200.00us   5.00ms   90.00%
    Req/Sec    62.10k     1.20k   64.00k    70.00%
  Latency Distribution
     50%  0.98ms
     75%    1.10ms
     90%    1.30ms
     99%  812.00us
  186300 requests in 3.00s, 20.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  62100.50
Transfer/sec:      6.67MB
";

    #[test]
    fn wrk_summary_is_read() {
        let run = parse_wrk(SAMPLE).unwrap();
        assert_eq!(run.requests, 186_300);
        assert!((run.rps - 62_100.5).abs() < 1e-6);
        assert!((run.p99_us - 812.0).abs() < 1e-6);
        assert_eq!(run.errors, 7);
        assert_eq!(duration_us("1.50ms"), Some(1500.0));
        assert_eq!(duration_us("2.00s"), Some(2e6));
        assert!(parse_wrk("nonsense").is_none());
    }
}
