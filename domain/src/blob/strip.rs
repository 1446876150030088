//! Metadata stripping for uploaded images: EXIF (which carries GPS coordinates, camera serials,
//! timestamps), XMP, IPTC and text comments are removed from JPEG, PNG and WebP; pixels, colour
//! profiles (ICC) and everything needed to decode the image are kept byte for byte.
//!
//! - JPEG: APP1 (Exif, XMP), APP13 (Photoshop/IPTC) and COM segments before the first scan.
//! - PNG: `eXIf`, `tEXt`, `zTXt`, `iTXt` chunks (and anything after `IEND`).
//! - WebP: `EXIF` and `XMP ` chunks; the `VP8X` flags that announce them are cleared and the RIFF
//!   size rewritten.
//!
//! Note: a JPEG's EXIF orientation tag goes with the rest of EXIF (clients rotate before upload,
//! as the Bluesky app does).

/// Why an image could not be walked: it is truncated or not the format its magic number says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {format}: {reason}")]
pub struct StripError {
    pub format: &'static str,
    pub reason: &'static str,
}

/// Whether blobs of `mime` are stripped (and so read whole, up to the upload limit).
pub fn is_strippable(mime: &str) -> bool {
    matches!(mime, "image/jpeg" | "image/png" | "image/webp")
}

/// The image without its metadata, or `None` when there was nothing to remove (or `mime` is not
/// a format this strips).
pub fn strip_metadata(mime: &str, bytes: &[u8]) -> Result<Option<Vec<u8>>, StripError> {
    let out = match mime {
        "image/jpeg" => strip_jpeg(bytes)?,
        "image/png" => strip_png(bytes)?,
        "image/webp" => strip_webp(bytes)?,
        _ => return Ok(None),
    };
    Ok(if out.len() == bytes.len() { None } else { Some(out) })
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?])))
}

