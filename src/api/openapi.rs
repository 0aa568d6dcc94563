//! The OpenAPI document, generated from the handlers' annotations and the request and
//! response types (utoipa), served at `/v1/openapi.json`.

use super::routes;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Taskdeck API", description = "Tasks, steps, approvals and events of a Taskdeck engine. Authenticate with `Authorization: Bearer <JWT>` (`taskdeck token issue`)."),
    paths(
        routes::live, routes::ready, routes::status, routes::whoami, routes::workflows,
        routes::workflow_files, routes::list_tasks, routes::create_task, routes::create_batch,
        routes::show_task, routes::retry_task, routes::cancel_task, routes::resolve_step,
        routes::approve_step, routes::deny_step, routes::approvals, routes::events,
    ),
    modifiers(&Bearer)
)]
struct ApiDoc;

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
