//! Rampart server.
