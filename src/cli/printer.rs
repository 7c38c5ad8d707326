//! The one place command output is written. `--json`: one JSON object per line
//! on stdout (NDJSON), each with `event` and `ts` (unix ms). Otherwise: short
//! human lines on stdout. Logs and diagnostics go to stderr via `tracing`.

use std::io::Write;

use serde_json::{Map, Value};

/// Output mode for one command run.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    json: bool,
}

impl Printer {
    /// A printer for `--json` (NDJSON) or human output.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether output is NDJSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// One event: in JSON mode `{"event": name, "ts": ms, ...fields}`, else `human()`
    /// (skipped when it returns `None`).
    pub fn event(&self, name: &str, fields: Value, human: impl FnOnce() -> Option<String>) {
        if self.json {
            let mut obj = Map::new();
            obj.insert("event".into(), Value::from(name));
            obj.insert("ts".into(), Value::from(crate::client::now_ms()));
            if let Value::Object(f) = fields {
                obj.extend(f);
            }
            write_stdout(&Value::Object(obj).to_string());
        } else if let Some(line) = human() {
            write_stdout(&line);
        }
    }

    /// A human line on stdout (JSON mode: nothing).
    pub fn human(&self, line: &str) {
        if !self.json {
            write_stdout(line);
        }
    }

    /// A human note on stderr (progress, hints), in both modes.
    #[allow(clippy::print_stderr)]
    pub fn note(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Write one line and flush, so a reader of a pipe sees each event at once. A
/// closed stdout (reader gone) is not an error worth dying for mid-handler.
#[allow(clippy::print_stdout)]
fn write_stdout(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
