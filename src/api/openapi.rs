//! The OpenAPI document, generated from the handlers' annotations and the request and
//! response types (utoipa), served at `/v1/openapi.json`.

use super::routes;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct Bearer;

/// Links from a created task to what can be done with it, so tools that follow links (e.g.
/// schemathesis's stateful phase) act on real tasks.
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::link::LinkBuilder;
        use utoipa::openapi::RefOr;
        let Some(create) = openapi
            .paths
            .paths
            .get_mut("/v1/tasks")
            .and_then(|p| p.post.as_mut())
        else {
            return;
        };
        let Some(RefOr::T(created)) = create.responses.responses.get_mut("201") else {
            return;
        };
        let id = "$response.body#/id";
        let step = Some("get_manager_approval");
        for (operation, step) in [
            ("show_task", None),
            ("retry_task", None),
            ("cancel_task", None),
            ("approve_step", step),
            ("deny_step", step),
            ("resolve_step", step),
        ] {
            let mut link = LinkBuilder::new().operation_id(operation).parameter("id", id);
            if let Some(step) = step {
                link = link.parameter("step", step);
            }
            created.links.insert(operation.into(), RefOr::T(link.build()));
        }
    }
}

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
        routes::live, routes::ready, routes::status, routes::metrics, routes::whoami, routes::proof, routes::workflows,
        routes::workflow_files, routes::list_tasks, routes::create_task, routes::create_batch,
        routes::show_task, routes::retry_task, routes::cancel_task, routes::resolve_step, routes::retry_step_now,
        routes::approve_step, routes::deny_step, routes::approvals, routes::events, routes::metrics_summary, routes::audit,
    ),
    components(schemas(crate::model::Event)),
    modifiers(&Bearer, &Links)
)]
struct ApiDoc;

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as JSON. utoipa 5 writes a link's fields in snake case (`operation_id`); the
/// specification spells them `operationId`, `operationRef` and `requestBody`.
pub fn document_json() -> serde_json::Value {
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for operation in paths
            .values_mut()
            .filter_map(|p| p.as_object_mut())
            .flat_map(|p| p.values_mut())
        {
            let Some(responses) = operation.get_mut("responses").and_then(|r| r.as_object_mut()) else {
                continue;
            };
            for link in responses
                .values_mut()
                .filter_map(|r| r.get_mut("links").and_then(|l| l.as_object_mut()))
                .flat_map(|links| links.values_mut())
                .filter_map(|l| l.as_object_mut())
            {
                for (snake, camel) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(v) = link.remove(snake) {
                        link.insert(camel.into(), v);
                    }
                }
            }
        }
    }
    doc
}

/// Built once: the document does not change while the server runs.
pub async fn serve() -> Json<serde_json::Value> {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document_json).clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_lists_every_route_and_spells_links_as_the_specification_does() {
        let doc = super::document_json();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/health/live",
            "/health/ready",
            "/health/status",
            "/v1/whoami",
            "/v1/workflows",
            "/v1/workflows/files",
            "/v1/tasks",
            "/v1/tasks/batch",
            "/v1/tasks/{id}",
            "/v1/tasks/{id}/retry",
            "/v1/tasks/{id}/cancel",
            "/v1/tasks/{id}/steps/{step}/resolve",
            "/v1/tasks/{id}/steps/{step}/approve",
            "/v1/tasks/{id}/steps/{step}/deny",
            "/v1/approvals",
            "/v1/events",
        ] {
            assert!(paths.contains_key(path), "{path} is documented");
        }
        let text = doc.to_string();
        assert!(!text.contains("\"operation_id\"") && text.contains("\"operationId\":\"show_task\""));
        assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");
    }
}
