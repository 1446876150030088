//! The Lexicon `datetime` format (`lexicon.md`, "String Formats"): the intersection of
//! RFC 3339, ISO 8601 and WHATWG HTML — `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, upper-case
//! `T` and `Z`, no `-00:00`, whole seconds required — plus the semantic check (real calendar
//! date, real time of day, not before year 0 once normalized to UTC).

use super::SyntaxError;

const MAX_LEN: usize = 64;

/// The fields of a syntactically valid datetime.
#[derive(Debug, Clone, Copy)]
struct Fields {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    /// Fraction of a second, in nanoseconds (digits past the ninth are dropped).
    nanos: i64,
    /// Offset from UTC: sign (+1 east, -1 west), hours and minutes as written.
    offset: (i64, i64, i64),
}

/// Reads exactly `n` ASCII digits at `*pos`.
fn digits(b: &[u8], pos: &mut usize, n: usize) -> Option<i64> {
    let chunk = b.get(*pos..*pos + n)?;
    if !chunk.iter().all(u8::is_ascii_digit) {
        return None;
    }
    *pos += n;
    Some(
        chunk
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
    )
}

fn expect(b: &[u8], pos: &mut usize, c: u8) -> Option<()> {
    (b.get(*pos) == Some(&c)).then(|| *pos += 1)
}

fn syntax(s: &str) -> Result<Fields, &'static str> {
    const SHAPE: &str = "expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM";
    if s.len() > MAX_LEN {
        return Err("longer than 64 characters");
    }
    let b = s.as_bytes();
    let mut p = 0;
    let year = digits(b, &mut p, 4).ok_or(SHAPE)?;
    expect(b, &mut p, b'-').ok_or(SHAPE)?;
    let month = digits(b, &mut p, 2).ok_or(SHAPE)?;
    expect(b, &mut p, b'-').ok_or(SHAPE)?;
    let day = digits(b, &mut p, 2).ok_or(SHAPE)?;
    expect(b, &mut p, b'T').ok_or("date and time must be separated by upper-case `T`")?;
    let hour = digits(b, &mut p, 2).ok_or(SHAPE)?;
    expect(b, &mut p, b':').ok_or(SHAPE)?;
    let minute = digits(b, &mut p, 2).ok_or(SHAPE)?;
    expect(b, &mut p, b':').ok_or(SHAPE)?;
    let second = digits(b, &mut p, 2).ok_or(SHAPE)?;
    let mut nanos = 0i64;
    if expect(b, &mut p, b'.').is_some() {
        let start = p;
        while b.get(p).is_some_and(u8::is_ascii_digit) {
            p += 1;
        }
        let frac = b.get(start..p).unwrap_or_default();
        if frac.is_empty() {
            return Err("`.` must be followed by fraction digits");
        }
        for i in 0..9 {
            nanos = nanos * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
        }
    }
    let offset = match b.get(p) {
        Some(b'Z') => {
            p += 1;
            (1, 0, 0)
        }
        Some(&sign @ (b'+' | b'-')) => {
            p += 1;
            let h = digits(b, &mut p, 2).ok_or("timezone offset must be ±HH:MM")?;
            expect(b, &mut p, b':').ok_or("timezone offset must be ±HH:MM")?;
            let m = digits(b, &mut p, 2).ok_or("timezone offset must be ±HH:MM")?;
            if sign == b'-' && h == 0 && m == 0 {
                return Err("`-00:00` is not allowed (ISO 8601)");
            }
            (if sign == b'-' { -1 } else { 1 }, h, m)
        }
        _ => return Err("timezone is required: `Z` or ±HH:MM"),
    };
    if p != b.len() {
        return Err(SHAPE);
    }
    Ok(Fields {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
        offset,
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Microseconds since the UNIX epoch of the earliest allowed instant, 0000-01-01T00:00:00Z.
const MIN_MICROS: i64 = -62_167_219_200_000_000;

/// Syntax plus semantics; returns microseconds since the UNIX epoch (UTC).
fn semantic(f: &Fields) -> Result<i64, &'static str> {
    if !(1..=12).contains(&f.month) {
        return Err("month out of range 01-12");
    }
    if f.day < 1 || f.day > days_in_month(f.year, f.month) {
        return Err("day out of range for the month");
    }
    if f.hour > 23 {
        return Err("hour out of range 00-23");
    }
    if f.minute > 59 {
        return Err("minute out of range 00-59");
    }
    if f.second > 59 {
        return Err("second out of range 00-59");
    }
    let (sign, oh, om) = f.offset;
    if oh > 23 || om > 59 {
        return Err("timezone offset out of range");
    }
    let offset_minutes = sign * (oh * 60 + om);
    let days = days_from_civil(f.year, f.month, f.day);
    let secs = days * 86_400 + f.hour * 3600 + f.minute * 60 + f.second - offset_minutes * 60;
    let micros = secs * 1_000_000 + f.nanos / 1000;
    if micros < MIN_MICROS {
        return Err("normalizes to a time before year 0");
    }
    Ok(micros)
}

/// True if `s` has datetime syntax (fields may still be out of range, e.g. month `00`).
pub fn is_valid_datetime_syntax(s: &str) -> bool {
    syntax(s).is_ok()
}

/// True if `s` is a valid datetime: syntax and semantics (what Lexicon validation checks).
pub fn is_valid_datetime(s: &str) -> bool {
    Datetime::parse(s).is_ok()
}

/// A valid datetime, kept as the exact string it was parsed from (re-serializing a parsed
/// time would change precision and break record hashes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Datetime {
    text: String,
    unix_micros: i64,
}

