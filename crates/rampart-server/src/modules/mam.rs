//! XEP-0313 Message Archive Management: a user's own history, served from the compliance
//! archive (one store; MAM is a filtered view of it). Queries take the XEP-0004 form fields
//! `with`, `start`, `end` and XEP-0059 paging (`max`, `after`, `before`). Preferences
//! (`<prefs/>`) are kept per account and only change what the user's own view shows: they
//! never opt a message out of the compliance archive.

use async_trait::async_trait;
use rampart_archive::{MAM_MAX_PAGE, MamQuery, Record};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, datetime, ns};
use rampart_store::PrivateItem;

use crate::router::{IqHandler, Router, SessionCtx};

pub const NS_MAM: &str = "urn:xmpp:mam:2";
const NS_RSM: &str = "http://jabber.org/protocol/rsm";
const NS_DATA: &str = "jabber:x:data";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// Where the preferences are kept (a private-storage key no client can write: the private
/// storage handler only accepts elements in their own namespaces, and this one is ours).
const PREFS_KEY: (&str, &str) = ("urn:xmpp:mam:2#rampart-prefs", "prefs");

pub struct MamHandler;

fn bad(text: &str) -> StanzaError {
    StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text(text)
}

/// Read the XEP-0004 form and RSM set of a `<query/>`.
pub(crate) fn parse_query(q: &Element) -> Result<MamQuery, StanzaError> {
    let mut out = MamQuery::default();
    if let Some(form) = q.child("x", NS_DATA) {
        for field in form.elements().filter(|f| f.is("field", NS_DATA)) {
            let value = field.child("value", NS_DATA).map(Element::text).unwrap_or_default();
            match field.attr("var") {
                Some("FORM_TYPE") => {
                    if value != NS_MAM {
                        return Err(bad("FORM_TYPE must be urn:xmpp:mam:2"));
                    }
                }
                Some("with") => {
                    let j = Jid::parse(value.trim()).map_err(|_| bad("'with' is not a valid JID"))?;
                    out.with = Some(j.as_str().to_owned());
                }
                Some("start") => out.start_ms = Some(datetime::parse(value.trim()).map_err(|_| bad("bad 'start'"))?.timestamp_millis()),
                Some("end") => out.end_ms = Some(datetime::parse(value.trim()).map_err(|_| bad("bad 'end'"))?.timestamp_millis()),
                Some(other) => {
                    return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented)
                        .with_text(format!("unsupported field {other:?}")));
                }
                None => {}
            }
        }
    }
    if let Some(set) = q.child("set", NS_RSM) {
        if let Some(m) = set.child("max", NS_RSM) {
            let n: u32 = m.text().trim().parse().map_err(|_| bad("bad <max/>"))?;
            out.max = Some(n.min(MAM_MAX_PAGE));
        }
        if let Some(a) = set.child("after", NS_RSM) {
            out.after = Some(a.text().trim().to_owned());
        }
        if let Some(b) = set.child("before", NS_RSM) {
            out.before = Some(b.text().trim().to_owned());
        }
    }
    Ok(out)
}

/// The archived stanza as the user should see it again.
pub(crate) fn forwarded(rec: &Record) -> Option<Element> {
    let xml = rec.record.stanza_xml.as_deref()?;
    let mut msg = crate::c2s::parse_stored(xml)?;
    msg.ns = ns::CLIENT.to_owned();
    let stamp = chrono::DateTime::from_timestamp_millis(rec.record.at_ms)?;
    Some(
        Element::new("forwarded", NS_FORWARD)
            .with_child(Element::new("delay", ns::DELAY).with_attr("stamp", datetime::format(&stamp)))
            .with_child(msg),
    )
}

pub(crate) fn form_fields() -> Element {
    let field = |var: &str, ty: &str| Element::new("field", NS_DATA).with_attr("var", var).with_attr("type", ty);
    Element::new("query", NS_MAM).with_child(
        Element::new("x", NS_DATA)
            .with_attr("type", "form")
            .with_child(field("FORM_TYPE", "hidden").with_child(Element::new("value", NS_DATA).with_text(NS_MAM)))
            .with_child(field("with", "jid-single"))
            .with_child(field("start", "text-single"))
            .with_child(field("end", "text-single")),
    )
}

