//! JSON renderings of lexicon views that more than one route module returns (so route modules
//! need not borrow them from each other).

use serde_json::{json, Value};

use crate::event_json::rfc3339;

/// `com.atproto.server.defs#inviteCode`.
pub fn invite_code(c: &commands::InviteView) -> Value {
    let uses: Vec<Value> = c.uses.iter().map(|(did, at)| json!({ "usedBy": did, "usedAt": rfc3339(*at) })).collect();
    json!({
        "code": c.code,
        "available": c.available,
        "disabled": c.disabled,
        "forAccount": c.for_account,
        "createdBy": c.created_by,
        "createdAt": rfc3339(c.created_at),
        "uses": uses,
    })
}
