//! Conversions that keep two representations of the same data in step:
//!
//! - **XEP-0398** (`urn:xmpp:pep-vcard-conversion:0`): a XEP-0084 avatar published over PEP
//!   (data + metadata nodes) becomes the vCard's `PHOTO`, and a vCard `PHOTO` set with
//!   vcard-temp becomes a XEP-0084 avatar; the account's presence carries the XEP-0153
//!   `vcard-temp:x:update` hash. Loops are avoided by comparing hashes.
//! - **XEP-0402 `#compat`**: PEP-native bookmarks (`urn:xmpp:bookmarks:1`, one item per room)
//!   are mirrored to XEP-0049 private storage (`storage:bookmarks`, XEP-0048) and back.

use base64::Engine;
use rampart_proto::pubsub::{Event, Item};
use rampart_proto::{Element, Jid, StanzaError, ns};
use rampart_store::{PepItem, PrivateItem};
use sha1::Digest as _;

use super::config::NodeConfig;
use super::{MAX_NODES, notify};
use crate::router::{Router, SessionCtx};

pub const AVATAR_DATA: &str = "urn:xmpp:avatar:data";
pub const AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";
pub const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
pub const LEGACY_BOOKMARKS: &str = "storage:bookmarks";
pub const VCARD_UPDATE: &str = "vcard-temp:x:update";

fn sha1_hex(data: &[u8]) -> String {
    sha1::Sha1::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Store an item the server derived (already judged: it comes from a gated payload) and
/// notify as for a publish.
async fn derived_publish(router: &Router, publisher: &Jid, node: &str, id: &str, payload: Element) {
    let owner = publisher.bare();
    let cfg = match super::node_config(router, owner.as_str(), node).await {
        Ok(Some(c)) => c,
        Ok(None) => NodeConfig::default_for(node),
        Err(_) => return,
    };
    if router.stores.pep.create_node(owner.as_str(), node, &cfg.to_stored(), MAX_NODES).await.is_err() {
        return;
    }
    let item = PepItem { id: id.to_owned(), xml: payload.to_xml_string(), publisher: publisher.as_str().to_owned(), published_at_ms: crate::pipeline::now_ms() };
    if let Err(e) = router.stores.pep.publish(owner.as_str(), node, &item, cfg.kept_items()).await {
        tracing::error!(error = %e, "PEP store failed");
        return;
    }
    let it = Item { id: Some(id.to_owned()), publisher: Some(publisher.as_str().to_owned()), payload: Some(payload) };
    notify::broadcast(router, &owner, node, &cfg, Event::Items { node: node.to_owned(), items: vec![it], retracts: vec![] }).await;
}

/// The current avatar hash (the metadata item id) of an account, if it has one.
pub async fn avatar_hash(router: &Router, owner: &str) -> Option<String> {
    let items = router.stores.pep.items(owner, AVATAR_METADATA, Some(1)).await.ok()?;
    let i = items.first()?;
    let meta = crate::c2s::parse_stored(&i.xml)?;
    meta.child("info", AVATAR_METADATA)?;
    Some(i.id.clone())
}

/// After a publish by `ctx`'s owner: convert what needs converting.
pub async fn published(router: &Router, ctx: &SessionCtx, node: &str, id: &str, payload: &Element) {
    match node {
        AVATAR_METADATA => avatar_to_vcard(router, ctx, id, payload).await,
        BOOKMARKS => sync_bookmarks_to_private(router, ctx.jid.bare_str()).await,
        _ => {}
    }
}

/// XEP-0398 §3: the avatar becomes the vCard's PHOTO (or the PHOTO goes, for an empty
/// metadata item).
async fn avatar_to_vcard(router: &Router, ctx: &SessionCtx, id: &str, metadata: &Element) {
    let owner = ctx.jid.bare_str();
    let stored = router.stores.vcards.vcard(owner).await.ok().flatten().and_then(|x| crate::c2s::parse_stored(&x));
    let mut vcard = stored.unwrap_or_else(|| Element::new("vCard", ns::VCARD));
    let current = vcard
        .child("PHOTO", ns::VCARD)
        .and_then(|p| p.child("BINVAL", ns::VCARD))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.text().split_whitespace().collect::<String>()).ok())
        .map(|d| sha1_hex(&d));
    let Some(info) = metadata.elements().find(|e| e.is("info", AVATAR_METADATA) && e.attr("url").is_none()) else {
        if current.is_some() {
            vcard.remove_children("PHOTO", ns::VCARD);
            let _ = router.stores.vcards.set_vcard(owner, &vcard.to_xml_string()).await;
        }
        return;
    };
    if current.as_deref() == Some(id) {
        return;
    }
    let Ok(data) = router.stores.pep.items_by_id(owner, AVATAR_DATA, &[id.to_owned()]).await else { return };
    let Some(data) = data.first().and_then(|d| crate::c2s::parse_stored(&d.xml)) else { return };
    let mime = info.attr("type").unwrap_or("image/png").to_owned();
    vcard.remove_children("PHOTO", ns::VCARD);
    vcard = vcard.with_child(
        Element::new("PHOTO", ns::VCARD)
            .with_child(Element::new("TYPE", ns::VCARD).with_text(mime))
            .with_child(Element::new("BINVAL", ns::VCARD).with_text(data.text())),
    );
    if let Err(e) = router.stores.vcards.set_vcard(owner, &vcard.to_xml_string()).await {
        tracing::error!(error = %e, "vCard store failed");
    }
}

