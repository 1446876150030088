//! Test helpers: locate the official atproto fixtures. They live in the repository, in
//! `tests/fixtures/atproto/` (`$ATPROTO_FIXTURES` may point at another copy: the folder holding
//! `interop-tests/`). The Lexicon documents are the one copy the server embeds,
//! `commands/lexicons/`. Nothing here looks outside the repository unless told to.
use std::path::PathBuf;

/// The fixture root: `$ATPROTO_FIXTURES`, else `tests/fixtures/atproto/` of this repository.
pub fn fixture_root() -> PathBuf {
    std::env::var_os("ATPROTO_FIXTURES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/atproto"))
}

/// Absolute path of a file under the fixture root (e.g. `interop-tests/syntax/…`).
pub fn fixture_path(rel: &str) -> PathBuf {
    fixture_root().join(rel)
}

/// Path of a Lexicon document (or folder) under `commands/lexicons/`, e.g.
/// `com/atproto/sync/subscribeRepos.json`.
pub fn lexicon_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../commands/lexicons").join(rel)
}

/// Reads a file; panics with a clear message if it is missing (a test that finds no fixtures
/// must fail, never pass silently).
fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!("fixture {} not readable: {e} (fixtures live in tests/fixtures/atproto/; ATPROTO_FIXTURES overrides)", p.display())
    })
}

/// Reads a fixture file (see [`fixture_path`]).
pub fn read_fixture(rel: &str) -> String {
    read(fixture_path(rel))
}

/// Reads a Lexicon document (see [`lexicon_path`]).
pub fn read_lexicon(rel: &str) -> String {
    read(lexicon_path(rel))
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
