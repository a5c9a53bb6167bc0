//! XEP-0030 Service Discovery: the server's identity and features, and its components as items;
//! on a user's bare JID, the account identity (XEP-0030 §3.1 `account/registered`).

use async_trait::async_trait;
use rampart_proto::disco::{DiscoInfo, DiscoItem, DiscoItems, Identity};
use rampart_proto::{DefinedCondition, Element, ErrorType, StanzaError, ns};

use crate::router::{IqHandler, Router, SessionCtx};

pub struct DiscoInfoHandler;
pub struct DiscoItemsHandler;

fn get_only(iq: &Element, payload: &Element) -> Result<(), StanzaError> {
    if iq.attr("type") != Some("get") {
        return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::NotAllowed));
    }
    if payload.attr("node").is_some() {
        return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    }
    Ok(())
}

/// The XEP-0115 `node` of the server's capabilities.
pub const CAPS_NODE: &str = "https://rampart.invalid/caps";

/// The server's own disco#info (identity and the features of every IQ handler).
pub fn server_info(router: &Router) -> DiscoInfo {
    DiscoInfo {
        node: None,
        identities: vec![Identity { category: "server".into(), type_: "im".into(), name: Some("Rampart".into()), lang: None }],
        features: router.features().into_iter().map(str::to_owned).collect(),
        extensions: vec![],
    }
}

/// XEP-0115: the server's capabilities (`<c/>` for the stream features), a SHA-1 hash of
/// [`server_info`]: stable as long as the feature set is.
pub fn server_caps(router: &Router) -> rampart_proto::caps::Caps {
    let ver = rampart_proto::caps::hash(&server_info(router), "sha-1").unwrap_or_default();
    rampart_proto::caps::Caps { hash: Some("sha-1".into()), node: CAPS_NODE.into(), ver }
}

/// XEP-0390: the server's capabilities 2.0 (`<c xmlns='urn:xmpp:caps'/>` for the stream
/// features), `sha-256` and `sha3-256` hashes of [`server_info`].
pub fn server_caps2(router: &Router) -> rampart_proto::caps::Caps2 {
    rampart_proto::caps::caps2_of(&server_info(router)).unwrap_or(rampart_proto::caps::Caps2 { hashes: vec![] })
}

#[async_trait]
impl IqHandler for DiscoInfoHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::DISCO_INFO]
    }

    async fn handle(&self, router: &Router, _: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        let to_account = iq.attr("to").is_some_and(|t| t != router.domain);
        // XEP-0115 §6.2: the server answers for its own caps node too.
        if !to_account && let Some(node) = payload.attr("node") {
            let caps = server_caps(router);
            // XEP-0390 §3.2: and for `urn:xmpp:caps#<algo>.<hash>` of each of its hashes.
            let caps2 = || server_caps2(router).hashes.into_iter().any(|(a, v)| node == rampart_proto::caps::caps2_node(&a, &v));
            if iq.attr("type") == Some("get") && (node == caps.disco_node() || caps2()) {
                return Ok(Some(DiscoInfo { node: Some(node.to_owned()), ..server_info(router) }.into()));
            }
        }
        get_only(iq, payload)?;
        let info = if to_account {
            DiscoInfo {
                node: None,
                identities: vec![
                    Identity { category: "account".into(), type_: "registered".into(), name: None, lang: None },
                    // XEP-0163 §6.1: the account is a PEP service.
                    Identity { category: "pubsub".into(), type_: "pep".into(), name: None, lang: None },
                ],
                features: {
                    let mut f = vec![ns::DISCO_INFO.to_owned()];
                    f.extend(crate::modules::pep::FEATURES.iter().map(|s| (*s).to_owned()));
                    // XEP-0357: the account can register app servers.
                    if router.config.push.enabled {
                        f.push(crate::modules::push::NS_PUSH.to_owned());
                    }
                    if router.services.archive.is_some() {
                        f.push(crate::modules::mam::NS_MAM.to_owned());
                        // XEP-0359: delivered copies carry the archive's stanza-id.
                        f.push(ns::SID.to_owned());
                    }
                    f
                },
                extensions: vec![],
            }
        } else {
            server_info(router)
        };
        Ok(Some(info.into()))
    }
}

#[async_trait]
impl IqHandler for DiscoItemsHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::DISCO_ITEMS]
    }

    async fn handle(&self, router: &Router, ctx: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        get_only(iq, payload)?;
        let to_account = iq.attr("to").is_some_and(|t| t != router.domain);
        let items = if to_account {
            // XEP-0060 §5.2 on one's own account: the PEP nodes (others see none).
            let own = iq.attr("to").is_some_and(|t| t == ctx.jid.bare_str());
            let nodes = if own { router.stores.pep.pep_nodes(ctx.jid.bare_str()).await.unwrap_or_default() } else { vec![] };
            nodes.into_iter().map(|n| DiscoItem { jid: ctx.jid.bare(), node: Some(n.name), name: None }).collect()
        } else {
            // The server's subdomain services (rooms, upload, ...).
            router.component_items().into_iter().filter_map(|(jid, name)| Some(DiscoItem { jid: rampart_proto::Jid::parse(&jid).ok()?, node: None, name: Some(name) })).collect()
        };
        Ok(Some(DiscoItems { node: None, items }.into()))
    }
}
