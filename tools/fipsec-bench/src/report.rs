//! Result tables shared by the benchmarks: aligned text for the terminal,
//! CSV for files, and the measuring loop with its clock.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// A cell: text, or a number printed with a fixed number of decimals.
#[derive(Debug, Clone)]
pub enum Cell {
    /// Free text (left-aligned).
    Text(String),
    /// A number (right-aligned), with its decimals.
    Num(f64, usize),
    /// Not measured / not applicable.
    Empty,
}

impl Cell {
    /// Text cell.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// A number with two decimals, or empty.
    pub fn num(v: Option<f64>) -> Cell {
        v.map_or(Cell::Empty, |x| Cell::Num(x, 2))
    }

    /// A ratio printed as `0.93x`, or empty.
    pub fn ratio(v: Option<f64>) -> Cell {
        v.map_or(Cell::Empty, |x| Cell::Text(format!("{x:.2}x")))
    }

    fn render(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num(v, d) => format!("{v:.d$}", d = *d),
            Cell::Empty => "-".into(),
        }
    }

    fn csv(&self) -> String {
        match self {
            Cell::Text(s) if s.contains([',', '"']) => format!("\"{}\"", s.replace('"', "\"\"")),
            Cell::Text(s) => s.clone(),
            Cell::Num(v, _) => format!("{v}"),
            Cell::Empty => String::new(),
        }
    }
}

/// A table with a header row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column headers.
    pub header: Vec<String>,
    /// Rows (each as long as the header).
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these headers.
    pub fn new(header: Vec<String>) -> Table {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// The table as aligned text.
    pub fn render(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(Cell::render).collect())
            .collect();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &cells {
            for (i, c) in r.iter().enumerate() {
                if let Some(w) = width.get_mut(i) {
                    *w = (*w).max(c.chars().count());
                }
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, r: &[String], numeric: &dyn Fn(usize) -> bool| {
            for (i, c) in r.iter().enumerate() {
                let w = width.get(i).copied().unwrap_or(0);
                if i > 0 {
                    out.push_str("  ");
                }
                if numeric(i) {
                    let _ = write!(out, "{c:>w$}");
                } else {
                    let _ = write!(out, "{c:<w$}");
                }
            }
            let kept = out.trim_end_matches(' ').len();
            out.truncate(kept);
            out.push('\n');
        };
        line(&mut out, &self.header, &|_| false);
        let total: usize = width.iter().sum::<usize>() + 2 * width.len().saturating_sub(1);
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for (r, raw) in cells.iter().zip(&self.rows) {
            let numeric = |i: usize| !matches!(raw.get(i), Some(Cell::Text(_)));
            line(&mut out, r, &numeric);
        }
        out
    }

    /// The table as CSV.
    pub fn csv(&self) -> String {
        let mut out = self.header.join(",");
        out.push('\n');
        for r in &self.rows {
            out.push_str(&r.iter().map(Cell::csv).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }
}

/// What the benchmarks divide by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// CPU time of the measuring thread (as `openssl speed` divides by user
    /// CPU time): robust against other load on a shared machine.
    ThreadCpu,
    /// Wall-clock time (`openssl speed -elapsed`).
    Wall,
}

impl Clock {
    fn now(self) -> (Instant, Duration) {
        (Instant::now(), fipsec_ffi::accel::thread_cpu_time())
    }

    fn since(self, start: (Instant, Duration)) -> Duration {
        match self {
            Clock::Wall => start.0.elapsed(),
            Clock::ThreadCpu => fipsec_ffi::accel::thread_cpu_time().saturating_sub(start.1),
        }
    }

    /// Name for the report header.
    pub fn describe(self) -> &'static str {
        match self {
            Clock::ThreadCpu => "thread CPU time (openssl: user CPU time)",
            Clock::Wall => "wall-clock time (openssl: -elapsed)",
        }
    }
}

/// Rounds [`ops_per_sec_interleaved`] measures each loop in.
pub const ROUNDS: usize = 15;

/// Measures `count` loops against each other on a shared machine:
/// `step(i, n)` performs `n` operations of loop `i`. Each loop is first
/// calibrated so that one call takes about `per_loop / ROUNDS` of `clock`
/// time; then the loops run one call each, in turn, for [`ROUNDS`] rounds,
/// so that a burst of load from other processes hits all of them alike.
/// Returns, per loop, the median operations per second over its rounds.
pub fn ops_per_sec_interleaved(
    clock: Clock,
    per_loop: Duration,
    count: usize,
    step: &mut dyn FnMut(usize, usize),
) -> Vec<f64> {
    let target = (per_loop / ROUNDS as u32).max(Duration::from_millis(2));
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        // Calibrate: grow n until one call takes the round's share (this
        // also warms caches and the library's lanes).
        let mut n = 1usize;
        loop {
            let t = clock.now();
            step(i, n);
            let d = clock.since(t);
            if d >= target || n >= 1 << 24 {
                break;
            }
            n = if d.is_zero() {
                n * 8
            } else {
                (n * 2).max((n as f64 * 1.1 * target.as_secs_f64() / d.as_secs_f64()) as usize)
            };
        }
        sizes.push(n);
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); count];
    for _ in 0..ROUNDS {
        for (i, (&n, s)) in sizes.iter().zip(samples.iter_mut()).enumerate() {
            let t = clock.now();
            step(i, n);
            let secs = clock.since(t).as_secs_f64();
            if secs > 0.0 {
                s.push(n as f64 / secs);
            }
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s.get(s.len() / 2).copied().unwrap_or(0.0)
        })
        .collect()
}
