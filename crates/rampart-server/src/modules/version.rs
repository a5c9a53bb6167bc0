//! XEP-0092 Software Version of the server.

use async_trait::async_trait;
use rampart_proto::version::SoftwareVersion;
use rampart_proto::{DefinedCondition, Element, StanzaError, ns};

use crate::router::{IqHandler, Router, SessionCtx};

pub struct VersionHandler;

#[async_trait]
impl IqHandler for VersionHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::VERSION]
    }

    async fn handle(&self, _: &Router, _: &mut SessionCtx, iq: &Element, _: &Element) -> Result<Option<Element>, StanzaError> {
        if iq.attr("type") != Some("get") {
            return Err(StanzaError::from_condition(DefinedCondition::BadRequest));
        }
        Ok(Some(
            SoftwareVersion { name: "Rampart".into(), version: env!("CARGO_PKG_VERSION").into(), os: None }.into(),
        ))
    }
}