impl Datetime {
    pub fn parse(s: &str) -> Result<Datetime, SyntaxError> {
        let fields = syntax(s).map_err(SyntaxError::Datetime)?;
        let unix_micros = semantic(&fields).map_err(SyntaxError::Datetime)?;
        Ok(Datetime {
            text: s.to_string(),
            unix_micros,
        })
    }

    /// The instant as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` (millisecond precision, like JavaScript's
    /// `toISOString`), from microseconds since the UNIX epoch. `None` outside years 0000-9999.
    pub fn from_unix_micros(micros: i64) -> Option<Datetime> {
        let secs = micros.div_euclid(1_000_000);
        let millis = micros.rem_euclid(1_000_000) / 1000;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            return None;
        }
        let text = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        );
        Some(Datetime {
            text,
            unix_micros: micros - micros.rem_euclid(1000),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Microseconds since the UNIX epoch (UTC); fraction digits past microseconds are dropped.
    pub fn unix_micros(&self) -> i64 {
        self.unix_micros
    }
}

impl std::fmt::Display for Datetime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Datetime {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Datetime::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::syntax::test_support::each_case;

    /// `syntax_ok`: passes the syntax check; `parses`: also passes the semantic check.
    #[track_caller]
    fn check(input: &str, syntax_ok: bool, parses: bool) {
        assert_eq!(
            is_valid_datetime_syntax(input),
            syntax_ok,
            "syntax of {input:?}"
        );
        assert_eq!(is_valid_datetime(input), parses, "validity of {input:?}");
        assert_eq!(Datetime::parse(input).is_ok(), parses, "parse of {input:?}");
    }

    #[test]
    fn fixtures() {
        each_case("datetime_syntax_valid.txt", 35, |s| check(s, true, true));
        each_case("datetime_syntax_invalid.txt", 45, |s| {
            check(s, false, false)
        });
        each_case("datetime_parse_invalid.txt", 7, |s| check(s, true, false));
    }

    #[test]
    fn spec_examples() {
        for s in [
            "1985-04-12T23:20:50.123Z",
            "0000-01-01T00:00:00.000Z",
            "1985-04-12T23:20:50.12345678912345Z",
            "1985-04-12T23:20:50.123-07:00",
        ] {
            check(s, true, true);
        }
        for s in [
            "1985-04-12",
            "1985-04-12T23:20:50.123+0000",
            "+001985-04-12T23:20:50.123Z",
        ] {
            check(s, false, false);
        }
        check("1985-04-12T23:99:50.123Z", true, false);
        check("2024-02-29T00:00:00Z", true, true);
        check("2023-02-29T00:00:00Z", true, false);
        check("1900-02-29T00:00:00Z", true, false);
        check("2000-02-29T00:00:00Z", true, true);
    }

    #[test]
    fn instants() {
        let at = |s: &str| Datetime::parse(s).unwrap().unix_micros();
        assert_eq!(at("1970-01-01T00:00:00Z"), 0);
        assert_eq!(at("1970-01-01T01:00:00+01:00"), 0);
        assert_eq!(at("1969-12-31T16:00:00.000001-08:00"), 1);
        assert_eq!(at("1985-04-12T23:20:50.123Z"), 482_196_050_123_000);
        assert_eq!(at("0000-01-01T00:00:00Z"), MIN_MICROS);
        assert_eq!(
            Datetime::parse("x").unwrap_err(),
            SyntaxError::Datetime(
                "expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM"
            )
        );
    }

    #[test]
    fn formats_from_micros() {
        let d = Datetime::from_unix_micros(482_196_050_123_456).unwrap();
        assert_eq!(d.as_str(), "1985-04-12T23:20:50.123Z");
        assert_eq!(d.unix_micros(), 482_196_050_123_000);
        assert_eq!(
            Datetime::from_unix_micros(0).unwrap().as_str(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Datetime::from_unix_micros(-1).unwrap().as_str(),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(
            Datetime::from_unix_micros(MIN_MICROS).unwrap().as_str(),
            "0000-01-01T00:00:00.000Z"
        );
        assert!(Datetime::from_unix_micros(MIN_MICROS - 1).is_none());
        assert!(Datetime::from_unix_micros(i64::MAX).is_none());
        // Every formatted value parses back to the same instant, across a range of days.
        for day in (-719_528..2_932_896).step_by(9_973) {
            let micros = day * 86_400_000_000 + 45_296_789_000;
            let d = Datetime::from_unix_micros(micros).unwrap();
            assert_eq!(
                Datetime::parse(d.as_str()).unwrap().unix_micros(),
                micros,
                "{d}"
            );
        }
    }
}
