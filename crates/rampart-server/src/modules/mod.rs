//! Feature modules, one per RFC section or XEP, hooked into the [`crate::router::Router`]:
//! IQ handlers register by payload namespace; presence, roster subscriptions and offline
//! storage are called by the router at their stage of the data path.

pub mod blocking;
pub mod carbons;
pub mod disco;
pub mod last;
pub mod mam;
pub mod muc;
pub mod offline;
pub mod pep;
pub mod ping;
pub mod presence;
pub mod push;
pub mod private;
pub mod roster;
pub mod session;
pub mod time;
pub mod upload;
pub mod vcard;
pub mod version;
