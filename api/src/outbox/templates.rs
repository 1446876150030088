//! The messages' text and HTML, rendered at send time from the templates in
//! `api/templates/notifications/<template>.{txt,html}` (compiled into the binary) and the sealed
//! content of the notification. A tiny Mustache subset: `{{name}}` (HTML-escaped in `.html`),
//! `{{{name}}}` (raw: only the operator's `sendEmail` HTML), `{{#name}}…{{/name}}` (shown when
//! `name` is not empty).

use domain::notification::{Content, Template};

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What the templates may show besides the sealed content.
#[derive(Debug, Clone)]
pub struct Branding {
    /// Shown at the top of each HTML message (the server's hostname).
    pub service: String,
    /// `PDS_EMAIL_DISABLE_CONFIRMATION_LINK` unset: the confirmation email links to the Bluesky
    /// app's verify-email intent with the code, as the reference.
    pub confirmation_link: bool,
}

fn sources(t: Template) -> (&'static str, &'static str) {
    macro_rules! pair {
        ($n:literal) => {
            (
                include_str!(concat!("../../templates/notifications/", $n, ".txt")),
                include_str!(concat!("../../templates/notifications/", $n, ".html")),
            )
        };
    }
    match t {
        Template::ConfirmEmail => pair!("confirm_email"),
        Template::UpdateEmail => pair!("update_email"),
        Template::ResetPassword => pair!("reset_password"),
        Template::DeleteAccount => pair!("delete_account"),
        Template::PlcOperation => pair!("plc_operation"),
        Template::SignIn => pair!("sign_in"),
        Template::AdminMessage => pair!("admin_message"),
        Template::ChannelVerification => pair!("channel_verification"),
    }
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// HTML to plain text, roughly (as the reference's `nodemailer-html-to-text` for `sendEmail`):
/// tags dropped, block ends as line breaks, the common entities decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[start + 1..start + end].trim_start_matches('/').to_ascii_lowercase();
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if matches!(name.as_str(), "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4") {
            out.push('\n');
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
}

fn render_one(src: &str, vars: &[(&str, String)], html: bool) -> String {
    let get = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap_or("");
    let mut out = String::with_capacity(src.len() + 64);
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(inner) = after.strip_prefix("{{{") {
            let Some(end) = inner.find("}}}") else { break };
            out.push_str(get(inner[..end].trim()));
            rest = &inner[end + 3..];
        } else if let Some(inner) = after.strip_prefix("{{#") {
            let Some(end) = inner.find("}}") else { break };
            let name = inner[..end].trim();
            let body_and_rest = &inner[end + 2..];
            let close = format!("{{{{/{name}}}}}");
            let Some(body_end) = body_and_rest.find(&close) else { break };
            if !get(name).is_empty() {
                out.push_str(&render_one(&body_and_rest[..body_end], vars, html));
            }
            rest = &body_and_rest[body_end + close.len()..];
        } else {
            let inner = &after[2..];
            let Some(end) = inner.find("}}") else { break };
            let v = get(inner[..end].trim());
            out.push_str(&if html { escape_html(v) } else { v.to_owned() });
            rest = &inner[end + 2..];
        }
    }
    out.push_str(rest);
    out
}

/// The subject, text and HTML of `template` with `content`.
pub fn render(template: Template, content: &Content, branding: &Branding) -> Rendered {
    let token = content.token.clone().unwrap_or_default();
    let link = if template == Template::ConfirmEmail && branding.confirmation_link && !token.is_empty() {
        format!("https://bsky.app/intent/verify-email?code={token}")
    } else {
        String::new()
    };
    let body = content.body.clone().unwrap_or_default();
    let vars = [
        ("token", token),
        ("handle", content.handle.clone().unwrap_or_default()),
        ("service", branding.service.clone()),
        ("link", link),
        ("body_text", html_to_text(&body)),
        ("body", body),
    ];
    let (txt, html) = sources(template);
    Rendered {
        subject: content.subject.clone().unwrap_or_else(|| template.default_subject().to_owned()),
        text: render_one(txt, &vars, false),
        html: render_one(html, &vars, true),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn content(token: &str) -> Content {
        Content { token: Some(token.into()), handle: Some("alice.test".into()), ..Content::default() }
    }

    #[test]
    fn every_template_shows_its_token_in_both_parts() {
        let b = Branding { service: "pds.example".into(), confirmation_link: true };
        for t in Template::ALL {
            if t == Template::AdminMessage {
                continue;
            }
            let r = render(t, &content("ABCDE-FGHIJ"), &b);
            assert!(r.text.contains("Token: ABCDE-FGHIJ"), "{t:?}: {}", r.text);
            assert!(r.html.contains(">ABCDE-FGHIJ</code>"), "{t:?}: {}", r.html);
            assert!(!r.text.contains("{{") && !r.html.contains("{{"), "{t:?} left a placeholder");
            assert_eq!(r.subject, t.default_subject());
        }
    }

    #[test]
    fn the_confirmation_link_follows_the_setting() {
        let on = render(Template::ConfirmEmail, &content("ABCDE-FGHIJ"), &Branding { service: "s".into(), confirmation_link: true });
        assert!(on.html.contains("href=\"https://bsky.app/intent/verify-email?code=ABCDE-FGHIJ\""));
        assert!(on.text.contains("https://bsky.app/intent/verify-email?code=ABCDE-FGHIJ"));
        let off = render(Template::ConfirmEmail, &content("ABCDE-FGHIJ"), &Branding { service: "s".into(), confirmation_link: false });
        assert!(!off.html.contains("verify-email") && !off.text.contains("verify-email"));
    }

    #[test]
    fn values_are_escaped_in_html_and_admin_html_is_kept() {
        let c = Content { token: Some("<b>".into()), handle: Some("a&b".into()), ..Content::default() };
        let r = render(Template::ResetPassword, &c, &Branding { service: "s".into(), confirmation_link: false });
        assert!(r.html.contains("&lt;b&gt;") && r.html.contains("a&amp;b") && !r.html.contains("<b>a&b"));
        let admin = Content { body: Some("<p>Hello &amp; <b>welcome</b></p><p>Bye</p>".into()), subject: Some("Hi".into()), ..Content::default() };
        let r = render(Template::AdminMessage, &admin, &Branding { service: "s".into(), confirmation_link: false });
        assert_eq!(r.subject, "Hi");
        assert!(r.html.contains("<b>welcome</b>"));
        assert_eq!(r.text.trim(), "Hello & welcome\n\nBye");
    }
}
