//! XEP-0363 HTTP File Upload, the XMPP side: the `upload.<domain>` component answers
//! disco#info (identity `store/file`, feature `urn:xmpp:http:upload:0`, the `max-file-size`
//! form) and slot requests. Slots come from a [`SlotService`] (the binary plugs in
//! `rampart-http`'s upload service); this module maps its answers to XEP-0363 errors
//! (`not-acceptable` + `file-too-large` with the limit, `resource-constraint` for quota,
//! `not-acceptable` with a text for forbidden types) and refuses quarantined accounts
//! (`forbidden`, as XEP-0363 §5 answers users who may not upload).

use std::sync::Arc;

use async_trait::async_trait;
use rampart_proto::disco::{DiscoInfo, DiscoItems, Identity};
use rampart_proto::error::error_reply;
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};

use crate::router::{Component, Router};

/// The XEP-0363 namespace.
pub const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";
const NS_DATA: &str = "jabber:x:data";

/// A slot request, as parsed from `<request/>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRequest {
    pub filename: String,
    pub size: u64,
    pub content_type: Option<String>,
}

/// A granted slot: where to PUT, where others GET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub put_url: String,
    pub get_url: String,
}

/// Why no slot was granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotRefusal {
    /// Larger than the service accepts.
    TooLarge { max: u64 },
    /// The account's quota is used up (text says how far).
    Quota(String),
    /// A forbidden file type (text says which).
    Forbidden(String),
    /// Malformed request (bad name or content type).
    BadRequest(String),
    /// The service cannot answer now.
    Unavailable(String),
}

/// What hands out slots (implemented by the binary over `rampart-http`).
#[async_trait]
pub trait SlotService: Send + Sync {
    /// Largest file accepted, advertised in disco#info.
    fn max_file_size(&self) -> u64;
    /// Grant a slot to `owner` (a local bare JID) or say why not.
    async fn request_slot(&self, owner: &str, req: SlotRequest) -> Result<Slot, SlotRefusal>;
}

/// The `upload.<domain>` component.
pub struct UploadComponent {
    service: Arc<dyn SlotService>,
}

impl UploadComponent {
    pub fn new(service: Arc<dyn SlotService>) -> Self {
        UploadComponent { service }
    }

    fn disco_info(&self) -> Element {
        let form = Element::new("x", NS_DATA)
            .with_attr("type", "result")
            .with_child(
                Element::new("field", NS_DATA)
                    .with_attr("var", "FORM_TYPE")
                    .with_attr("type", "hidden")
                    .with_child(Element::new("value", NS_DATA).with_text(NS_UPLOAD)),
            )
            .with_child(
                Element::new("field", NS_DATA)
                    .with_attr("var", "max-file-size")
                    .with_child(Element::new("value", NS_DATA).with_text(self.service.max_file_size().to_string())),
            );
        DiscoInfo {
            node: None,
            identities: vec![Identity::new("store", "file").with_name("HTTP File Upload")],
            features: vec![ns::DISCO_INFO.to_owned(), NS_UPLOAD.to_owned()],
            extensions: vec![form],
        }
        .into()
    }

