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
    /// A start mark for [`Clock::since`] (both clocks are read).
    pub fn now(self) -> (Instant, Duration) {
        (Instant::now(), fipsec_ffi::accel::thread_cpu_time())
    }

    /// Time of this clock elapsed since `start`.
    pub fn since(self, start: (Instant, Duration)) -> Duration {
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

/// Writes `contents` to `path`, creating its directory.
pub fn write_file(path: &str, contents: &str) -> Result<(), String> {
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, contents).map_err(|e| format!("cannot write {path}: {e}"))
}

/// A horizontal grouped bar chart on a logarithmic axis, written as SVG
/// (throughputs here span three decades: 3DES to AES-GCM). One panel per
/// entry of `panels` (e.g. a packet size), one group of bars per row (an
/// algorithm), one bar per series (a driver or baseline), colours by series.
#[derive(Debug, Clone, Default)]
pub struct BarChart {
    /// Title at the top.
    pub title: String,
    /// Axis unit, e.g. `Gb/s`.
    pub unit: String,
    /// Series names, in bar order.
    pub series: Vec<String>,
    /// Panels: a heading and its rows.
    pub panels: Vec<(String, Vec<ChartRow>)>,
}

/// A row of a [`BarChart`]: its label and one value per series (`None`:
/// not measured).
pub type ChartRow = (String, Vec<Option<f64>>);

/// Series colours (colour-blind-safe palette), reused in order.
const COLOURS: [&str; 6] = [
    "#0072b2", "#e69f00", "#009e73", "#7f7f7f", "#cc79a7", "#56b4e9",
];

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl BarChart {
    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> String {
        // Room for the longest row label (11 px sans-serif: about 6.2 px
        // a character), at least 250 px.
        let label_w = self
            .panels
            .iter()
            .flat_map(|(_, rows)| rows.iter())
            .map(|(label, _)| 16.0 + 6.2 * label.chars().count() as f64)
            .fold(250.0, f64::max);
        const PLOT_W: f64 = 600.0;
        const BAR_H: f64 = 9.0;
        const GROUP_GAP: f64 = 7.0;
        const PANEL_HEAD: f64 = 34.0;
        const TOP: f64 = 50.0;
        let values = || {
            self.panels
                .iter()
                .flat_map(|(_, rows)| rows.iter())
                .flat_map(|(_, v)| v.iter().flatten().copied())
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        let lo = values().fold(f64::INFINITY, f64::min);
        let hi = values().fold(0.0, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > 0.0 {
            (
                10f64.powf(lo.log10().floor()),
                10f64
                    .powf(hi.log10().ceil())
                    .max(10f64.powf(lo.log10().floor() + 1.0)),
            )
        } else {
            (1.0, 10.0)
        };
        let x = |v: f64| {
            let t = (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10());
            label_w + t.clamp(0.0, 1.0) * PLOT_W
        };
        let nseries = self.series.len().max(1) as f64;
        let group_h = nseries * BAR_H + GROUP_GAP;
        let mut body = String::new();
        let mut y = TOP + 20.0;
        for (heading, rows) in &self.panels {
            let _ = writeln!(
                body,
                r#"<text x="{label_w}" y="{:.1}" font-weight="bold">{}</text>"#,
                y + 16.0,
                xml_escape(heading)
            );
            let top = y + PANEL_HEAD - 8.0;
            let bottom = top + rows.len() as f64 * group_h;
            // Decade grid lines with their labels.
            let mut d = lo;
            while d <= hi * 1.0001 {
                let gx = x(d);
                let _ = writeln!(
                    body,
                    r##"<line x1="{gx:.1}" y1="{top:.1}" x2="{gx:.1}" y2="{bottom:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#666">{}</text>"##,
                    bottom + 12.0,
                    fmt_axis(d)
                );
                d *= 10.0;
            }
            y += PANEL_HEAD;
            for (label, vals) in rows {
                let _ = writeln!(
                    body,
                    r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
                    label_w - 6.0,
                    y + nseries * BAR_H / 2.0 + 4.0,
                    xml_escape(label)
                );
                for (i, v) in vals.iter().enumerate() {
                    let by = y + i as f64 * BAR_H;
                    let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or("#000");
                    match v {
                        Some(v) if v.is_finite() && *v > 0.0 => {
                            let w = (x(*v) - label_w).max(1.0);
                            let _ = writeln!(
                                body,
                                r#"<rect x="{label_w}" y="{by:.1}" width="{w:.1}" height="{:.1}" fill="{colour}"><title>{}: {v:.2} {}</title></rect><text x="{:.1}" y="{:.1}" font-size="8">{v:.2}</text>"#,
                                BAR_H - 1.0,
                                xml_escape(self.series.get(i).map_or("", String::as_str)),
                                xml_escape(&self.unit),
                                label_w + w + 3.0,
                                by + BAR_H - 2.0
                            );
                        }
                        _ => {}
                    }
                }
                y += group_h;
            }
            y += 24.0;
        }
        // Legend.
        let mut legend = String::new();
        let mut lx = label_w;
        for (i, name) in self.series.iter().enumerate() {
            let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or("#000");
            let _ = write!(
                legend,
                r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
                TOP - 8.0,
                lx + 14.0,
                TOP + 1.0,
                xml_escape(name)
            );
            lx += 24.0 + 7.0 * name.chars().count() as f64;
        }
        let height = y + 10.0;
        let width = (label_w + PLOT_W + 60.0)
            .max(lx + 10.0)
            .max(label_w + 9.0 * self.title.chars().count() as f64);
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{label_w}" y="22" font-size="15" font-weight="bold">{}</text>
<text x="{label_w}" y="38" font-size="11" fill="#444">{} (logarithmic axis)</text>
{legend}
{body}</svg>
"##,
            xml_escape(&self.title),
            xml_escape(&self.unit),
        )
    }
}

fn fmt_axis(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let digits = (-v.log10()).ceil().max(0.0) as usize;
        format!("{v:.digits$}")
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn bar_chart_is_well_formed_and_escaped() {
        let c = BarChart {
            title: "a < b & c".into(),
            unit: "Gb/s".into(),
            series: vec!["x".into(), "y".into()],
            panels: vec![(
                "64 B".into(),
                vec![
                    ("gcm".into(), vec![Some(12.5), None]),
                    ("3des".into(), vec![Some(0.05), Some(0.1)]),
                ],
            )],
        };
        let s = c.svg();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a &lt; b &amp; c") && !s.contains("a < b"));
        // Three bars with values, decades 0.01 .. 100 on the axis.
        assert_eq!(s.matches("<rect x=\"250\"").count(), 3);
        assert!(s.contains(">0.01<") && s.contains(">100<"));
    }

    #[test]
    fn long_row_labels_widen_the_label_column() {
        let label = "aes-cbc-128+hmac-sha1-96 ipsec-mb chain (overhead 85% out, 71% in)";
        let c = BarChart {
            title: "t".into(),
            unit: "Gb/s".into(),
            series: vec!["x".into()],
            panels: vec![("1400 B".into(), vec![(label.into(), vec![Some(1.0)])])],
        };
        let s = c.svg();
        // At about 6.2 px a character (11 px sans-serif) the label needs
        // more than the default 250 px: the bars start after it, and the
        // label is right-aligned just before them.
        let w = 16.0 + 6.2 * label.chars().count() as f64;
        assert!(w > 250.0);
        assert!(s.contains(&format!("<rect x=\"{w}\"")), "{s}");
        assert!(s.contains(&format!("x=\"{:.1}\" y=", w - 6.0)), "{s}");
    }
}
