//! Which handles an account may take under this server's own domains
//! (`PDS_SERVICE_HANDLE_DOMAINS`, e.g. `[".pds.example.com"]`), following the reference PDS's
//! `src/handle/index.ts`: lowercase, valid syntax, no disallowed TLD, and under a service domain
//! a single front label of 3–18 characters that is not a reserved word.
//!
//! A syntactically fine handle outside every service domain is [`HandleError::NotServiceDomain`]:
//! the caller either refuses it (`UnsupportedDomain`) or proves it by DNS/HTTPS resolution. This
//! module never resolves anything.
//!
//! Not here: the reference's explicit-slur check (`util/explicit-slurs.ts`).

use crate::syntax::{Handle, SyntaxError};

/// Shortest front label under a service domain (`ab.test` is too short).
pub const FRONT_MIN: usize = 3;
/// Longest front label under a service domain (reference PDS 0.5.x: `front.length > 18`).
pub const FRONT_MAX: usize = 18;

/// Why a handle cannot be registered. The XRPC names (mapped in `api`, not here):
/// every `Invalid*` is `InvalidHandle`, [`HandleError::Reserved`] is `HandleNotAvailable`,
/// [`HandleError::NotServiceDomain`] is `UnsupportedDomain` when the caller cannot verify it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// `InvalidHandle`: not handle syntax at all.
    #[error("invalid handle: {0}")]
    InvalidSyntax(&'static str),
    /// `InvalidHandle`: `.alt .arpa .example .internal .invalid .local .localhost .onion`.
    #[error("handle TLD is invalid or disallowed: .{0}")]
    InvalidTld(String),
    /// `InvalidHandle`: the part before the service domain has a dot in it.
    #[error("invalid characters in handle: only one label may precede {domain}")]
    InvalidFrontLabel { domain: String },
    /// `InvalidHandle`: front label shorter than [`FRONT_MIN`].
    #[error("handle too short: {len} characters before {domain}, at least {FRONT_MIN} needed")]
    InvalidTooShort { len: usize, domain: String },
    /// `InvalidHandle`: front label longer than [`FRONT_MAX`].
    #[error("handle too long: {len} characters before {domain}, at most {FRONT_MAX} allowed")]
    InvalidTooLong { len: usize, domain: String },
    /// `HandleNotAvailable`: the front label is on the reserved list.
    #[error("reserved handle: {0}")]
    Reserved(String),
    /// `UnsupportedDomain` unless the caller verifies it by DNS/HTTPS: not under any service
    /// domain. Carries the normalised handle so the caller need not parse again.
    #[error("not a supported handle domain: {0}")]
    NotServiceDomain(Handle),
}

/// Checks a handle someone asks to register under one of `domains` (each like `.test` or
/// `.pds.example.com`; a missing leading dot is added, case is ignored). Returns the normalised
/// (lowercase) handle.
pub fn check_service_handle(handle: &str, domains: &[String]) -> Result<Handle, HandleError> {
    check_service_handle_with(handle, domains, false)
}

/// As [`check_service_handle`], but `allow_reserved` lets an administrator hand out a reserved
/// word (the reference's `allowReserved`).
pub fn check_service_handle_with(
    handle: &str,
    domains: &[String],
    allow_reserved: bool,
) -> Result<Handle, HandleError> {
    let handle = Handle::parse(&handle.to_ascii_lowercase()).map_err(|e| match e {
        SyntaxError::Handle(why) => HandleError::InvalidSyntax(why),
        _ => HandleError::InvalidSyntax("not a handle"),
    })?;
    if handle.has_disallowed_tld() {
        return Err(HandleError::InvalidTld(handle.tld().to_string()));
    }
    let Some(domain) = service_domain_of(handle.as_str(), domains) else {
        return Err(HandleError::NotServiceDomain(handle));
    };
    let front = &handle.as_str()[..handle.as_str().len() - domain.len()];
    if front.contains('.') {
        return Err(HandleError::InvalidFrontLabel { domain });
    }
    if front.len() < FRONT_MIN {
        return Err(HandleError::InvalidTooShort {
            len: front.len(),
            domain,
        });
    }
    if front.len() > FRONT_MAX {
        return Err(HandleError::InvalidTooLong {
            len: front.len(),
            domain,
        });
    }
    if !allow_reserved && is_reserved(front) {
        return Err(HandleError::Reserved(front.to_string()));
    }
    Ok(handle)
}

