//! `pds admin …`: the reference `pdsadmin` jobs against a RUNNING server over HTTP, with the
//! admin password (`PDS_ADMIN_PASSWORD`, else the data directory's `secrets.env`, exactly as the
//! server loads it). `--url` defaults to `http://localhost:<PDS_PORT>`. Output is a table, or JSON
//! with `--json`; a failure prints `pds admin: <error name>: <message>` and exits 1.

use std::io::Write;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::config::{Config, ProcessEnv};

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Accounts on this PDS.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Invite codes.
    #[command(subcommand)]
    Invite(InviteCommand),
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create an account (with a one-use invite code made for it); prints its DID and password.
    Create {
        email: String,
        handle: String,
        /// Default: a random password, printed once.
        #[arg(long)]
        password: Option<String>,
    },
    /// Every account: DID, handle, email, status.
    List,
    /// One account (by DID).
    Info { did: String },
    /// Take an account down (`#account{takendown}`; its sessions end, logins are refused).
    Takedown {
        did: String,
        /// The moderation reference recorded with the takedown.
        #[arg(long = "ref")]
        reference: Option<String>,
    },
    /// Lift a takedown.
    Untakedown { did: String },
    /// Delete an account and erase its events (only the `#account{deleted}` tombstone stays).
    Delete { did: String },
    /// Set a new random password (printed once); every session ends.
    ResetPassword { did: String },
}

