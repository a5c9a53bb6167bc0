//! XEP-0202 Entity Time of the server.

use async_trait::async_trait;
use rampart_proto::{DefinedCondition, Element, StanzaError, ns};

use crate::router::{IqHandler, Router, SessionCtx};

pub struct TimeHandler;

#[async_trait]
impl IqHandler for TimeHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::TIME]
    }

    async fn handle(&self, _: &Router, _: &mut SessionCtx, iq: &Element, _: &Element) -> Result<Option<Element>, StanzaError> {
        if iq.attr("type") != Some("get") {
            return Err(StanzaError::from_condition(DefinedCondition::BadRequest));
        }
        Ok(Some(rampart_proto::time::now().into()))
    }
}
