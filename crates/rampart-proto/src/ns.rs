//! XML namespace URIs used by XMPP core (RFC 6120/6121) and the XEPs Rampart implements.

/// RFC 6120: client-to-server stanzas.
pub const CLIENT: &str = "jabber:client";
/// RFC 6120: server-to-server stanzas.
pub const SERVER: &str = "jabber:server";
/// RFC 6120 §4.8.1: the `stream:` prefix (stream header, features, stream errors).
pub const STREAM: &str = "http://etherx.jabber.org/streams";
/// RFC 6120 §4.9: stream error conditions.
pub const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// RFC 6120 §8.3: stanza error conditions.
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// RFC 6120 §5: STARTTLS.
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// RFC 6120 §6: SASL.
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// RFC 6120 §7: resource binding.
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// RFC 3921 session establishment (kept as an optional feature, RFC 6121 appendix E).
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// RFC 6121 §2: roster management.
pub const ROSTER: &str = "jabber:iq:roster";
/// RFC 6121 §2.6: roster versioning stream feature.
pub const ROSTERVER: &str = "urn:xmpp:features:rosterver";
/// RFC 6121 §3.4: subscription pre-approval stream feature.
pub const PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";
/// XEP-0030: service discovery, info.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030: service discovery, items.
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0004: data forms (also XEP-0128 disco extensions).
pub const DATA_FORMS: &str = "jabber:x:data";
/// XEP-0199: XMPP ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0092: software version.
pub const VERSION: &str = "jabber:iq:version";
/// XEP-0202: entity time.
pub const TIME: &str = "urn:xmpp:time";
/// XEP-0203: delayed delivery.
pub const DELAY: &str = "urn:xmpp:delay";
/// XEP-0440: SASL channel-binding type capability.
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// The `xml:` prefix namespace.
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
/// XEP-0115: entity capabilities.
pub const CAPS: &str = "http://jabber.org/protocol/caps";
/// XEP-0198: stream management.
pub const SM: &str = "urn:xmpp:sm:3";
/// XEP-0280: message carbons.
pub const CARBONS: &str = "urn:xmpp:carbons:2";
/// XEP-0297: stanza forwarding.
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0313: message archive management.
pub const MAM: &str = "urn:xmpp:mam:2";
/// XEP-0359: unique and stable stanza IDs.
pub const SID: &str = "urn:xmpp:sid:0";
/// XEP-0191: blocking command.
pub const BLOCKING: &str = "urn:xmpp:blocking";
/// XEP-0191 §3.3: the application error condition for stanzas to a blocked JID.
pub const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
/// XEP-0352: client state indication.
pub const CSI: &str = "urn:xmpp:csi:0";
/// XEP-0334: message processing hints.
pub const HINTS: &str = "urn:xmpp:hints";
/// XEP-0085: chat state notifications.
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0184: message delivery receipts.
pub const RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0054: vcard-temp.
pub const VCARD: &str = "vcard-temp";
/// XEP-0049: private XML storage.
pub const PRIVATE: &str = "jabber:iq:private";
/// XEP-0077: in-band registration.
pub const REGISTER: &str = "jabber:iq:register";
/// XEP-0012: last activity.
pub const LAST: &str = "jabber:iq:last";
/// XEP-0060: publish-subscribe.
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0163: personal eventing (pubsub event notifications).
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0045: multi-user chat.
pub const MUC: &str = "http://jabber.org/protocol/muc";
/// XEP-0220: server dialback.
pub const DIALBACK: &str = "jabber:server:dialback";
/// XEP-0288: bidirectional server-to-server connections.
pub const BIDI: &str = "urn:xmpp:bidi";
/// XEP-0066: out of band data.
pub const OOB: &str = "jabber:x:oob";
