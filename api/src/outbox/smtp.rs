//! SMTP delivery (`lettre` over tokio + rustls). `PDS_EMAIL_SMTP_URL` is read as the reference
//! reads it (nodemailer's `parseConnectionUrl` + `SMTPConnection` defaults):
//! - `smtps://` — implicit TLS, port 465 by default;
//! - `smtp://` — plain connection upgraded with STARTTLS when the server offers it, port 587 by
//!   default (a `smtp://` URL on port 465 is still STARTTLS, as in nodemailer: logged as a likely
//!   mistake); `?requireTLS=true` refuses a server without STARTTLS, `?ignoreTLS=true` never upgrades;
//! - `user:password@` percent-decoded (a password with `@`, `:` or `/` is written `%40`, `%3A`, `%2F`);
//! - `?tls.rejectUnauthorized=false` accepts any certificate (nodemailer's option; for testing
//!   only); `?name=` is the EHLO name (default: `PDS_HOSTNAME`). Other query keys are ignored
//!   with a warning, as nodemailer ignores options it does not use.
//!
//! `PDS_EMAIL_SMTP_CA_FILE` (ours) adds PEM root certificates (a private CA) to the web roots.
//! Never logs the password (`SmtpUrl`'s `Debug` redacts it).

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one SMTP conversation may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// Upgrade when offered (nodemailer's default for `smtp://`).
    Opportunistic,
    /// `requireTLS`.
    Required,
    /// `ignoreTLS`.
    Never,
}

#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub implicit_tls: bool,
    pub starttls: StartTls,
    pub user: Option<String>,
    pub password: Option<String>,
    pub accept_invalid_certs: bool,
    pub hello_name: Option<String>,
    /// Query keys we do not use.
    pub ignored: Vec<String>,
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("implicit_tls", &self.implicit_tls)
            .field("starttls", &self.starttls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.implicit_tls { "smtps" } else { "smtp" };
        let user = self.user.as_deref().map(|u| format!("{u}:***@")).unwrap_or_default();
        write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("a % not followed by two hex digits")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "a % not followed by two hex digits")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-decoding gives invalid UTF-8".to_owned())
}

fn truthy(v: &str) -> bool {
    v == "true" || v.parse::<f64>().is_ok_and(|n| n != 0.0)
}

impl SmtpUrl {
    pub fn parse(s: &str) -> Result<SmtpUrl, String> {
        let url = url::Url::parse(s.trim()).map_err(|e| format!("not a URL ({e})"))?;
        let implicit_tls = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => return Err(format!("scheme {other}: expected smtp:// (STARTTLS) or smtps:// (TLS)")),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port().unwrap_or(if implicit_tls { 465 } else { 587 });
        let user = (!url.username().is_empty()).then(|| percent_decode(url.username())).transpose()?;
        let password = url.password().map(percent_decode).transpose()?;
        let mut parsed = SmtpUrl {
            host,
            port,
            implicit_tls,
            starttls: StartTls::Opportunistic,
            user,
            password,
            accept_invalid_certs: false,
            hello_name: None,
            ignored: vec![],
        };
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "requireTLS" if truthy(&v) => parsed.starttls = StartTls::Required,
                "ignoreTLS" if truthy(&v) => parsed.starttls = StartTls::Never,
                "requireTLS" | "ignoreTLS" => {}
                "tls.rejectUnauthorized" => parsed.accept_invalid_certs = !truthy(&v),
                "name" => parsed.hello_name = Some(v.into_owned()),
                _ => parsed.ignored.push(k.into_owned()),
            }
        }
        Ok(parsed)
    }

    /// A warning for the operator, if the URL looks like a common mistake.
    pub fn warning(&self) -> Option<String> {
        if !self.implicit_tls && self.port == 465 {
            return Some(format!(
                "PDS_EMAIL_SMTP_URL is smtp:// on port 465: that is STARTTLS (as in the reference PDS), but port 465 \
                 usually speaks TLS from the start; use smtps://{}:465 if sending fails",
                self.host
            ));
        }
        if self.implicit_tls && self.port == 587 {
            return Some("PDS_EMAIL_SMTP_URL is smtps:// on port 587, which usually expects STARTTLS: use smtp:// if sending fails".into());
        }
        if !self.ignored.is_empty() {
            return Some(format!("PDS_EMAIL_SMTP_URL: query options not used by this server: {}", self.ignored.join(", ")));
        }
        None
    }
}

/// One SMTP relay and the sender address.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    pub url: String,
}

