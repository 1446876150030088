//! Test helpers: locate the official fixtures in `../shared/atproto` (or `$ATPROTO_FIXTURES`).
use std::path::PathBuf;

/// Absolute path of a file under the atproto fixture root (the folder holding `interop-tests/`).
pub fn fixture_path(rel: &str) -> PathBuf {
    let root = std::env::var_os("ATPROTO_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/atproto"));
    root.join(rel)
}

/// Reads a fixture file; panics with a clear message if it is missing (a test that finds no
/// fixtures must fail, never pass silently).
#[allow(clippy::expect_used)]
pub fn read_fixture(rel: &str) -> String {
    let p = fixture_path(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {} not readable: {e}", p.display()))
}

/// Non-comment, non-blank lines of a line-per-case fixture file. Panics if there are none.
pub fn fixture_lines(rel: &str) -> Vec<String> {
    let lines: Vec<String> = read_fixture(rel)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.to_string())
        .collect();
    assert!(!lines.is_empty(), "fixture {rel} yielded no cases");
    lines
}