#[derive(Subcommand, Debug)]
pub enum InviteCommand {
    /// Create an invite code.
    Create {
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
}

/// Where and how to reach the server.
pub struct Target {
    pub url: String,
    pub password: String,
}

/// Failure of an admin call: the XRPC error name (or "Connection") and a message.
#[derive(Debug)]
pub struct AdminError {
    pub name: String,
    pub message: String,
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

fn err(name: &str, message: impl Into<String>) -> AdminError {
    AdminError { name: name.to_owned(), message: message.into() }
}

/// Runs one `pds admin` command; the exit code.
pub fn run(cmd: AdminCommand, url: Option<String>, as_json: bool, out: &mut dyn Write, errw: &mut dyn Write) -> u8 {
    let result = (|| {
        let config = Config::load(&ProcessEnv).map_err(|e| err("Config", e.to_string()))?;
        let target = Target {
            url: url.unwrap_or_else(|| format!("http://localhost:{}", config.port)).trim_end_matches('/').to_owned(),
            password: config.secrets.admin_password.clone(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err("Runtime", e.to_string()))?;
        rt.block_on(execute(&target, cmd))
    })();
    match result {
        Ok(output) => {
            let text = if as_json {
                serde_json::to_string_pretty(&output.json).unwrap_or_else(|_| output.json.to_string())
            } else {
                output.table
            };
            let _ = writeln!(out, "{}", text.trim_end());
            0
        }
        Err(e) => {
            let _ = writeln!(errw, "pds admin: {e}");
            1
        }
    }
}

struct Output {
    json: Value,
    table: String,
}

fn random_password() -> String {
    use rand::RngCore as _;
    let mut buf = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

async fn call(t: &Target, method: reqwest::Method, nsid_and_query: &str, body: Option<Value>) -> Result<Value, AdminError> {
    let url = format!("{}/xrpc/{nsid_and_query}", t.url);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| err("Client", e.to_string()))?;
    let mut req = client.request(method, &url).basic_auth("admin", Some(&t.password));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| err("Connection", format!("{url}: {e}")))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| err("Connection", format!("{url}: {e}")))?;
    let value: Value = if text.trim().is_empty() { json!({}) } else { serde_json::from_str(&text).unwrap_or(json!({ "message": text })) };
    if status.is_success() {
        Ok(value)
    } else {
        let name = value["error"].as_str().unwrap_or("HttpError").to_owned();
        let message = value["message"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned);
        Err(AdminError { name, message })
    }
}

async fn get(t: &Target, path: &str) -> Result<Value, AdminError> {
    call(t, reqwest::Method::GET, path, None).await
}

async fn post(t: &Target, nsid: &str, body: Value) -> Result<Value, AdminError> {
    call(t, reqwest::Method::POST, nsid, Some(body)).await
}

fn repo_ref(did: &str) -> Value {
    json!({ "$type": "com.atproto.admin.defs#repoRef", "did": did })
}

fn rows(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

async fn execute(t: &Target, cmd: AdminCommand) -> Result<Output, AdminError> {
    match cmd {
        AdminCommand::Invite(InviteCommand::Create { uses }) => {
            let r = post(t, "com.atproto.server.createInviteCode", json!({ "useCount": uses })).await?;
            Ok(Output { table: s(&r["code"]), json: r })
        }
        AdminCommand::Account(a) => account(t, a).await,
    }
}

async fn account(t: &Target, cmd: AccountCommand) -> Result<Output, AdminError> {
    match cmd {
        AccountCommand::Create { email, handle, password } => {
            let password = password.unwrap_or_else(random_password);
            let code = post(t, "com.atproto.server.createInviteCode", json!({ "useCount": 1 })).await?;
            let created = post(
                t,
                "com.atproto.server.createAccount",
                json!({ "email": email, "handle": handle, "password": password, "inviteCode": code["code"] }),
            )
            .await?;
            let out = json!({ "did": created["did"], "handle": created["handle"], "password": password });
            let table = format!("Account created.\nDID       {}\nHandle    {}\nPassword  {password}", s(&out["did"]), s(&out["handle"]));
            Ok(Output { json: out, table })
        }
        AccountCommand::List => {
            let mut dids = Vec::new();
            let mut cursor = String::new();
            loop {
                let page = get(t, &format!("org.eventpds.admin.listStreams?kind=account&limit=1000&cursor={cursor}")).await?;
                let streams = page["streams"].as_array().cloned().unwrap_or_default();
                dids.extend(streams.iter().filter_map(|st| st["stream"].as_str()?.strip_prefix("account/").map(str::to_owned)));
                match page["cursor"].as_str() {
                    Some(c) if !streams.is_empty() => cursor = c.to_owned(),
                    _ => break,
                }
            }
            let mut infos = Vec::new();
            for chunk in dids.chunks(100) {
                let query: Vec<String> = chunk.iter().map(|d| format!("dids={d}")).collect();
                let r = get(t, &format!("com.atproto.admin.getAccountInfos?{}", query.join("&"))).await?;
                infos.extend(r["infos"].as_array().cloned().unwrap_or_default());
            }
            let mut table = Vec::new();
            for i in &infos {
                let did = s(&i["did"]);
                let st = get(t, &format!("com.atproto.admin.getSubjectStatus?did={did}")).await?;
                let status = if st["takedown"]["applied"] == json!(true) {
                    "takendown"
                } else if i.get("deactivatedAt").is_some() {
                    "deactivated"
                } else {
                    "active"
                };
                table.push(vec![s(&i["handle"]), s(&i["email"]), did, status.to_owned()]);
            }
            Ok(Output { table: rows(&["Handle", "Email", "DID", "Status"], &table), json: json!({ "accounts": infos }) })
        }
        AccountCommand::Info { did } => {
            let r = get(t, &format!("com.atproto.admin.getAccountInfo?did={did}")).await?;
            let mut lines = Vec::new();
            if let Some(m) = r.as_object() {
                for (k, v) in m {
                    lines.push(vec![k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)]);
                }
            }
            Ok(Output { table: rows(&["Field", "Value"], &lines), json: r })
        }
        AccountCommand::Takedown { did, reference } => {
            let reference = reference.unwrap_or_else(|| format!("pds-admin-{}", now_secs()));
            let r = post(
                t,
                "com.atproto.admin.updateSubjectStatus",
                json!({ "subject": repo_ref(&did), "takedown": { "applied": true, "ref": reference } }),
            )
            .await?;
            Ok(Output { table: format!("{did} taken down (ref {reference})"), json: r })
        }
        AccountCommand::Untakedown { did } => {
            let r = post(
                t,
                "com.atproto.admin.updateSubjectStatus",
                json!({ "subject": repo_ref(&did), "takedown": { "applied": false } }),
            )
            .await?;
            Ok(Output { table: format!("{did} takedown lifted"), json: r })
        }
        AccountCommand::Delete { did } => {
            post(t, "com.atproto.admin.deleteAccount", json!({ "did": did })).await?;
            Ok(Output { table: format!("{did} deleted"), json: json!({ "did": did, "deleted": true }) })
        }
        AccountCommand::ResetPassword { did } => {
            let password = random_password();
            post(t, "com.atproto.admin.updateAccountPassword", json!({ "did": did, "password": password })).await?;
            Ok(Output { table: format!("Password for {did} reset to: {password}"), json: json!({ "did": did, "password": password }) })
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
