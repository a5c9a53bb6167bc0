//! RFC 3921 session establishment, kept as a no-op for old clients (RFC 6121 §1.4: the
//! feature is advertised as `<optional/>`, and a request simply succeeds).

use async_trait::async_trait;
use rampart_proto::{Element, StanzaError};

use crate::router::{IqHandler, Router, SessionCtx};

pub struct SessionHandler;

#[async_trait]
impl IqHandler for SessionHandler {
    fn features(&self) -> &'static [&'static str] {
        &[]
    }

    async fn handle(&self, _: &Router, _: &mut SessionCtx, _: &Element, _: &Element) -> Result<Option<Element>, StanzaError> {
        Ok(None)
    }
}
