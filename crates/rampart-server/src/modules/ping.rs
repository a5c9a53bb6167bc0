//! XEP-0199 XMPP Ping: the server answers pings addressed to it.

use async_trait::async_trait;
use rampart_proto::{Element, StanzaError, ns};

use crate::router::{IqHandler, Router, SessionCtx};

pub struct PingHandler;

#[async_trait]
impl IqHandler for PingHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::PING]
    }

    async fn handle(&self, _: &Router, _: &mut SessionCtx, iq: &Element, _: &Element) -> Result<Option<Element>, StanzaError> {
        if iq.attr("type") != Some("get") {
            return Err(StanzaError::from_condition(rampart_proto::DefinedCondition::BadRequest));
        }
        Ok(None)
    }
}
