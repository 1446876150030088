//! The Lexicon `cid` and `uri` string formats (`lexicon.md`, `data-model.md`). Syntax only:
//! a `cid` string is not decoded here (use `cid::Cid::try_from` for that).

const CID_MIN: usize = 8;
const CID_MAX: usize = 256;
const URI_MAX: usize = 8 * 1024;

/// A CID in string form: 8-256 characters of `A-Za-z0-9+=` (any multibase), and not a legacy
/// CIDv0 (`Qm…`).
pub fn is_valid_cid(s: &str) -> bool {
    (CID_MIN..=CID_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'=')
        && !s.starts_with("Qm")
}

/// A generic RFC 3986 URI, up to 8 KiB: a scheme (`ALPHA *(ALPHA / DIGIT / + / - / .)`), `:`,
/// an optional `//`, then a non-empty rest with no whitespace or control characters that does
/// not start with `/`.
pub fn is_valid_uri(s: &str) -> bool {
    if s.len() > URI_MAX {
        return false;
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    scheme_ok
        && !rest.is_empty()
        && !rest.starts_with('/')
        && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::test_support::each_case;

    #[track_caller]
    fn check(valid: fn(&str) -> bool, input: &str, expected: bool) {
        assert_eq!(valid(input), expected, "{input:?}");
    }

    #[test]
    fn cid_fixtures() {
        each_case("cid_syntax_valid.txt", 8, |s| check(is_valid_cid, s, true));
        each_case("cid_syntax_invalid.txt", 10, |s| {
            check(is_valid_cid, s, false)
        });
    }

    #[test]
    fn uri_fixtures() {
        each_case("uri_syntax_valid.txt", 9, |s| check(is_valid_uri, s, true));
        each_case("uri_syntax_invalid.txt", 12, |s| {
            check(is_valid_uri, s, false)
        });
    }

    #[test]
    fn more_uris() {
        check(is_valid_uri, "mailto:alice@example.com", true);
        check(is_valid_uri, "https:///path", false);
        check(is_valid_uri, "https://exa\u{0}mple.com", false);
    }
}
