//! What a client command prints: a table for people, Orion's JSON for scripts (`--json`), or
//! just the one value a script wants (`--quiet`: an id, or the secret of a new key or token).

use std::io::Write;

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use super::CliError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Quiet,
}

/// A borderless table with upper-case headers, like `kubectl get`.
pub fn table<const N: usize>(headers: [&str; N]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.map(str::to_uppercase));
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
        column.set_cell_alignment(CellAlignment::Left);
    }
    t
}

/// Field / value rows for one object.
pub fn details(rows: &[(&str, String)]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    for (field, value) in rows {
        t.add_row([format!("{field}:"), value.clone()]);
    }
    for column in t.column_iter_mut() {
        column.set_padding((0, 1));
    }
    t
}

fn write(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|_| out.flush())
        .map_err(|e| CliError::Usage(format!("cannot write the output: {e}")))
}

/// Prints an answer in the chosen format: `table` for people, `json` as Orion sent it,
/// `quiet` as the one essential value.
pub fn emit(
    format: Format,
    json: &serde_json::Value,
    quiet: impl FnOnce() -> String,
    table: impl FnOnce() -> String,
) -> Result<(), CliError> {
    match format {
        Format::Json => write(
            &serde_json::to_string_pretty(json)
                .map_err(|e| CliError::BadAnswer(format!("cannot print the answer: {e}")))?,
        ),
        Format::Quiet => write(&quiet()),
        Format::Table => {
            let text = table();
            let lines: Vec<&str> = text.trim_end().lines().map(str::trim_end).collect();
            write(&lines.join("\n"))
        }
    }
}

/// A time for people: to the second (the JSON keeps the full precision).
pub fn when(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

/// `-` for a missing value.
pub fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}
