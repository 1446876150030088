//! The Lexicon `language` format: a well-formed BCP 47 language tag (RFC 5646 §2.1), with the
//! primary language subtag lower-case 2-3 letters as atproto's fixtures require.
//! [`Language::parse`] additionally applies the RFC's validity rules that need no registry
//! (§2.2.5, §2.2.6: no repeated variant, no repeated extension singleton).
//!
//! ```text
//! Language-Tag  = langtag / privateuse / grandfathered
//! langtag       = language ["-" script] ["-" region] *("-" variant) *("-" extension) ["-" privateuse]
//! language      = 2*3ALPHA ["-" extlang]          ; extlang = 3ALPHA *2("-" 3ALPHA)
//! script        = 4ALPHA                           ; region = 2ALPHA / 3DIGIT
//! variant       = 5*8alphanum / (DIGIT 3alphanum)
//! extension     = singleton 1*("-" (2*8alphanum))  ; singleton = alphanum except x
//! privateuse    = "x" 1*("-" (1*8alphanum))
//! ```

use super::SyntaxError;

/// Irregular and regular grandfathered tags (RFC 5646 §2.1), matched case-insensitively.
const GRANDFATHERED: &[&str] = &[
    "en-GB-oed",
    "i-ami",
    "i-bnn",
    "i-default",
    "i-enochian",
    "i-hak",
    "i-klingon",
    "i-lux",
    "i-mingo",
    "i-navajo",
    "i-pwn",
    "i-tao",
    "i-tay",
    "i-tsu",
    "sgn-BE-FR",
    "sgn-BE-NL",
    "sgn-CH-DE",
    "art-lojban",
    "cel-gaulish",
    "no-bok",
    "no-nyn",
    "zh-guoyu",
    "zh-hakka",
    "zh-min",
    "zh-min-nan",
    "zh-xiang",
];

fn alpha(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic())
}

fn alphanum(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_variant(s: &str) -> bool {
    alphanum(s, 5, 8) || (alphanum(s, 4, 4) && s.bytes().next().is_some_and(|b| b.is_ascii_digit()))
}

fn is_singleton(s: &str) -> bool {
    alphanum(s, 1, 1) && !s.eq_ignore_ascii_case("x")
}

/// `x-…` private use: at least one 1-8 alphanumeric subtag after the `x`.
fn check_private_use(subtags: &[&str]) -> Result<(), &'static str> {
    if subtags.is_empty() || !subtags.iter().all(|t| alphanum(t, 1, 8)) {
        return Err("private-use `x` must be followed by 1-8 character alphanumeric subtags");
    }
    Ok(())
}

/// The variants and extension singletons of a well-formed tag, for the validity check.
#[derive(Default)]
struct Parsed<'a> {
    variants: Vec<&'a str>,
    singletons: Vec<&'a str>,
}

fn well_formed(s: &str) -> Result<Parsed<'_>, &'static str> {
    if GRANDFATHERED.iter().any(|g| g.eq_ignore_ascii_case(s)) {
        return Ok(Parsed::default());
    }
    let tags: Vec<&str> = s.split('-').collect();
    let Some((&first, rest)) = tags.split_first() else {
        return Err("empty");
    };
    if first.eq_ignore_ascii_case("x") {
        check_private_use(rest)?;
        return Ok(Parsed::default());
    }
    if !(alpha(first, 2, 3) && first.bytes().all(|b| b.is_ascii_lowercase())) {
        return Err("primary language subtag must be 2-3 lower-case letters");
    }
    let mut parsed = Parsed::default();
    let mut i = 0;
    let at = |i: usize| rest.get(i).copied();
    // extlang: up to three 3-letter subtags
    let mut extlangs = 0;
    while extlangs < 3 && at(i).is_some_and(|t| alpha(t, 3, 3)) {
        i += 1;
        extlangs += 1;
    }
    if at(i).is_some_and(|t| alpha(t, 4, 4)) {
        i += 1; // script
    }
    if at(i)
        .is_some_and(|t| alpha(t, 2, 2) || (t.len() == 3 && t.bytes().all(|b| b.is_ascii_digit())))
    {
        i += 1; // region
    }
    while let Some(t) = at(i).filter(|t| is_variant(t)) {
        parsed.variants.push(t);
        i += 1;
    }
    while let Some(singleton) = at(i).filter(|t| is_singleton(t)) {
        i += 1;
        let start = i;
        while at(i).is_some_and(|t| alphanum(t, 2, 8)) {
            i += 1;
        }
        if i == start {
            return Err("extension singleton must be followed by 2-8 character subtags");
        }
        parsed.singletons.push(singleton);
    }
    if at(i).is_some_and(|t| t.eq_ignore_ascii_case("x")) {
        check_private_use(rest.get(i + 1..).unwrap_or_default())?;
        return Ok(parsed);
    }
    if i != rest.len() {
        return Err("subtags out of order or malformed");
    }
    Ok(parsed)
}