async fn prefs(router: &Router, owner: &str, set: Option<&Element>) -> Result<Element, StanzaError> {
    let store = &router.stores.private;
    let internal = |e: rampart_store::StoreError| {
        tracing::error!(error = %e, "MAM prefs store failed");
        StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
    };
    if let Some(new) = set {
        match new.attr("default") {
            Some("always" | "never" | "roster") => {}
            _ => return Err(bad("prefs need default='always|never|roster'")),
        }
        let item = PrivateItem { namespace: PREFS_KEY.0.to_owned(), name: PREFS_KEY.1.to_owned(), xml: new.to_xml_string() };
        store.private_set(owner, &[item], usize::MAX).await.map_err(internal)?;
        return Ok(new.clone());
    }
    let saved = store.private_get(owner, PREFS_KEY.0, PREFS_KEY.1).await.map_err(internal)?;
    Ok(saved
        .and_then(|x| crate::c2s::parse_stored(&x))
        .unwrap_or_else(|| Element::new("prefs", NS_MAM).with_attr("default", "always")))
}

#[async_trait]
impl IqHandler for MamHandler {
    fn features(&self) -> &'static [&'static str] {
        &[]
    }

    async fn handle(&self, router: &Router, ctx: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        let owner = ctx.jid.bare_str().to_owned();
        if iq.attr("to").is_some_and(|t| t != owner) {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::Forbidden)
                .with_text("you can only query your own archive"));
        }
        let ty = iq.attr("type").unwrap_or("");
        if payload.name == "prefs" {
            let set = (ty == "set").then_some(payload);
            return prefs(router, &owner, set).await.map(Some);
        }
        if payload.name != "query" {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented));
        }
        if ty == "get" {
            return Ok(Some(form_fields()));
        }
        let Some(archive) = &router.services.archive else {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable)
                .with_text("the message archive is switched off on this server"));
        };
        let mut q = parse_query(payload)?;
        // Preferences shape the user's view: `never` hides everything, `roster` hides
        // messages with people not in the roster.
        let pref = prefs(router, &owner, None).await?;
        let default = pref.attr("default").unwrap_or("always").to_owned();
        if default == "never" {
            let set = Element::new("set", NS_RSM).with_child(Element::new("count", NS_RSM).with_text("0"));
            return Ok(Some(Element::new("fin", NS_MAM).with_attr("complete", "true").with_child(set)));
        }
        // Conversations with quarantined accounts stay out of the history: what the
        // quarantine withdrew from offline queues must not come back this way.
        q.exclude_peers = router.quarantine.accounts();
        let page = match archive.mam_query(&owner, &q).await {
            Ok(p) => p,
            Err(rampart_archive::ArchiveError::ItemNotFound(id)) => {
                return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ItemNotFound)
                    .with_text(format!("no archived message with id {id}")));
            }
            Err(e) => {
                tracing::error!(error = %e, "MAM query failed");
                return Err(StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError));
            }
        };
        let roster: Option<std::collections::HashSet<String>> = if default == "roster" {
            let (_, items) = router.stores.roster.roster(&owner).await.unwrap_or_default();
            Some(items.into_iter().map(|i| i.jid).collect())
        } else {
            None
        };
        let queryid = payload.attr("queryid");
        let session = router.sessions.get(&ctx.jid);
        for rec in &page.records {
            if let Some(r) = &roster {
                let peer = if Jid::parse(&rec.record.from).is_ok_and(|f| f.bare_str() == owner) { &rec.record.to } else { &rec.record.from };
                let peer_bare = Jid::parse(peer).map(|p| p.bare_str().to_owned()).unwrap_or_default();
                if !r.contains(&peer_bare) {
                    continue;
                }
            }
            let Some(fwd) = forwarded(rec) else { continue };
            let mut result = Element::new("result", NS_MAM).with_attr("id", rec.seq.to_string());
            if let Some(qid) = queryid {
                result.set_attr("queryid", qid);
            }
            let msg = Element::new("message", ns::CLIENT)
                .with_attr("to", ctx.jid.as_str())
                .with_attr("from", owner.as_str())
                .with_attr("id", format!("mam-{}", rec.seq))
                .with_child(result.with_child(fwd));
            if let Some(s) = &session {
                s.send(msg);
            }
        }
        let mut set = Element::new("set", NS_RSM);
        if let (Some(first), Some(last)) = (&page.first, &page.last) {
            let mut f = Element::new("first", NS_RSM).with_text(first.clone());
            if let Some(i) = page.first_index {
                f.set_attr("index", i.to_string());
            }
            set = set.with_child(f).with_child(Element::new("last", NS_RSM).with_text(last.clone()));
        }
        set = set.with_child(Element::new("count", NS_RSM).with_text(page.count.to_string()));
        let mut fin = Element::new("fin", NS_MAM).with_child(set);
        if page.complete {
            fin.set_attr("complete", "true");
        }
        Ok(Some(fin))
    }
}
