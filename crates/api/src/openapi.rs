//! The OpenAPI document. Routes are registered through `utoipa_axum`'s `routes!`, which adds a
//! handler to the router and its `#[utoipa::path]` to the document in one step, so the two
//! cannot drift apart.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ErrorBody;
use crate::routes::{
    admin, chamas, disbursements, health, invitations, meeting_files, meetings, membership, mpesa,
    notifications, pins, statements, transactions, users, ussd,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "PesaChama API",
        description = "The backend of a chama (savings group) platform: auth, chamas, ledger, M-Pesa, USSD."
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "users", description = "Profiles"),
        (name = "chamas", description = "Chamas and membership"),
        (name = "money", description = "Contributions and the ledger; amounts are whole cents"),
        (name = "admin", description = "Platform administration (platform_role admin in app_metadata)"),
        (name = "meetings", description = "Meetings, attendance, minutes and video tokens (Agora)"),
        (name = "notifications", description = "In-app notifications and push devices"),
        (name = "auth", description = "PINs for USSD; sign-up and sign-in are under /auth/v1 (GoTrue)"),
        (name = "ussd", description = "Africa's Talking USSD callback: CON/END screens for feature phones")
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(ussd::ussd))
        .routes(routes!(ussd::ussd_with_token))
        .routes(routes!(health::ready))
        .routes(routes!(users::get_user))
        .routes(routes!(users::update_me))
        .routes(routes!(pins::set_pin))
        .routes(routes!(pins::verify_pin))
        .routes(routes!(chamas::create_chama, chamas::list_chamas))
        .routes(routes!(chamas::get_chama, chamas::update_chama))
        .routes(routes!(chamas::list_members))
        .routes(routes!(invitations::invite))
        .routes(routes!(invitations::mine))
        .routes(routes!(invitations::accept))
        .routes(routes!(invitations::decline))
        .routes(routes!(invitations::join))
        .routes(routes!(invitations::admit))
        .routes(routes!(invitations::refuse))
        .routes(routes!(chamas::change_role))
        .routes(routes!(chamas::leave))
        .routes(routes!(membership::suspend))
        .routes(routes!(membership::reinstate))
        .routes(routes!(membership::close))
        .routes(routes!(admin::users))
        .routes(routes!(admin::chamas))
        .routes(routes!(admin::suspend_user))
        .routes(routes!(admin::reinstate_user))
        .routes(routes!(admin::suspend_chama))
        .routes(routes!(admin::reinstate_chama))
        .routes(routes!(admin::audit))
        .routes(routes!(admin::attention))
        .routes(routes!(statements::my_statement))
        .routes(routes!(statements::member_statement))
        .routes(routes!(statements::cash_statement))
        .routes(routes!(statements::audit_trail))
        .routes(routes!(meetings::schedule, meetings::list))
        .routes(routes!(meetings::update))
        .routes(routes!(meetings::cancel))
        .routes(routes!(meetings::attendance))
        .routes(routes!(meetings::video_token))
        .routes(routes!(meeting_files::files, meeting_files::link))
        .routes(routes!(notifications::list))
        .routes(routes!(notifications::unread_count))
        .routes(routes!(notifications::mark_read))
        .routes(routes!(notifications::mark_all_read))
        .routes(routes!(notifications::register_device))
        .routes(routes!(notifications::forget_device))
        .routes(routes!(transactions::record_contribution))
        .routes(routes!(transactions::reverse_transaction))
        .routes(routes!(
            disbursements::request_disbursement,
            disbursements::list_disbursements
        ))
        .routes(routes!(disbursements::approve))
        .routes(routes!(disbursements::reject))
        .routes(routes!(disbursements::cancel))
        .routes(routes!(disbursements::mark_paid))
        .routes(routes!(mpesa::contribute))
        .routes(routes!(mpesa::get_payment_request))
}

/// Declares the bearer scheme the protected routes name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
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
