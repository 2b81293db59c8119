//! JSON (the model as is, pretty-printed) and NDJSON (one connection object a line).

use std::io::{self, Write};

use super::Report;

pub fn write_json(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    out.write_all(b"\n")
}

pub fn write_ndjson(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    for c in &report.connections {
        serde_json::to_writer(&mut *out, c)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
