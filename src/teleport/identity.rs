//! The Teleport identity in an X.509 certificate's subject, as Teleport encodes it: user in
//! CN, roles in O (one each), traits as JSON in POSTALCODE, the route to a database in
//! OIDs 1.3.9999.2.x; expiry in NotAfter.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::prelude::*;

use crate::policy::Identity;

/// What a certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub identity: Identity,
    /// NotAfter, seconds since the epoch.
    pub not_after: i64,
    /// Route to database (service name, user, database) when present.
    pub db_service: Option<String>,
    pub db_user: Option<String>,
    pub db_name: Option<String>,
}

impl CertInfo {
    pub fn expired(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.not_after <= now
    }
}

const OID_POSTAL_CODE: &str = "2.5.4.17";
const OID_DB_SERVICE: &str = "1.3.9999.2.1";
const OID_DB_USER: &str = "1.3.9999.2.3";
const OID_DB_NAME: &str = "1.3.9999.2.4";

/// Reads the first certificate of a PEM file.
pub fn read_cert(path: &Path) -> Result<CertInfo, String> {
    let pem_bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (_, pem) = parse_x509_pem(&pem_bytes)
        .map_err(|e| format!("{} is not a PEM certificate: {e}", path.display()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("{} is not an X.509 certificate: {e}", path.display()))?;
    let subject = cert.subject();
    let text = |attr: &AttributeTypeAndValue<'_>| attr.as_str().map(str::to_string).ok();
    let mut identity = Identity {
        source: crate::policy::IdentitySource::Teleport,
        ..Identity::default()
    };
    let mut info = CertInfo {
        identity: Identity::default(),
        not_after: cert.validity().not_after.timestamp(),
        db_service: None,
        db_user: None,
        db_name: None,
    };
    if let Some(cn) = subject.iter_common_name().next().and_then(&text) {
        identity.user = cn;
    }
    identity.roles = subject.iter_organization().filter_map(&text).collect();
    for attr in subject.iter_attributes() {
        let oid = attr.attr_type().to_id_string();
        match oid.as_str() {
            OID_POSTAL_CODE => {
                if let Some(json) = text(attr) {
                    // `null` when the user has no traits.
                    if let Ok(Some(traits)) =
                        serde_json::from_str::<Option<BTreeMap<String, Vec<String>>>>(&json)
                    {
                        identity.traits = traits;
                    }
                }
            }
            OID_DB_SERVICE => info.db_service = text(attr),
            OID_DB_USER => info.db_user = text(attr),
            OID_DB_NAME => info.db_name = text(attr),
            _ => {}
        }
    }
    info.identity = identity;
    Ok(info)
}
