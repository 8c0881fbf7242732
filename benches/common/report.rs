//! The report: the machine a bench ran on, and its figures as Markdown tables, ready to paste
//! into docs/BENCHMARKS.md.

use std::fmt;
use std::process::Command;

/// What a table shows for a figure that was not measured.
pub const MISSING: &str = "–";

/// "CPU model, N cores", as the kernel and the runtime see them.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// The compiler's version line (the one Cargo ran, where it says so).
pub fn rustc_version() -> String {
    Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map_or_else(|| "rustc: unknown".to_owned(), |v| v.trim().to_owned())
}

/// `value` with `digits` decimals, or [`MISSING`].
pub fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| MISSING.to_owned(), |v| format!("{v:.digits$}"))
}

/// `a / b` as "1.23x", or [`MISSING`] without both (or with nothing to divide by).
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => MISSING.to_owned(),
    }
}

/// A Markdown table whose first column is text (left-aligned) and the others figures
/// (right-aligned).
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of cells.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line =
            |f: &mut fmt::Formatter<'_>, cells: &[String]| writeln!(f, "| {} |", cells.join(" | "));
        line(f, &self.header)?;
        let alignments: Vec<&str> = (0..self.header.len())
            .map(|column| if column == 0 { "---" } else { "--:" })
            .collect();
        writeln!(f, "|{}|", alignments.join("|"))?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_table() {
        let mut table = Table::new(["scenario", "calls/s"]);
        table.row(["add-1", &number(Some(1234.4), 0)]);
        table.row(["add-16".to_owned(), number(None, 0)]);
        assert_eq!(
            table.to_string(),
            "| scenario | calls/s |\n|---|--:|\n| add-1 | 1234 |\n| add-16 | – |\n"
        );
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50x");
        assert_eq!(ratio(Some(3.0), Some(0.0)), MISSING);
        assert_eq!(ratio(None, Some(2.0)), MISSING);
    }
}