fn strip_jpeg(b: &[u8]) -> Result<Vec<u8>, StripError> {
    let err = |reason| StripError { format: "JPEG", reason };
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return Err(err("no SOI marker"));
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..2]);
    let mut pos = 2;
    loop {
        if pos >= b.len() {
            return Ok(out);
        }
        if b[pos] != 0xFF {
            return Err(err("expected a marker"));
        }
        // Fill bytes: any number of 0xFF before the marker code.
        let mut m = pos + 1;
        while b.get(m) == Some(&0xFF) {
            m += 1;
        }
        let Some(&code) = b.get(m) else { return Err(err("truncated marker")) };
        match code {
            // Standalone markers: no length.
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&b[pos..=m]);
                pos = m + 1;
            }
            // Start of scan or end of image: the rest is image data.
            0xDA | 0xD9 => {
                out.extend_from_slice(&b[pos..]);
                return Ok(out);
            }
            _ => {
                let len = be16(b, m + 1).ok_or_else(|| err("truncated segment length"))?;
                if len < 2 {
                    return Err(err("segment length below 2"));
                }
                let end = m + 1 + len;
                if end > b.len() {
                    return Err(err("segment runs past the end"));
                }
                // APP1 = Exif / XMP, APP13 = Photoshop IRB / IPTC, COM = comment.
                if !matches!(code, 0xE1 | 0xED | 0xFE) {
                    out.extend_from_slice(&b[pos..end]);
                }
                pos = end;
            }
        }
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn strip_png(b: &[u8]) -> Result<Vec<u8>, StripError> {
    let err = |reason| StripError { format: "PNG", reason };
    if !b.starts_with(PNG_SIGNATURE) {
        return Err(err("no signature"));
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(PNG_SIGNATURE);
    let mut pos = PNG_SIGNATURE.len();
    while pos < b.len() {
        let len = b
            .get(pos..pos + 4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .ok_or_else(|| err("truncated chunk length"))?;
        let kind = b.get(pos + 4..pos + 8).ok_or_else(|| err("truncated chunk type"))?;
        let end = pos.checked_add(12).and_then(|p| p.checked_add(len)).ok_or_else(|| err("chunk too long"))?;
        if end > b.len() {
            return Err(err("chunk runs past the end"));
        }
        if !matches!(kind, b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt") {
            out.extend_from_slice(&b[pos..end]);
        }
        if kind == b"IEND" {
            break;
        }
        pos = end;
    }
    Ok(out)
}

fn le32(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

fn strip_webp(b: &[u8]) -> Result<Vec<u8>, StripError> {
    let err = |reason| StripError { format: "WebP", reason };
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WEBP" {
        return Err(err("no RIFF/WEBP header"));
    }
    let riff_end = le32(b, 4).and_then(|s| s.checked_add(8)).ok_or_else(|| err("bad RIFF size"))?.min(b.len());
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..12]);
    let mut pos = 12;
    let mut vp8x_flags_at = None;
    while pos + 8 <= riff_end {
        let kind = &b[pos..pos + 4];
        let size = le32(b, pos + 4).ok_or_else(|| err("truncated chunk size"))?;
        let padded = size + (size & 1);
        let end = (pos + 8).checked_add(padded).ok_or_else(|| err("chunk too long"))?;
        if end > riff_end && pos + 8 + size > riff_end {
            return Err(err("chunk runs past the end"));
        }
        let end = end.min(riff_end);
        if kind != b"EXIF" && kind != b"XMP " {
            if kind == b"VP8X" && size >= 1 {
                vp8x_flags_at = Some(out.len() + 8);
            }
            out.extend_from_slice(&b[pos..end]);
        }
        pos = end;
    }
    if let Some(at) = vp8x_flags_at {
        // Bit 3: EXIF present, bit 2: XMP present.
        out[at] &= !(0x08 | 0x04);
    }
    let riff_size = u32::try_from(out.len() - 8).map_err(|_| err("too large"))?;
    out[4..8].copy_from_slice(&riff_size.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn jpeg_with_gps() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
        let exif = b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x88\x25\0\x04\0\0\0\x01\0\0\0\x1aGPS-51.5N";
        j.extend_from_slice(&[0xFF, 0xE1]);
        j.extend_from_slice(&u16::try_from(exif.len() + 2).unwrap().to_be_bytes());
        j.extend_from_slice(exif);
        j.extend_from_slice(&[0xFF, 0xFE, 0x00, 0x07, b'h', b'e', b'l', b'l', b'o']);
        j.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x04, 0x00, 0x01]);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xE1, 0x56, 0xFF, 0xD9]);
        j
    }

    fn contains(h: &[u8], n: &[u8]) -> bool {
        h.windows(n.len()).any(|w| w == n)
    }

    #[test]
    fn given_a_jpeg_with_exif_gps_when_stripped_then_exif_and_comment_are_gone_and_the_rest_is_kept() {
        let j = jpeg_with_gps();
        let s = strip_metadata("image/jpeg", &j).unwrap().unwrap();
        assert!(!contains(&s, b"Exif") && !contains(&s, b"GPS") && !contains(&s, b"hello"));
        assert!(contains(&s, b"JFIF"));
        // Scan data is copied as is, even bytes that look like markers.
        assert!(s.ends_with(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xE1, 0x56, 0xFF, 0xD9]));
        // Stripping is idempotent: nothing left to remove.
        assert_eq!(strip_metadata("image/jpeg", &s).unwrap(), None);
    }

    #[test]
    fn png_text_and_exif_chunks_are_dropped() {
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            c.extend_from_slice(&[0, 0, 0, 0]);
            c
        };
        let mut p = PNG_SIGNATURE.to_vec();
        p.extend(chunk(b"IHDR", &[0; 13]));
        p.extend(chunk(b"eXIf", b"MM\0*GPS"));
        p.extend(chunk(b"tEXt", b"Comment\0secret"));
        p.extend(chunk(b"IDAT", &[1, 2, 3]));
        p.extend(chunk(b"IEND", &[]));
        let s = strip_metadata("image/png", &p).unwrap().unwrap();
        let mut want = PNG_SIGNATURE.to_vec();
        want.extend(chunk(b"IHDR", &[0; 13]));
        want.extend(chunk(b"IDAT", &[1, 2, 3]));
        want.extend(chunk(b"IEND", &[]));
        assert_eq!(s, want);
    }

    #[test]
    fn webp_exif_chunk_is_dropped_and_flags_and_size_fixed() {
        let mut body = Vec::new();
        body.extend_from_slice(b"VP8X\x0a\0\0\0");
        body.extend_from_slice(&[0x08 | 0x04 | 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(b"VP8L\x03\0\0\0\x2f\0\0\0");
        body.extend_from_slice(b"EXIF\x05\0\0\0GPS!!\0");
        let mut w = b"RIFF".to_vec();
        w.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_le_bytes());
        w.extend_from_slice(b"WEBP");
        w.extend_from_slice(&body);
        let s = strip_metadata("image/webp", &w).unwrap().unwrap();
        assert!(!contains(&s, b"EXIF") && !contains(&s, b"GPS"));
        assert_eq!(le32(&s, 4).unwrap(), s.len() - 8);
        assert_eq!(s[20] & 0x0C, 0, "EXIF/XMP flags cleared");
        assert_eq!(s[20] & 0x10, 0x10, "other flags kept");
    }

    #[test]
    fn malformed_images_are_errors_not_panics() {
        let j = jpeg_with_gps();
        for cut in 0..j.len() {
            let _ = strip_metadata("image/jpeg", &j[..cut]);
        }
        assert!(strip_metadata("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF]).is_err());
        assert!(strip_metadata("image/png", b"\x89PNG\r\n\x1a\n\xff\xff\xff\xffIHDR").is_err());
        assert_eq!(strip_metadata("text/plain", b"hi"), Ok(None));
    }
}
