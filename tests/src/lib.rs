//! Integration suite helpers.