/// The service domain (normalised: lowercase, leading dot) that `handle` (lowercase) falls
/// under, if any. The longest match wins, so `.a.example.com` beats `.example.com`.
pub fn service_domain_of(handle: &str, domains: &[String]) -> Option<String> {
    domains
        .iter()
        .map(|d| normalise_domain(d))
        .filter(|d| d.len() > 1 && handle.len() > d.len() && handle.ends_with(d.as_str()))
        .max_by_key(String::len)
}

fn normalise_domain(domain: &str) -> String {
    let d = domain.trim().to_ascii_lowercase();
    if d.starts_with('.') {
        d
    } else {
        format!(".{d}")
    }
}

/// True if `label` (lowercase) is reserved for the service or well-known uses.
pub fn is_reserved(label: &str) -> bool {
    RESERVED.binary_search(&label).is_ok()
}

/// Reserved front labels: the reference's atproto-specific words and a large part of its
/// commonly-reserved subdomain list (only entries that are valid handle labels; the reference's
/// list of famous accounts is not reproduced). Sorted, so lookups are a binary search.
pub const RESERVED: &[&str] = &[
    "about",
    "abuse",
    "access",
    "account",
    "accounts",
    "acme",
    "activate",
    "activities",
    "activity",
    "add",
    "address",
    "adm",
    "admanager",
    "admin",
    "administration",
    "administrator",
    "administrators",
    "admins",
    "ads",
    "adsense",
    "adult",
    "advertising",
    "adwords",
    "affiliate",
    "affiliates",
    "afp",
    "ajax",
    "all",
    "alpha",
    "analysis",
    "analytics",
    "android",
    "anon",
    "anonymous",
    "answer",
    "answers",
    "api",
    "apis",
    "app",
    "appengine",
    "apps",
    "archive",
    "archives",
    "article",
    "asdf",
    "asset",
    "assets",
    "at",
    "atp",
    "auth",
    "authentication",
    "avatar",
    "backup",
    "bank",
    "banner",
    "banners",
    "base",
    "beginners",
    "beta",
    "billing",
    "bin",
    "binaries",
    "binary",
    "blog",
    "blogs",
    "bluesky",
    "board",
    "book",
    "bookmark",
    "bookmarks",
    "books",
    "bot",
    "bots",
    "bsky",
    "bug",
    "bugs",
    "business",
    "buy",
    "buzz",
    "cache",
    "calendar",
    "call",
    "campaign",
    "cancel",
    "captcha",
    "career",
    "careers",
    "cart",
    "catalog",
    "catalogs",
    "categories",
    "category",
    "cdn",
    "cgi",
    "cgi-bin",
    "changelog",
    "chart",
    "charts",
    "chat",
    "check",
    "checkout",
    "client",
    "clients",
    "code",
    "comment",
    "comments",
    "communities",
    "community",
    "company",
    "compare",
    "config",
    "configuration",
    "confirm",
    "confirmation",
    "connect",
    "contact",
    "contact-us",
    "contacts",
    "contactus",
    "content",
    "contest",
    "contribute",
    "contributor",
    "contributors",
    "copyright",
    "copyrights",
    "core",
    "corp",
    "countries",
    "country",
    "cpanel",
    "create",
    "css",
    "dashboard",
    "data",
    "default",
    "delete",
    "demo",
    "design",
    "designer",
    "desktop",
    "destroy",
    "dev",
    "devel",
    "developer",
    "developers",
    "devs",
    "diagram",
    "diary",
    "dict",
    "dictionary",
    "did",
    "dir",
    "direct-messages",
    "directory",
    "dist",
    "dmca",
    "doc",
    "docs",
    "documentation",
    "documents",
    "domain",
    "domains",
    "donate",
    "download",
    "downloads",
    "e-mail",
    "ecommerce",
    "edit",
    "editor",
    "edu",
    "education",
    "email",
    "embed",
    "employment",
    "empty",
    "enable",
    "encrypted",
    "end",
    "engine",
    "enterprise",
    "entries",
    "entry",
    "error",
    "errors",
    "eval",
    "event",
    "example",
    "exchange",
    "exit",
    "explore",
    "faq",
    "faqs",
    "favorite",
    "favorites",
    "favourite",
    "favourites",
    "feature",
    "features",
    "feed",
    "feedback",
    "feeds",
    "file",
    "files",
    "finance",
    "first",
    "folder",
    "folders",
    "following",
    "forgot",
    "form",
    "forms",
    "forum",
    "forums",
    "founder",
    "free",
    "friend",
    "friends",
    "ftp",
    "fun",
    "gadget",
    "gadgets",
    "game",
    "games",
    "general",
    "get",
    "gettingstarted",
    "gift",
    "gifts",
    "gist",
    "git",
    "github",
    "gmail",
    "golang",
    "goto",
    "gov",
    "graph",
    "graphs",
    "group",
    "groups",
    "guest",
    "guests",
    "guide",
    "guides",
    "hack",
    "hacks",
    "handle",
    "head",
    "help",
    "home",
    "homepage",
    "host",
    "hosting",
    "hostmaster",
    "hostname",
    "how-to",
    "howto",
    "html",
    "http",
    "httpd",
    "https",
    "icon",
    "icons",
    "idea",
    "ideas",
    "image",
    "images",
    "imap",
    "img",
    "inbox",
    "index",
    "info",
    "information",
    "inquiry",
    "intranet",
    "investor",
    "investors",
    "invitation",
    "invitations",
    "invite",
    "invoice",
    "invoices",
    "ios",
    "ipad",
    "iphone",
    "irc",
    "issue",
    "issues",
    "item",
    "items",
    "java",
    "javascript",
    "job",
    "jobs",
    "join",
    "json",
    "jump",
    "knowledge-base",
    "knowledgebase",
    "lab",
    "labs",
    "language",
    "languages",
    "last",
    "legal",
    "lex",
    "lexicon",
    "license",
    "licenses",
    "link",
    "links",
    "linux",
    "list",
    "lists",
    "local",
    "locale",
    "location",
    "log",
    "log-in",
    "log-out",
    "login",
    "logout",
    "logs",
    "mac",
    "macos",
    "mail",
    "mailer",
    "mailing",
    "main",
    "maintenance",
    "manage",
    "manager",
    "manual",
    "map",
    "maps",
    "marketing",
    "master",
    "media",
    "member",
    "members",
    "message",
    "messages",
    "messenger",
    "microblog",
    "mine",
    "misc",
    "mobile",
    "model",
    "models",
    "money",
    "movie",
    "movies",
    "mp3",
    "mp4",
    "msg",
    "music",
    "mysql",
    "name",
    "named",
    "navigation",
    "net",
    "network",
    "networks",
    "new",
    "news",
    "newsletter",
    "nick",
    "nickname",
    "nil",
    "none",
    "notes",
    "notification",
    "notifications",
    "notify",
    "ns1",
    "ns2",
    "nsid",
    "null",
    "oauth",
    "oauth-clients",
    "ocsp",
    "offer",
    "offers",
    "official",
    "old",
    "online",
    "openid",
    "operator",
    "option",
    "options",
    "order",
    "orders",
    "org",
    "organization",
    "organizations",
    "other",
    "overview",
    "owner",
    "owners",
    "page",
    "pages",
    "paid",
    "panel",
    "partner",
    "partners",
    "password",
    "patch",
    "pay",
    "payment",
    "pds",
    "people",
    "perl",
    "person",
    "phone",
    "photo",
    "photos",
    "php",
    "phpmyadmin",
    "pic",
    "pics",
    "picture",
    "pictures",
    "ping",
    "pixel",
    "places",
    "plan",
    "plans",
    "plc",
    "plugin",
    "plugins",
    "podcasts",
    "policies",
    "policy",
    "pop",
    "pop3",
    "popular",
    "porn",
    "portal",
    "post",
    "postfix",
    "postmaster",
    "posts",
    "premium",
    "press",
    "price",
    "pricing",
    "print",
    "privacy",
    "privacy-policy",
    "privacypolicy",
    "private",
    "prod",
    "product",
    "production",
    "products",
    "profile",
    "profiles",
    "project",
    "projects",
    "promo",
    "proxy",
    "pub",
    "public",
    "purchase",
    "put",
    "python",
    "queries",
    "query",
    "radio",
    "random",
    "ranking",
    "read",
    "reader",
    "readme",
    "recent",
    "redirect",
    "register",
    "registration",
    "release",
    "remove",
    "replies",
    "repo",
    "report",
    "reports",
    "repositories",
    "repository",
    "request",
    "requests",
    "research",
    "reset",
    "resolve",
    "resolver",
    "review",
    "root",
    "rss",
    "ruby",
    "rule",
    "sale",
    "sales",
    "sample",
    "samples",
    "sandbox",
    "save",
    "school",
    "script",
    "scripts",
    "search",
    "secure",
    "security",
    "self",
    "send",
    "server",
    "server-info",
    "server-status",
    "servers",
    "service",
    "services",
    "session",
    "sessions",
    "setting",
    "settings",
    "setup",
    "share",
    "shop",
    "shopping",
    "show",
    "sign-in",
    "sign-up",
    "signin",
    "signout",
    "signup",
    "site",
    "sitemap",
    "sites",
    "sky",
    "slash",
    "smtp",
    "soap",
    "software",
    "source",
    "spec",
    "special",
    "sql",
    "src",
    "ssh",
    "ssl",
    "staff",
    "stage",
    "staging",
    "start",
    "stat",
    "state",
    "static",
    "statistics",
    "stats",
    "status",
    "store",
    "stores",
    "stories",
    "style",
    "styles",
    "stylesheet",
    "subdomain",
    "subscribe",
    "subscription",
    "subscriptions",
    "support",
    "survey",
    "svn",
    "sync",
    "syndicated",
    "sys",
    "sysadmin",
    "system",
    "tablet",
    "tag",
    "tags",
    "talk",
    "task",
    "tasks",
    "team",
    "teams",
    "tech",
    "telnet",
    "term",
    "terms",
    "terms-of-service",
    "termsofservice",
    "test",
    "testing",
    "tests",
    "text",
    "theme",
    "themes",
    "thread",
    "threads",
    "ticket",
    "tickets",
    "tid",
    "tmp",
    "todo",
    "tool",
    "toolbar",
    "tools",
    "top",
    "topic",
    "topics",
    "tos",
    "tour",
    "translate",
    "translation",
    "translations",
    "trends",
    "tutorial",
    "twitter",
    "txt",
    "unfollow",
    "unsubscribe",
    "update",
    "updates",
    "upgrade",
    "upload",
    "uploads",
    "url",
    "usage",
    "user",
    "username",
    "usernames",
    "users",
    "uuid",
    "validation",
    "version",
    "video",
    "videos",
    "visitor",
    "visitors",
    "voice",
    "volunteer",
    "watch",
    "weather",
    "web",
    "webhook",
    "webhooks",
    "webmail",
    "webmaster",
    "webmasters",
    "website",
    "websites",
    "welcome",
    "whois",
    "widget",
    "widgets",
    "wifi",
    "wiki",
    "wikis",
    "windows",
    "word",
    "work",
    "works",
    "workshop",
    "www",
    "xml",
    "xmpp",
    "xrpc",
    "xxx",
    "yaml",
    "year",
    "yml",
    "you",
    "yourdomain",
    "yourname",
    "yoursite",
    "yourusername",
];

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// `handle | domains (comma-separated) | expected`, where expected is `ok <normalised>`,
    /// or the error variant's name.
    const CASES: &str = "
        alice.test                   | .test                    | ok alice.test
        ALICE.Test                   | .test                    | ok alice.test
        alice.test                   | test                     | ok alice.test
        alice.test                   | .TEST                    | ok alice.test
        abc.test                     | .test                    | ok abc.test
        ab.test                      | .test                    | InvalidTooShort
        a.test                       | .test                    | InvalidTooShort
        abcdefghijklmnopqr.test      | .test                    | ok abcdefghijklmnopqr.test
        abcdefghijklmnopqrs.test     | .test                    | InvalidTooLong
        a-b-c.test                   | .test                    | ok a-b-c.test
        123.test                     | .test                    | ok 123.test
        bob.alice.test               | .test                    | InvalidFrontLabel
        admin.test                   | .test                    | Reserved
        ADMIN.test                   | .test                    | Reserved
        support.pds.example.com      | .pds.example.com         | Reserved
        alice.pds.example            | .pds.example             | InvalidTld
        support.pds.dev.com          | .pds.dev.com             | Reserved
        www.pds.dev.com              | .pds.dev.com             | Reserved
        bsky.test                    | .test                    | Reserved
        admins1.test                 | .test                    | ok admins1.test
        alice.pds.dev.com            | .pds.dev.com             | ok alice.pds.dev.com
        alice.pds.dev.com            | .test,.pds.dev.com       | ok alice.pds.dev.com
        alice.pds.dev.com            | .test                    | NotServiceDomain
        alice.evilpds.dev.com        | .pds.dev.com             | NotServiceDomain
        alice.evilpds.dev.com        | pds.dev.com              | NotServiceDomain
        pds.dev.com                  | .pds.dev.com             | NotServiceDomain
        alice.com                    | .test                    | NotServiceDomain
        alice.com                    |                          | NotServiceDomain
        ab.example.org               | .test                    | NotServiceDomain
        alice.dev.com                | .b.dev.com,.dev.com      | ok alice.dev.com
        x.b.dev.com                  | .b.dev.com,.dev.com      | InvalidTooShort
        alice.local                  | .local                   | InvalidTld
        alice.localhost              | .test                    | InvalidTld
        alice.onion                  | .test                    | InvalidTld
        alice.example                | .test                    | InvalidTld
        alice                        | .test                    | InvalidSyntax
        -alice.test                  | .test                    | InvalidSyntax
        alice-.test                  | .test                    | InvalidSyntax
        al_ice.test                  | .test                    | InvalidSyntax
        alice..test                  | .test                    | InvalidSyntax
        alice.test.                  | .test                    | InvalidSyntax
        alice.123                    | .123                     | InvalidSyntax
        ålice.test                   | .test                    | InvalidSyntax
        @alice.test                  | .test                    | InvalidSyntax
    ";

    #[track_caller]
    fn check(handle: &str, domains: &[String], expected: &str) {
        let got = match check_service_handle(handle, domains) {
            Ok(h) => format!("ok {h}"),
            Err(e) => format!("{e:?}")
                .split(['(', ' '])
                .next()
                .unwrap()
                .to_string(),
        };
        assert_eq!(got, expected, "{handle} under {domains:?}");
    }

    #[test]
    fn service_handle_table() {
        let mut n = 0;
        for line in CASES.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            let domains: Vec<String> = cols[1]
                .split(',')
                .filter(|d| !d.is_empty())
                .map(String::from)
                .collect();
            check(cols[0], &domains, cols[2]);
            n += 1;
        }
        assert!(n >= 40, "only {n} cases read");
    }

    #[test]
    fn allow_reserved_lets_admin_through() {
        let d = vec![".test".to_string()];
        assert!(
            matches!(check_service_handle("admin.test", &d), Err(HandleError::Reserved(w)) if w == "admin")
        );
        assert_eq!(
            check_service_handle_with("admin.test", &d, true)
                .unwrap()
                .as_str(),
            "admin.test"
        );
        // the other rules still hold
        assert!(check_service_handle_with("ab.test", &d, true).is_err());
    }

    #[test]
    fn not_service_domain_carries_the_normalised_handle() {
        let d = vec![".test".to_string()];
        match check_service_handle("Alice.Example.COM", &d) {
            Err(HandleError::NotServiceDomain(h)) => assert_eq!(h.as_str(), "alice.example.com"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reserved_list_is_sorted_unique_lowercase_labels() {
        assert!(RESERVED.len() > 500, "{}", RESERVED.len());
        for pair in RESERVED.windows(2) {
            assert!(pair[0] < pair[1], "not sorted/unique at {pair:?}");
        }
        for w in RESERVED {
            assert!(
                !w.is_empty()
                    && w.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{w}"
            );
        }
        // `atproto` itself is not on the reference's list (it reserves `at`, `atp`, `bsky`, ...)
        for w in [
            "about", "account", "admin", "api", "app", "bsky", "blog", "help", "login", "mail",
            "root", "security", "support", "www", "pds", "did", "handle", "cgi-bin",
        ] {
            assert!(is_reserved(w), "{w}");
        }
        assert!(!is_reserved("alice"));
    }
}