    async fn slot(&self, router: &Router, from: &Jid, payload: &Element) -> Result<Element, StanzaError> {
        let bad = |t: &str| StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text(t);
        if !router.is_local(from) || from.node().is_none() {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::Forbidden)
                .with_text("only accounts of this server may upload"));
        }
        if let Some(reason) = router.quarantine.reason(from.bare_str()) {
            // XEP-0363 §5: "not allowed to upload" is `forbidden`.
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::Forbidden)
                .with_text(format!("your account is quarantined: {reason}")));
        }
        let filename = payload.attr("filename").ok_or_else(|| bad("the filename attribute is required"))?;
        let size = payload
            .attr("size")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("the size attribute must be a number of bytes"))?;
        let req = SlotRequest {
            filename: filename.to_owned(),
            size,
            content_type: payload.attr("content-type").map(str::to_owned),
        };
        match self.service.request_slot(from.bare_str(), req).await {
            Ok(slot) => Ok(Element::new("slot", NS_UPLOAD)
                .with_child(Element::new("put", NS_UPLOAD).with_attr("url", slot.put_url))
                .with_child(Element::new("get", NS_UPLOAD).with_attr("url", slot.get_url))),
            Err(SlotRefusal::TooLarge { max }) => Err(StanzaError::new(ErrorType::Modify, DefinedCondition::NotAcceptable)
                .with_text(format!("file too large: the limit is {max} bytes"))
                .with_app(
                    Element::new("file-too-large", NS_UPLOAD)
                        .with_child(Element::new("max-file-size", NS_UPLOAD).with_text(max.to_string())),
                )),
            Err(SlotRefusal::Quota(t)) => {
                Err(StanzaError::new(ErrorType::Wait, DefinedCondition::ResourceConstraint).with_text(t))
            }
            // A forbidden file type: the request is not acceptable as made (a client that
            // knows only RFC 3920's conditions still understands it).
            Err(SlotRefusal::Forbidden(t)) => {
                Err(StanzaError::new(ErrorType::Modify, DefinedCondition::NotAcceptable).with_text(t))
            }
            Err(SlotRefusal::BadRequest(t)) => Err(bad(&t)),
            Err(SlotRefusal::Unavailable(t)) => {
                tracing::error!(error = %t, "upload slot request failed");
                Err(StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
                    .with_text("the upload service is unavailable; try again later"))
            }
        }
    }
}

#[async_trait]
impl Component for UploadComponent {
    fn name(&self) -> &str {
        "HTTP File Upload"
    }

    async fn handle(&self, router: &Router, el: Element) {
        if el.name != "iq" {
            // Messages and presence to the service have no consumer.
            if el.name == "message" && el.attr("type") != Some("error") {
                router.bounce(&el, StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
            }
            return;
        }
        let ty = el.attr("type").unwrap_or("");
        if !matches!(ty, "get" | "set") {
            return;
        }
        let Some(from) = el.attr("from").and_then(|f| Jid::parse(f).ok()) else { return };
        let mut children = el.elements();
        let payload = match (children.next(), children.next()) {
            (Some(p), None) => p,
            _ => {
                router.bounce(&el, StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest));
                return;
            }
        };
        let to_service = el.attr("to").and_then(|t| Jid::parse(t).ok()).is_some_and(|t| t.node().is_none() && t.resource().is_none());
        let answer = match (ty, payload.ns.as_str(), payload.name.as_str()) {
            _ if !to_service => Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable)),
            ("get", ns::DISCO_INFO, "query") if payload.attr("node").is_none() => Ok(self.disco_info()),
            ("get", ns::DISCO_ITEMS, "query") if payload.attr("node").is_none() => {
                Ok(DiscoItems { node: None, items: vec![] }.into())
            }
            ("get", NS_UPLOAD, "request") => self.slot(router, &from, payload).await,
            _ => Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable)),
        };
        let reply = match answer {
            Ok(p) => {
                let mut r = Element::new("iq", ns::CLIENT).with_attr("type", "result").with_attr("to", from.as_str());
                if let Some(id) = el.attr("id") {
                    r.set_attr("id", id);
                }
                if let Some(to) = el.attr("to") {
                    r.set_attr("from", to);
                }
                r.with_child(p)
            }
            Err(e) => error_reply(&el, &e),
        };
        router.route(&from, reply).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    #[async_trait]
    impl SlotService for Fixed {
        fn max_file_size(&self) -> u64 {
            1234
        }
        async fn request_slot(&self, _: &str, _: SlotRequest) -> Result<Slot, SlotRefusal> {
            Err(SlotRefusal::TooLarge { max: 1234 })
        }
    }

    #[test]
    fn disco_info_advertises_the_service_and_its_limit() {
        let info = DiscoInfo::try_from(UploadComponent::new(Arc::new(Fixed)).disco_info()).unwrap();
        assert_eq!((info.identities[0].category.as_str(), info.identities[0].type_.as_str()), ("store", "file"));
        assert!(info.has_feature(NS_UPLOAD));
        let form = &info.extensions[0];
        let values: Vec<String> = form.elements().filter_map(|f| f.child("value", NS_DATA).map(Element::text)).collect();
        assert_eq!(values, [NS_UPLOAD, "1234"]);
    }
}
