//! Teleport: database resource URIs, the user's tsh credentials and identity, and the routes
//! to a database through the Teleport proxy.

pub mod uri;

pub use uri::{DatabaseUri, UriError};
