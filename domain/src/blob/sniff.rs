//! MIME type from a blob's first bytes (magic numbers), as the reference's `file-type` sniffing
//! does for the formats people post. `None` when nothing is recognised: the caller then falls
//! back to the declared `Content-Type`.

/// How many leading bytes [`sniff`] looks at; give it at least this many when the blob has them.
pub const SNIFF_LEN: usize = 64;

/// The MIME type the leading bytes announce, if any.
pub fn sniff(b: &[u8]) -> Option<&'static str> {
    let at = |off: usize, sig: &[u8]| b.len() >= off + sig.len() && &b[off..off + sig.len()] == sig;
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if at(0, &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        return Some("image/png");
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some("image/gif");
    }
    if at(0, b"RIFF") {
        if at(8, b"WEBP") {
            return Some("image/webp");
        }
        if at(8, b"WAVE") {
            return Some("audio/wav");
        }
        if at(8, b"AVI ") {
            return Some("video/vnd.avi");
        }
        return None;
    }
    if at(4, b"ftyp") && b.len() >= 12 {
        return Some(match &b[8..12] {
            b"avif" | b"avis" => "image/avif",
            b"heic" | b"heix" | b"heim" | b"heis" => "image/heic",
            b"mif1" | b"msf1" => "image/heif",
            b"qt  " => "video/quicktime",
            b"M4A " | b"M4B " => "audio/x-m4a",
            b"M4V " | b"M4VH" | b"M4VP" => "video/x-m4v",
            [b'3', b'g', b'2', _] => "video/3gpp2",
            [b'3', b'g', _, _] => "video/3gpp",
            _ => "video/mp4",
        });
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        let webm = b.windows(4).any(|w| w == b"webm");
        return Some(if webm { "video/webm" } else { "video/x-matroska" });
    }
    if at(0, b"%PDF") {
        return Some("application/pdf");
    }
    if at(0, b"OggS") {
        return Some("audio/ogg");
    }
    if at(0, b"fLaC") {
        return Some("audio/x-flac");
    }
    if at(0, b"ID3") || (b.len() >= 2 && b[0] == 0xFF && matches!(b[1], 0xFB | 0xF3 | 0xF2)) {
        return Some("audio/mpeg");
    }
    if at(0, b"II*\0") || at(0, b"MM\0*") {
        return Some("image/tiff");
    }
    if at(0, b"BM") && b.len() >= 14 {
        return Some("image/bmp");
    }
    if at(0, &[0, 0, 1, 0]) && b.len() >= 6 {
        return Some("image/x-icon");
    }
    if at(0, b"PK\x03\x04") {
        return Some("application/zip");
    }
    if at(0, &[0x1F, 0x8B, 0x08]) {
        return Some("application/gzip");
    }
    if at(0, &[0xFF, 0x0A]) || at(0, b"\0\0\0\x0CJXL \r\n\x87\n") {
        return Some("image/jxl");
    }
    None
}

/// The type a blob is stored with: the sniffed one, else the declared `Content-Type` (its
/// parameters dropped, lower-cased), else `application/octet-stream`.
pub fn effective_mime(sniffed: Option<&str>, declared: Option<&str>) -> String {
    if let Some(s) = sniffed {
        return s.to_owned();
    }
    let declared = declared
        .and_then(|d| d.split(';').next())
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| is_mime_shaped(d));
    declared.unwrap_or_else(|| "application/octet-stream".to_owned())
}

/// `type/subtype` with token characters only.
fn is_mime_shaped(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty() && t.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&c))
    };
    matches!(s.split_once('/'), Some((t, st)) if token(t) && token(st))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(bytes: &[u8], expected: Option<&str>) {
        assert_eq!(sniff(bytes), expected, "{bytes:02x?}");
    }

    #[test]
    fn magic_numbers() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F'], Some("image/jpeg")),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some("image/png")),
            (b"GIF89a\x01\0\x01\0", Some("image/gif")),
            (b"RIFF\x24\0\0\0WEBPVP8 ", Some("image/webp")),
            (b"RIFF\x24\0\0\0WAVEfmt ", Some("audio/wav")),
            (b"\0\0\0\x20ftypisom\0\0\x02\0", Some("video/mp4")),
            (b"\0\0\0\x1cftypavif\0\0\0\0", Some("image/avif")),
            (b"\0\0\0\x14ftypqt  \0\0\0\0", Some("video/quicktime")),
            (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", Some("video/webm")),
            (b"%PDF-1.7\n", Some("application/pdf")),
            (b"hello world", None),
            (b"<svg xmlns=", None),
            (b"", None),
            (b"RIFF", None),
            (&[0xFF, 0xD8], None),
        ];
        for (b, e) in cases {
            check(b, *e);
        }
    }

    #[test]
    fn sniffed_type_wins_over_the_declared_one() {
        let cases = [
            (Some("image/png"), Some("text/plain"), "image/png"),
            (None, Some("text/plain; charset=utf-8"), "text/plain"),
            (None, Some("Video/MP4"), "video/mp4"),
            (None, Some("not a mime"), "application/octet-stream"),
            (None, None, "application/octet-stream"),
        ];
        for (s, d, e) in cases {
            assert_eq!(effective_mime(s, d), e, "{s:?} {d:?}");
        }
    }
}
