//! The OpenAPI document. Routes are registered through `utoipa_axum`'s `routes!`, which adds a
//! handler to the router and its `#[utoipa::path]` to the document in one step, so the two
//! cannot drift apart.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ErrorBody;
use crate::routes::health;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "PesaChama API",
        description = "The backend of a chama (savings group) platform: auth, chamas, ledger, M-Pesa, USSD."
    ),
    components(schemas(ErrorBody)),
    tags((name = "operations", description = "Health, readiness, metrics"))
)]
struct ApiDoc;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
}
