//! `rampart push ...`: the XEP-0357 push registrations in `rampart.db` — which accounts have
//! devices that get notifications, through which app servers (often a third party's, such
//! as `p2.siacs.eu`) — and their removal by an administrator. Works while the server runs:
//! it reads the registrations from the database before each notification, so a removal
//! takes effect at the next message.

use anyhow::{Result, bail};

use crate::config::Config;
use crate::setup;

fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()).unwrap_or_default()
}

/// `rampart push list [JID] [--json]`: one line per registration (account, service, node,
/// when it was enabled, whether it has publish-options), sorted by account.
pub async fn list(cfg: &Config, jid: Option<&str>, json: bool) -> Result<()> {
    let stores = setup::open_db(cfg).await?.stores();
    let accounts = match jid {
        Some(j) => vec![setup::account_jid(cfg, j)?.as_str().to_owned()],
        None => stores.push.push_accounts().await?,
    };
    let mut n = 0usize;
    for account in accounts {
        for r in stores.push.push_registrations(&account).await? {
            n += 1;
            if json {
                let v = serde_json::json!({
                    "account": account,
                    "service": r.service,
                    "node": r.node,
                    "enabled_at": fmt_ms(r.enabled_at_ms),
                    "publish_options": r.publish_options.is_some(),
                });
                println!("{v}");
            } else {
                let opts = if r.publish_options.is_some() { "publish-options" } else { "-" };
                println!("{account}\t{}\t{}\t{}\t{opts}", r.service, r.node, fmt_ms(r.enabled_at_ms));
            }
        }
    }
    if n == 0 && !json {
        println!("no push registrations");
    }
    Ok(())
}

/// `rampart push remove JID SERVICE [NODE]`: remove an account's registration with that
/// app server (one node, or every node of the service).
pub async fn remove(cfg: &Config, jid: &str, service: &str, node: Option<&str>) -> Result<()> {
    let account = setup::account_jid(cfg, jid)?;
    let service = rampart_proto::Jid::parse(service).map_err(|e| anyhow::anyhow!("{service:?} is not a valid JID: {e}"))?;
    let stores = setup::open_db(cfg).await?.stores();
    let n = stores.push.push_disable(account.as_str(), service.as_str(), node).await?;
    if n == 0 {
        bail!("{account} has no push registration with {service}{}", node.map(|n| format!(" node {n:?}")).unwrap_or_default());
    }
    println!("removed {n} push registration{} of {account}", if n == 1 { "" } else { "s" });
    Ok(())
}
