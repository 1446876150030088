//! `com.atproto.admin.getInviteCodes` (admin): every code, newest first (`recent`) or most used
//! first (`usage`), in pages; the cursor is `<createdAt micros or use count>::<code>`.
//!
//! A query: never appends.

use projections::invites::{list_codes, CodeOrder};

use crate::create_invite_codes::{invite_code_view, InviteView};
use crate::{CommandError, Ctx};

/// One page and the cursor of the next (none when the page is not full).
pub async fn get_invite_codes(
    ctx: &Ctx,
    order: CodeOrder,
    cursor: Option<&str>,
    limit: i64,
) -> Result<(Vec<InviteView>, Option<String>), CommandError> {
    let after = match cursor {
        None => None,
        Some(c) => {
            let (k, code) = c.split_once("::").ok_or_else(|| CommandError::InvalidRequest("Malformed cursor".into()))?;
            let k = k.parse::<i64>().map_err(|_| CommandError::InvalidRequest("Malformed cursor".into()))?;
            Some((k, code.to_owned()))
        }
    };
    let rows = list_codes(ctx.log(), order, after, limit).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (code, _) in &rows {
        if let Some(v) = invite_code_view(ctx.log(), code).await? {
            out.push(v);
        }
    }
    let next = match rows.last() {
        Some((code, k)) if i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit => Some(format!("{k}::{code}")),
        _ => None,
    };
    Ok((out, next))
}
