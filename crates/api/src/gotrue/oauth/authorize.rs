//! `GET /auth/v1/authorize`: remember the flow, send the browser to Google.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use pesachama_store::flow_state::{self, NewFlowState};

use super::{PROVIDER, nonce_for, provider_disabled, web_client};
use crate::AppState;
use crate::gotrue::{AuthError, ClientIp, ratelimit};

/// Parameters that are ours, or that only we may set at Google: never passed through.
const RESERVED: [&str; 16] = [
    "provider",
    "scopes",
    "redirect_to",
    "code_challenge",
    "code_challenge_method",
    "skip_http_redirect",
    "invite_token",
    "apikey",
    "client_id",
    "client_secret",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_verifier",
    "nonce",
];

/// Scopes always asked for: `openid` makes Google answer an ID token, which is how the user is
/// known; `email profile` are GoTrue's defaults.
const BASE_SCOPES: [&str; 3] = ["openid", "email", "profile"];

/// Flows abandoned this long ago are deleted as new ones start.
const STALE_AFTER_SECONDS: i64 = 24 * 3600;

pub async fn authorize(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    ip: ClientIp,
    headers: HeaderMap,
) -> Result<Response, AuthError> {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    };
    let settings = &state.auth.settings;
    let provider = get("provider").unwrap_or_default().to_ascii_lowercase();
    if provider != PROVIDER {
        return Err(AuthError::validation(format!(
            "Unsupported provider: Provider {provider} could not be found"
        )));
    }
    let Some((client_id, _)) = web_client(settings) else {
        return Err(provider_disabled());
    };
    let pkce = pkce_params(get("code_challenge"), get("code_challenge_method"))?;
    let scope = scopes(get("scopes"))?;
    if let Some(ip) = ip.text() {
        let limits = settings.rate_limits;
        ratelimit::hit(
            &state.pool,
            &format!("authorize:ip:{ip}"),
            limits.token,
            limits.window_seconds,
        )
        .await?;
    }

    let referer = headers.get(header::REFERER).and_then(|v| v.to_str().ok());
    let referrer = settings.redirects.referrer(get("redirect_to"), referer);
    let auth_code = uuid::Uuid::new_v4().to_string();
    let flow = NewFlowState {
        provider_type: PROVIDER,
        pkce: pkce.map(|(challenge, method)| (challenge, method, auth_code.as_str())),
        referrer: &referrer,
    };
    flow_state::delete_stale(&state.pool, PROVIDER, STALE_AFTER_SECONDS, 100).await?;
    let flow_id = flow_state::insert(&state.pool, &flow).await?;

    let mut target = url::Url::parse(&settings.google_oauth.authorization_url).map_err(|err| {
        tracing::error!(error = %err, "GOOGLE_AUTHORIZATION_URL is not a URL");
        AuthError::internal()
    })?;
    {
        let mut query = target.query_pairs_mut();
        query
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &settings.google_redirect_uri())
            .append_pair("response_type", "code")
            .append_pair("scope", &scope)
            .append_pair("state", &flow_id.to_string())
            .append_pair("nonce", &nonce_for(&settings.jwt_secret, flow_id));
        // What the app adds for Google (`queryParams`: access_type, prompt, login_hint, hd...).
        for (key, value) in &params {
            if !RESERVED.contains(&key.to_ascii_lowercase().as_str()) {
                query.append_pair(key, value);
            }
        }
    }
    tracing::info!(
        provider = PROVIDER,
        pkce = pkce.is_some(),
        "redirecting to the OAuth provider"
    );
    Ok(super::redirect(StatusCode::FOUND, target.as_str()))
}

/// GoTrue's PKCE rules: both parameters or neither; a challenge of 43 to 128 unreserved
/// characters (RFC 7636 §4.2); method `s256` or `plain`. Answers the challenge and the method
/// as stored.
fn pkce_params<'a>(
    challenge: Option<&'a str>,
    method: Option<&str>,
) -> Result<Option<(&'a str, &'static str)>, AuthError> {
    let (challenge, method) = match (challenge, method) {
        (None, None) => return Ok(None),
        (Some(challenge), Some(method)) => (challenge, method),
        _ => {
            return Err(AuthError::validation(
                "PKCE flow requires code_challenge_method and code_challenge",
            ));
        }
    };
    if !(43..=128).contains(&challenge.len()) {
        return Err(AuthError::validation(
            "code challenge has to be between 43 and 128 characters",
        ));
    }
    if !challenge
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
    {
        return Err(AuthError::validation(
            "code challenge can only contain alphanumeric characters, hyphens, periods, underscores and tildes",
        ));
    }
    let method = match method.to_ascii_lowercase().as_str() {
        "s256" => "s256",
        "plain" => "plain",
        _ => return Err(AuthError::validation("Invalid code_challenge_method")),
    };
    Ok(Some((challenge, method)))
}

/// `openid email profile` and the app's scopes (space- or comma-separated), each once.
fn scopes(extra: Option<&str>) -> Result<String, AuthError> {
    let mut all: Vec<&str> = BASE_SCOPES.to_vec();
    for scope in extra
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        if scope.len() > 256
            || !scope
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        {
            return Err(AuthError::validation(format!("invalid scope: {scope:?}")));
        }
        if !all.contains(&scope) {
            all.push(scope);
        }
    }
    if all.len() > 50 {
        return Err(AuthError::validation("too many scopes"));
    }
    Ok(all.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_openid_email_profile_and_the_apps_each_once() {
        assert_eq!(scopes(None).unwrap(), "openid email profile");
        assert_eq!(
            scopes(Some(
                "https://www.googleapis.com/auth/calendar.readonly email,profile"
            ))
            .unwrap(),
            "openid email profile https://www.googleapis.com/auth/calendar.readonly"
        );
        assert!(scopes(Some("a\"b")).is_err());
    }

    #[test]
    fn pkce_parameters_follow_gotrue() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(
            pkce_params(Some(challenge), Some("S256")).unwrap(),
            Some((challenge, "s256"))
        );
        assert_eq!(pkce_params(None, None).unwrap(), None);
        assert!(pkce_params(Some(challenge), None).is_err());
        assert!(pkce_params(None, Some("s256")).is_err());
        assert!(pkce_params(Some("short"), Some("s256")).is_err());
        assert!(pkce_params(Some(challenge), Some("md5")).is_err());
        let bad = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM";
        assert!(pkce_params(Some(bad), Some("plain")).is_err());
    }
}