/// XEP-0398 §4: a vCard with a PHOTO was stored: publish it as the XEP-0084 avatar unless it
/// already is. (The vCard itself passed the guard.)
pub async fn vcard_changed(router: &Router, ctx: &SessionCtx, vcard: &Element) {
    let owner = ctx.jid.bare_str();
    let Some(photo) = vcard.child("PHOTO", ns::VCARD) else { return };
    let Some(b64) = photo.child("BINVAL", ns::VCARD).map(|b| b.text().split_whitespace().collect::<String>()) else { return };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) else { return };
    let hash = sha1_hex(&bytes);
    if avatar_hash(router, owner).await.as_deref() == Some(hash.as_str()) {
        return;
    }
    let mime = photo.child("TYPE", ns::VCARD).map(Element::text).filter(|t| !t.is_empty()).unwrap_or_else(|| "image/png".into());
    derived_publish(router, &ctx.jid, AVATAR_DATA, &hash, Element::new("data", AVATAR_DATA).with_text(b64)).await;
    let meta = Element::new("metadata", AVATAR_METADATA).with_child(
        Element::new("info", AVATAR_METADATA)
            .with_attr("id", hash.clone())
            .with_attr("bytes", bytes.len().to_string())
            .with_attr("type", mime),
    );
    derived_publish(router, &ctx.jid, AVATAR_METADATA, &hash, meta).await;
}

/// XEP-0153 via XEP-0398 §5: put the avatar hash in a presence the account broadcasts
/// (replacing the client's `vcard-temp:x:update`, which may not know it yet).
pub async fn decorate_presence(router: &Router, owner: &str, presence: &mut Element) {
    if let Some(hash) = avatar_hash(router, owner).await {
        presence.remove_children("x", VCARD_UPDATE);
        presence.children.push(rampart_xml::Node::Element(
            Element::new("x", VCARD_UPDATE).with_child(Element::new("photo", VCARD_UPDATE).with_text(hash)),
        ));
    }
}

/// XEP-0402 §3 compat: write the PEP bookmarks as the XEP-0048 `storage:bookmarks` fragment.
pub async fn sync_bookmarks_to_private(router: &Router, owner: &str) {
    let Ok(items) = router.stores.pep.items(owner, BOOKMARKS, None).await else { return };
    let mut storage = Element::new("storage", LEGACY_BOOKMARKS);
    for i in items.iter().rev() {
        let Some(c) = crate::c2s::parse_stored(&i.xml).filter(|c| c.is("conference", BOOKMARKS)) else { continue };
        let mut conf = Element::new("conference", LEGACY_BOOKMARKS).with_attr("jid", i.id.clone());
        if let Some(n) = c.attr("name") {
            conf.set_attr("name", n);
        }
        conf.set_attr("autojoin", if matches!(c.attr("autojoin"), Some("true" | "1")) { "true" } else { "false" });
        for child in ["nick", "password"] {
            if let Some(x) = c.child(child, BOOKMARKS) {
                conf = conf.with_child(Element::new(child, LEGACY_BOOKMARKS).with_text(x.text()));
            }
        }
        storage = storage.with_child(conf);
    }
    let item = PrivateItem { namespace: LEGACY_BOOKMARKS.into(), name: "storage".into(), xml: storage.to_xml_string() };
    if let Err(e) = router.stores.private.private_set(owner, &[item], crate::modules::private::MAX_ITEMS).await {
        tracing::warn!(error = %e, owner, "could not mirror bookmarks to private storage");
    }
}

/// XEP-0402 §3 compat, the other way: a client stored `storage:bookmarks` in private XML; the
/// PEP bookmarks become the same set of rooms. The fragment passes the guard first.
pub async fn private_bookmarks_set(router: &Router, ctx: &SessionCtx, storage: &Element) -> Result<(), StanzaError> {
    super::gate::gate_publish(router, &ctx.jid, LEGACY_BOOKMARKS, "private", storage).await?;
    let owner = ctx.jid.bare();
    let mut wanted = Vec::new();
    for c in storage.elements().filter(|c| c.is("conference", LEGACY_BOOKMARKS)).take(super::config::MAX_ITEMS_PER_NODE) {
        let Some(jid) = c.attr("jid").and_then(|j| Jid::parse(j).ok()) else { continue };
        let mut conf = Element::new("conference", BOOKMARKS)
            .with_attr("autojoin", if matches!(c.attr("autojoin"), Some("true" | "1")) { "true" } else { "false" });
        if let Some(n) = c.attr("name") {
            conf.set_attr("name", n);
        }
        for child in ["nick", "password"] {
            if let Some(x) = c.child(child, LEGACY_BOOKMARKS) {
                conf = conf.with_child(Element::new(child, BOOKMARKS).with_text(x.text()));
            }
        }
        wanted.push((jid.as_str().to_owned(), conf));
    }
    let existing = router.stores.pep.items(owner.as_str(), BOOKMARKS, None).await.unwrap_or_default();
    let mut retracts = Vec::new();
    for e in &existing {
        if !wanted.iter().any(|(j, _)| *j == e.id) && router.stores.pep.retract(owner.as_str(), BOOKMARKS, &e.id).await.unwrap_or(false) {
            retracts.push(e.id.clone());
        }
    }
    if !retracts.is_empty()
        && let Ok(Some(cfg)) = super::node_config(router, owner.as_str(), BOOKMARKS).await
    {
        notify::broadcast(router, &owner, BOOKMARKS, &cfg, Event::Items { node: BOOKMARKS.into(), items: vec![], retracts }).await;
    }
    for (jid, conf) in wanted {
        let same = existing.iter().any(|e| e.id == jid && crate::c2s::parse_stored(&e.xml).as_ref() == Some(&conf));
        if !same {
            derived_publish(router, &ctx.jid, BOOKMARKS, &jid, conf).await;
        }
    }
    Ok(())
}
