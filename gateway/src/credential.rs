//! Credentials: the one a client presents, and the one GateKeeper sends upstream instead.

use std::time::Duration;

use contract::api_key::CollectionRule;
use contract::ids::KeyId;
use jsonwebtoken::{Algorithm, Header};
use moka::sync::Cache;
use pingora::http::RequestHeader;
use serde::Serialize;

use crate::route_table::Route;

/// The key a client sent: `api-key`, else `Authorization: Bearer`.
pub fn presented(req: &RequestHeader) -> Option<&str> {
    if let Some(v) = req.headers.get("api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = req
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// How long a minted JWT is valid, and how long before its end a new one is minted.
pub const JWT_LIFETIME: Duration = Duration::from_secs(300);
const JWT_REUSE: Duration = Duration::from_secs(240);

#[derive(Serialize)]
struct Claims<'a> {
    access: &'a [CollectionRule],
    exp: i64,
}

/// Short-lived JWTs (Qdrant's `access` claims, HS256 with the cluster's read-write key) for
/// collection-scoped keys, one per key, reused until near their expiry, kept as the whole
/// `Authorization` value so a request costs no formatting.
pub struct JwtMinter {
    cache: Cache<KeyId, http::HeaderValue>,
}

impl Default for JwtMinter {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .time_to_live(JWT_REUSE)
                .max_capacity(1_000_000)
                .build(),
        }
    }
}

impl JwtMinter {
    /// `Bearer <jwt>` for `key`.
    pub fn token(
        &self,
        key: KeyId,
        route: &Route,
        rules: &[CollectionRule],
    ) -> Option<http::HeaderValue> {
        if let Some(t) = self.cache.get(&key) {
            return Some(t);
        }
        let exp = jiff::Timestamp::now().as_second() + JWT_LIFETIME.as_secs() as i64;
        let jwt = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims { access: rules, exp },
            &route.jwt_key,
        )
        .ok()?;
        let mut jwt = http::HeaderValue::from_str(&format!("Bearer {jwt}")).ok()?;
        jwt.set_sensitive(true);
        self.cache.insert(key, jwt.clone());
        Some(jwt)
    }
}