impl Smtp {
    pub fn new(url: &SmtpUrl, from: &str, hostname: &str, ca_pem: Option<&[u8]>) -> Result<Smtp, String> {
        let from: Mailbox = from.parse().map_err(|e| format!("PDS_EMAIL_FROM_ADDRESS {from:?}: {e}"))?;
        let mut tls = TlsParameters::builder(url.host.clone()).dangerous_accept_invalid_certs(url.accept_invalid_certs);
        if let Some(pem) = ca_pem {
            for block in split_pem(pem) {
                let cert = Certificate::from_pem(block.as_bytes()).map_err(|e| format!("PDS_EMAIL_SMTP_CA_FILE: {e}"))?;
                tls = tls.add_root_certificate(cert);
            }
        }
        let tls = tls.build_rustls().map_err(|e| format!("TLS settings: {e}"))?;
        let tls = match (url.implicit_tls, url.starttls) {
            (true, _) => Tls::Wrapper(tls),
            (false, StartTls::Opportunistic) => Tls::Opportunistic(tls),
            (false, StartTls::Required) => Tls::Required(tls),
            (false, StartTls::Never) => Tls::None,
        };
        let hello = url.hello_name.clone().unwrap_or_else(|| hostname.to_owned());
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.clone())
            .port(url.port)
            .tls(tls)
            .timeout(Some(TIMEOUT))
            .hello_name(ClientId::Domain(hello));
        if let Some(user) = &url.user {
            builder = builder.credentials(Credentials::new(user.clone(), url.password.clone().unwrap_or_default()));
        }
        Ok(Smtp { transport: builder.build(), from, url: url.to_string() })
    }

    /// Sends one message (text and HTML alternatives). `Err` carries the server's or the
    /// connection's reason.
    pub async fn send(&self, to: &str, subject: &str, text: &str, html: &str, from: Option<&str>) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?;
        let from = match from {
            Some(f) => f.parse().map_err(|e| format!("sender {f:?}: {e}"))?,
            None => self.from.clone(),
        };
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text.to_owned()))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html.to_owned())),
            )
            .map_err(|e| format!("building the message: {e}"))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| describe(&e))
    }
}

/// lettre's error with its causes (the TLS or I/O reason is in the source chain).
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cause = c.source();
    }
    s
}

fn split_pem(pem: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(pem);
    let mut out = vec![];
    let mut cur = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            cur.clear();
        }
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END CERTIFICATE-----") {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_nodemailer_reads_them() {
        // (url, host, port, implicit TLS, STARTTLS, user, password, accept invalid certs)
        type Case<'a> = (&'a str, &'a str, u16, bool, StartTls, Option<&'a str>, Option<&'a str>, bool);
        let cases: &[Case] = &[
            ("smtp://mail.example.com", "mail.example.com", 587, false, StartTls::Opportunistic, None, None, false),
            ("smtps://mail.example.com", "mail.example.com", 465, true, StartTls::Opportunistic, None, None, false),
            ("smtp://mail.example.com:465", "mail.example.com", 465, false, StartTls::Opportunistic, None, None, false),
            ("smtps://u:p@mail.example.com:2465", "mail.example.com", 2465, true, StartTls::Opportunistic, Some("u"), Some("p"), false),
            (
                "smtp://apikey%40example.com:p%40ss%3Aw%2Frd%25@smtp.example.com:25",
                "smtp.example.com",
                25,
                false,
                StartTls::Opportunistic,
                Some("apikey@example.com"),
                Some("p@ss:w/rd%"),
                false,
            ),
            ("smtp://127.0.0.1:2525?requireTLS=true", "127.0.0.1", 2525, false, StartTls::Required, None, None, false),
            ("smtp://127.0.0.1:2525?ignoreTLS=true", "127.0.0.1", 2525, false, StartTls::Never, None, None, false),
            ("smtps://127.0.0.1?tls.rejectUnauthorized=false", "127.0.0.1", 465, true, StartTls::Opportunistic, None, None, true),
            ("smtp://[::1]:25", "::1", 25, false, StartTls::Opportunistic, None, None, false),
        ];
        for (url, host, port, implicit, starttls, user, password, invalid) in cases {
            let p = SmtpUrl::parse(url).unwrap();
            assert_eq!(
                (p.host.as_str(), p.port, p.implicit_tls, p.starttls, p.user.as_deref(), p.password.as_deref(), p.accept_invalid_certs),
                (*host, *port, *implicit, *starttls, *user, *password, *invalid),
                "{url}"
            );
            assert!(!format!("{p:?}{p}").contains("p@ss"), "the password never prints");
        }
        for bad in ["http://mail.example.com", "smtp://", "mail.example.com:587", "smtp://u:%zz@h"] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(SmtpUrl::parse("smtp://h:465").unwrap().warning().unwrap().contains("smtps://"));
        assert!(SmtpUrl::parse("smtp://h:587").unwrap().warning().is_none());
        assert!(SmtpUrl::parse("smtp://h?pool=true").unwrap().warning().unwrap().contains("pool"));
    }
}
