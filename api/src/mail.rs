//! The dev mail sink, used when `PDS_EMAIL_SMTP_URL` is unset: the outbox (`outbox/`) writes each
//! message as one file, `<data directory>/mail/<unix-micros>-<template>.eml` (mode 0600; RFC 5322
//! headers `From`, `To`, `Subject`, `Date`, then the text part), so an operator (or a test) can
//! read the token.
//!
//! Never logs a message body (it carries a token).

use std::io::Write;
use std::path::Path;

/// Writes one message into the sink.
pub fn deliver(data_directory: &Path, from: &str, to: &str, template: &str, subject: &str, text: &str) -> std::io::Result<()> {
    let dir = data_directory.join("mail");
    std::fs::create_dir_all(&dir)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let path = dir.join(format!("{}-{template}.eml", now.as_micros()));
    let date = httpdate(now.as_secs());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&path)?;
    write!(
        f,
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {date}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}",
        from,
        to,
        subject,
        text.replace('\n', "\r\n")
    )?;
    f.sync_all()
}

/// RFC 5322 date in UTC from Unix seconds.
fn httpdate(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (y, mo, d) = domain::syntax::civil_from_days(i64::try_from(days).unwrap_or(0));
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][usize::try_from(days % 7).unwrap_or(0)];
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        [usize::try_from(mo - 1).unwrap_or(0)];
    format!("{wd}, {d:02} {mon} {y} {h:02}:{m:02}:{s:02} +0000")
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_rfc5322() {
        for (secs, want) in [
            (0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (1_764_150_000, "Wed, 26 Nov 2025 09:40:00 +0000"),
        ] {
            assert_eq!(super::httpdate(secs), want);
        }
    }
}
