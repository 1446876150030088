//! `api`: the only crate that knows HTTP.