fn has_duplicate(items: &[&str]) -> bool {
    items
        .iter()
        .enumerate()
        .any(|(i, a)| items.iter().skip(i + 1).any(|b| a.eq_ignore_ascii_case(b)))
}

fn valid(s: &str) -> Result<(), &'static str> {
    let parsed = well_formed(s)?;
    if has_duplicate(&parsed.variants) {
        return Err("repeated variant subtag");
    }
    if has_duplicate(&parsed.singletons) {
        return Err("repeated extension singleton");
    }
    Ok(())
}

/// True if `s` is a well-formed language tag (what Lexicon validation checks).
pub fn is_valid_language(s: &str) -> bool {
    well_formed(s).is_ok()
}

/// True if `s` is well-formed and also has no repeated variant or extension singleton.
pub fn is_valid_language_parse(s: &str) -> bool {
    valid(s).is_ok()
}

/// A well-formed language tag without repeated variants or extensions, kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Language(String);
super::string_newtype!(Language);

impl Language {
    pub fn parse(s: &str) -> Result<Language, SyntaxError> {
        valid(s).map_err(SyntaxError::Language)?;
        Ok(Language(s.to_string()))
    }

    /// The primary language subtag, e.g. `pt` for `pt-BR` (`x`, or the whole tag, for
    /// private-use and grandfathered tags).
    pub fn primary(&self) -> &str {
        self.0.split('-').next().unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::syntax::test_support::each_case;

    #[track_caller]
    fn check(input: &str, well_formed: bool, valid: bool) {
        assert_eq!(
            is_valid_language(input),
            well_formed,
            "well-formed {input:?}"
        );
        assert_eq!(is_valid_language_parse(input), valid, "valid {input:?}");
        assert_eq!(Language::parse(input).is_ok(), valid, "parse {input:?}");
    }

    #[test]
    fn fixtures() {
        each_case("language_syntax_valid.txt", 18, |s| check(s, true, true));
        each_case("language_syntax_invalid.txt", 7, |s| check(s, false, false));
        each_case("language_parse_invalid.txt", 4, |s| check(s, true, false));
    }

    #[test]
    fn more_cases() {
        for s in [
            "en",
            "en-US",
            "zh-yue-HK",
            "sr-Latn-RS",
            "es-419",
            "de-CH-x-phonebk",
            "x-whatever",
            "i-klingon",
            "en-a-bbb-x-a-ccc",
        ] {
            check(s, true, true);
        }
        for s in [
            "",
            "-",
            "en-",
            "en--US",
            "en-a",
            "en-x",
            "x",
            "en-US-Latn",
            "toolongtag",
            "en-abcdefghi",
        ] {
            check(s, false, false);
        }
        assert_eq!(Language::parse("pt-BR").unwrap().primary(), "pt");
        assert_eq!(
            Language::parse("de-DE-1901-1901").unwrap_err(),
            SyntaxError::Language("repeated variant subtag")
        );
    }
}
