//! OAuth scopes: `atproto` (required), the transitional `transition:generic`,
//! `transition:chat.bsky`, `transition:email`, and the granular permissions of `permission.md`
//! (`repo:`, `blob:`, `rpc:`, `account:`, `identity:`; positional or `?key=value` forms,
//! percent-encoded values). `include:` (permission sets) is refused with
//! [`ScopeError::IncludeUnsupported`] — permission-set resolution is not built. Unknown scope
//! tokens are dropped, as the reference does.
//!
//! Transitional mapping (reference `ScopePermissionsTransition`): `transition:generic` = every
//! repo action, every blob, any rpc except `chat.bsky.*`; `transition:chat.bsky` = `chat.bsky.*`
//! rpc; `transition:email` = `account:email` read.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("the scope must include atproto")]
    MissingAtproto,
    #[error("include: scopes (permission sets) are not supported by this server: {0}")]
    IncludeUnsupported(String),
    #[error("invalid scope {0:?}: {1}")]
    Invalid(String, &'static str),
    #[error("duplicate scope {0:?}")]
    Duplicate(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepoAction {
    Create,
    Update,
    Delete,
}

impl RepoAction {
    pub fn parse(s: &str) -> Option<RepoAction> {
        match s {
            "create" => Some(RepoAction::Create),
            "update" => Some(RepoAction::Update),
            "delete" => Some(RepoAction::Delete),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    Atproto,
    TransitionGeneric,
    TransitionChat,
    TransitionEmail,
    /// Collections (`*` = all) and actions.
    Repo { collections: Vec<String>, actions: Vec<RepoAction> },
    Blob { accept: Vec<String> },
    Rpc { lxm: Vec<String>, aud: String },
    /// attr ∈ email | repo | status; manage ⊇ read.
    Account { attr: String, manage: bool },
    /// `handle` or `*`.
    Identity { attr: String },
}

/// A parsed scope: its tokens (in order, as given) and their permissions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes {
    pub tokens: Vec<String>,
    pub permissions: Vec<Permission>,
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn is_nsid_or_star(s: &str) -> bool {
    s == "*" || crate::syntax::is_valid_nsid(s)
}

fn is_mime_pattern(s: &str) -> bool {
    let Some((a, b)) = s.split_once('/') else { return false };
    let tok = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+*".contains(&c));
    tok(a) && tok(b) && (a != "*" || b == "*")
}

/// One granular token → its permission; `Ok(None)` for a token this server does not know.
pub fn parse_token(token: &str) -> Result<Option<Permission>, ScopeError> {
    let bad = |why: &'static str| ScopeError::Invalid(token.to_owned(), why);
    match token {
        "atproto" => return Ok(Some(Permission::Atproto)),
        "transition:generic" => return Ok(Some(Permission::TransitionGeneric)),
        "transition:chat.bsky" => return Ok(Some(Permission::TransitionChat)),
        "transition:email" => return Ok(Some(Permission::TransitionEmail)),
        _ => {}
    }
    let (head, query) = match token.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (token, None),
    };
    let (resource, positional) = match head.split_once(':') {
        Some((r, p)) => (r, Some(percent_decode(p).ok_or_else(|| bad("bad percent-encoding"))?)),
        None => (head, None),
    };
    if resource == "include" {
        return Err(ScopeError::IncludeUnsupported(token.to_owned()));
    }
    let positional_name = match resource {
        "repo" => "collection",
        "blob" => "accept",
        "rpc" => "lxm",
        "account" | "identity" => "attr",
        _ => return Ok(None),
    };
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(q) = query {
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').ok_or_else(|| bad("parameter without a value"))?;
            let v = percent_decode(v).ok_or_else(|| bad("bad percent-encoding"))?;
            params.push((k.to_owned(), v));
        }
    }
    if let Some(p) = &positional {
        if params.iter().any(|(k, _)| k == positional_name) {
            return Err(bad("positional parameter also given by name"));
        }
        params.push((positional_name.to_owned(), p.clone()));
    }
    let all = |k: &str| params.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let allowed: &[&str] = match resource {
        "repo" => &["collection", "action"],
        "blob" => &["accept"],
        "rpc" => &["lxm", "aud"],
        "account" => &["attr", "action"],
        _ => &["attr"],
    };
    if params.iter().any(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(bad("unknown parameter"));
    }
    let one = |k: &str| -> Result<Option<String>, ScopeError> {
        let v = all(k);
        if v.len() > 1 {
            return Err(bad("parameter repeated"));
        }
        Ok(v.into_iter().next())
    };
    Ok(Some(match resource {
        "repo" => {
            let collections = all("collection");
            if collections.is_empty() || !collections.iter().all(|c| is_nsid_or_star(c)) {
                return Err(bad("collection must be NSIDs or *"));
            }
            let mut actions = Vec::new();
            for a in all("action") {
                let a = RepoAction::parse(&a).ok_or_else(|| bad("action must be create, update or delete"))?;
                if !actions.contains(&a) {
                    actions.push(a);
                }
            }
            if actions.is_empty() {
                actions = vec![RepoAction::Create, RepoAction::Update, RepoAction::Delete];
            }
            Permission::Repo { collections, actions }
        }
        "blob" => {
            let accept = all("accept");
            if accept.is_empty() || !accept.iter().all(|a| is_mime_pattern(a)) {
                return Err(bad("accept must be MIME types or patterns"));
            }
            Permission::Blob { accept }
        }
        "rpc" => {
            let lxm = all("lxm");
            let aud = one("aud")?.ok_or_else(|| bad("aud is required"))?;
            if lxm.is_empty() || !lxm.iter().all(|l| is_nsid_or_star(l)) {
                return Err(bad("lxm must be NSIDs or *"));
            }
            if aud == "*" && lxm.iter().any(|l| l == "*") {
                return Err(bad("lxm and aud cannot both be *"));
            }
            if aud != "*" {
                let (did, frag) = aud.split_once('#').ok_or_else(|| bad("aud must be a DID service reference"))?;
                if !crate::syntax::is_valid_did(did) || frag.is_empty() {
                    return Err(bad("aud must be a DID service reference"));
                }
            }
            Permission::Rpc { lxm, aud }
        }
        "account" => {
            let attr = one("attr")?.ok_or_else(|| bad("attr is required"))?;
            if !matches!(attr.as_str(), "email" | "repo" | "status") {
                return Err(bad("attr must be email, repo or status"));
            }
            let manage = match one("action")?.as_deref() {
                None | Some("read") => false,
                Some("manage") => true,
                Some(_) => return Err(bad("action must be read or manage")),
            };
            Permission::Account { attr, manage }
        }
        _ => {
            let attr = one("attr")?.ok_or_else(|| bad("attr is required"))?;
            if attr != "handle" && attr != "*" {
                return Err(bad("attr must be handle or *"));
            }
            Permission::Identity { attr }
        }
    }))
}

/// Parses a space-separated scope. Unknown tokens are dropped; `atproto` is required.
pub fn parse(scope: &str) -> Result<Scopes, ScopeError> {
    let mut out = Scopes::default();
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        if out.tokens.iter().any(|t| t == token) {
            return Err(ScopeError::Duplicate(token.to_owned()));
        }
        if let Some(p) = parse_token(token)? {
            out.tokens.push(token.to_owned());
            out.permissions.push(p);
        }
    }
    if !out.permissions.contains(&Permission::Atproto) {
        return Err(ScopeError::MissingAtproto);
    }
    Ok(out)
}

fn mime_matches(pattern: &str, mime: &str) -> bool {
    if pattern == "*/*" {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(prefix) => mime.split_once('/').is_some_and(|(t, _)| t.eq_ignore_ascii_case(prefix)),
        None => pattern.eq_ignore_ascii_case(mime),
    }
}

impl Scopes {
    pub fn as_string(&self) -> String {
        self.tokens.join(" ")
    }

    fn has(&self, p: &Permission) -> bool {
        self.permissions.contains(p)
    }

    pub fn allows_repo(&self, collection: &str, action: RepoAction) -> bool {
        self.has(&Permission::TransitionGeneric)
            || self.permissions.iter().any(|p| match p {
                Permission::Repo { collections, actions } => {
                    actions.contains(&action) && collections.iter().any(|c| c == "*" || c == collection)
                }
                _ => false,
            })
    }

    pub fn allows_blob(&self, mime: &str) -> bool {
        self.has(&Permission::TransitionGeneric)
            || self.permissions.iter().any(|p| match p {
                Permission::Blob { accept } => accept.iter().any(|a| mime_matches(a, mime)),
                _ => false,
            })
    }

    /// A call of `lxm` for the service `aud` (`did#fragment`).
    pub fn allows_rpc(&self, lxm: &str, aud: &str) -> bool {
        let chat = lxm.starts_with("chat.bsky.");
        (self.has(&Permission::TransitionGeneric) && !chat)
            || (self.has(&Permission::TransitionChat) && chat)
            || self.permissions.iter().any(|p| match p {
                Permission::Rpc { lxm: l, aud: a } => (a == "*" || a == aud) && l.iter().any(|x| x == "*" || x == lxm),
                _ => false,
            })
    }

    pub fn allows_account(&self, attr: &str, manage: bool) -> bool {
        (attr == "email" && !manage && self.has(&Permission::TransitionEmail))
            || self.permissions.iter().any(|p| match p {
                Permission::Account { attr: a, manage: m } => a == attr && (*m || !manage),
                _ => false,
            })
    }

    pub fn allows_identity(&self, attr: &str) -> bool {
        self.permissions.iter().any(|p| match p {
            Permission::Identity { attr: a } => a == "*" || a == attr,
            _ => false,
        })
    }

    /// Whether every token of `other` is one of ours (consent may only narrow a request).
    pub fn contains_all(&self, other: &Scopes) -> bool {
        other.tokens.iter().all(|t| self.tokens.contains(t))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(token: &str, expected: Result<Option<Permission>, ScopeError>) {
        assert_eq!(parse_token(token), expected, "{token}");
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn tokens() {
        use RepoAction::*;
        check("atproto", Ok(Some(Permission::Atproto)));
        check("transition:generic", Ok(Some(Permission::TransitionGeneric)));
        check("openid", Ok(None));
        check("repo:app.bsky.feed.post", Ok(Some(Permission::Repo { collections: s(&["app.bsky.feed.post"]), actions: vec![Create, Update, Delete] })));
        check("repo:*?action=delete", Ok(Some(Permission::Repo { collections: s(&["*"]), actions: vec![Delete] })));
        check("repo?collection=a.b.c&collection=d.e.f&action=create", Ok(Some(Permission::Repo { collections: s(&["a.b.c", "d.e.f"]), actions: vec![Create] })));
        check("repo:a.b.c?collection=d.e.f", Err(ScopeError::Invalid("repo:a.b.c?collection=d.e.f".into(), "positional parameter also given by name")));
        check("repo:a.b.c?action=destroy", Err(ScopeError::Invalid("repo:a.b.c?action=destroy".into(), "action must be create, update or delete")));
        check("repo:com.example.*", Err(ScopeError::Invalid("repo:com.example.*".into(), "collection must be NSIDs or *")));
        check("blob:*/*", Ok(Some(Permission::Blob { accept: s(&["*/*"]) })));
        check("blob?accept=video/*&accept=text/html", Ok(Some(Permission::Blob { accept: s(&["video/*", "text/html"]) })));
        check("rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview", Ok(Some(Permission::Rpc { lxm: s(&["app.bsky.feed.getTimeline"]), aud: "did:web:api.bsky.app#bsky_appview".into() })));
        check("rpc:*?aud=*", Err(ScopeError::Invalid("rpc:*?aud=*".into(), "lxm and aud cannot both be *")));
        check("rpc:a.b.c", Err(ScopeError::Invalid("rpc:a.b.c".into(), "aud is required")));
        check("account:email", Ok(Some(Permission::Account { attr: "email".into(), manage: false })));
        check("account:repo?action=manage", Ok(Some(Permission::Account { attr: "repo".into(), manage: true })));
        check("account:*", Err(ScopeError::Invalid("account:*".into(), "attr must be email, repo or status")));
        check("identity:handle", Ok(Some(Permission::Identity { attr: "handle".into() })));
        check("include:com.example.authBasic", Err(ScopeError::IncludeUnsupported("include:com.example.authBasic".into())));
    }

    #[test]
    fn permissions() {
        let g = parse("atproto transition:generic").unwrap();
        assert!(g.allows_repo("app.bsky.feed.post", RepoAction::Delete));
        assert!(g.allows_rpc("app.bsky.feed.getTimeline", "did:web:x#y"));
        assert!(!g.allows_rpc("chat.bsky.convo.listConvos", "did:web:x#y"));
        assert!(!g.allows_account("email", false));
        let n = parse("atproto repo:app.bsky.feed.like?action=create blob:image/* account:email").unwrap();
        assert!(n.allows_repo("app.bsky.feed.like", RepoAction::Create));
        assert!(!n.allows_repo("app.bsky.feed.like", RepoAction::Delete));
        assert!(!n.allows_repo("app.bsky.feed.post", RepoAction::Create));
        assert!(n.allows_blob("image/png"));
        assert!(!n.allows_blob("video/mp4"));
        assert!(n.allows_account("email", false));
        assert!(!n.allows_account("email", true));
        assert_eq!(parse("transition:generic"), Err(ScopeError::MissingAtproto));
        assert_eq!(parse("atproto atproto"), Err(ScopeError::Duplicate("atproto".into())));
        assert_eq!(parse("atproto openid").unwrap().as_string(), "atproto");
        assert!(g.contains_all(&parse("atproto").unwrap()));
        assert!(!parse("atproto").unwrap().contains_all(&g));
    }
}
