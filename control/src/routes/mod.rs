//! Orion's routes. Every API route is registered through `utoipa_axum::routes!`, so the
//! OpenAPI document lists exactly the routes that are served and cannot drift from them.

pub mod accounts;
pub mod api_keys;
pub mod audit_log;
pub mod clusters;
pub mod common_answers;
pub mod dead_letters;
pub mod health;
pub mod regions;
pub mod usage;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lyra control API (Orion)",
        description = "Provision Qdrant clusters, manage capacity and API keys. Errors are RFC 9457 problem+json."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Accounts, their tokens and audit log"),
        (name = "regions", description = "Regions and capacity (operator)"),
        (name = "clusters", description = "Qdrant clusters"),
        (name = "api-keys", description = "API keys for a cluster's endpoint"),
        (name = "operations", description = "Dead letters (operator)")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API routes with their OpenAPI document.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::create_account, accounts::list_accounts))
        .routes(routes!(accounts::get_account))
        .routes(routes!(accounts::create_token))
        .routes(routes!(audit_log::get_audit))
        .routes(routes!(regions::list_regions))
        .routes(routes!(regions::put_region, regions::get_region))
        .routes(routes!(clusters::create_cluster, clusters::list_clusters))
        .routes(routes!(
            clusters::get_cluster,
            clusters::resize_cluster,
            clusters::delete_cluster
        ))
        .routes(routes!(usage::get_usage))
        .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
        .routes(routes!(api_keys::revoke_api_key))
        .routes(routes!(dead_letters::list_dead_letters))
        .routes(routes!(dead_letters::replay_dead_letter))
}
