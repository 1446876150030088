//! The integration suite lives in `integration/` (one test binary). This library is empty on
//! purpose: shared harness code sits in `integration/harness.rs`.
