//! The summary table every benchmark prints last: one row per figure, with its same-run
//! reference, the ratio, the target and a verdict. Included with `#[path]` by each bench.

/// One line of the summary table.
#[derive(Debug)]
pub struct Row {
    pub what: String,
    pub value: String,
    pub reference: String,
    pub ratio: String,
    pub target: String,
    pub verdict: String,
}

pub fn verdict(pass: bool) -> String {
    if pass { "PASS" } else { "BELOW" }.to_string()
}

pub fn print_table(rows: &[Row], benchmarking: bool) {
    let header = Row {
        what: "measurement".into(),
        value: "value".into(),
        reference: "reference".into(),
        ratio: "ratio".into(),
        target: "target".into(),
        verdict: "verdict".into(),
    };
    let width = |field: fn(&Row) -> &String| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|row| field(row).chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [
        width(|row| &row.what),
        width(|row| &row.value),
        width(|row| &row.reference),
        width(|row| &row.ratio),
        width(|row| &row.target),
    ];
    println!();
    println!(
        "summary{}",
        if benchmarking {
            ""
        } else {
            " (smoke pass: unoptimised, tiny data; verdicts mean nothing)"
        }
    );
    for row in std::iter::once(&header).chain(rows) {
        println!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:<w4$}  {}",
            row.what,
            row.value,
            row.reference,
            row.ratio,
            row.target,
            row.verdict,
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        );
    }
}
