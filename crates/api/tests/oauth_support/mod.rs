//! A local Google for the browser OAuth flow, speaking Google's wire format: the authorization
//! endpoint (sends the browser back with a one-time code, or with `error=access_denied`), the
//! token endpoint (a form POST checked as Google checks it: client id and secret, the same
//! redirect URI, a code used once; JSON answers, `invalid_grant` and friends on refusal), and
//! the JWKS its ID tokens are signed with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pesachama_testkit::fake::FakeService;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "pesachama-web.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-test-secret-never-logged";
pub const KID: &str = "google-oauth-key-1";

/// Who signs in at Google next, and how Google behaves.
#[derive(Debug, Default)]
pub struct Behaviour {
    /// The user's claims (`sub`, `email`, `email_verified`, `name`).
    pub user: Value,
    /// Refuse at the consent screen (`error=access_denied`).
    pub deny: bool,
    /// Claims that override what a real Google would put in the ID token (an attacker's
    /// token: another audience, another nonce...).
    pub tamper: Option<Value>,
}

#[derive(Debug)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    user: Value,
    tamper: Option<Value>,
}

#[derive(Debug, Default)]
struct Inner {
    behaviour: Behaviour,
    codes: HashMap<String, Grant>,
    next_code: u64,
    /// Every form the token endpoint received.
    token_requests: Vec<HashMap<String, String>>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    key: Arc<EncodingKey>,
}

pub struct FakeGoogle {
    pub service: FakeService,
    inner: Arc<Mutex<Inner>>,
}

impl FakeGoogle {
    pub async fn start() -> Self {
        let (key, jwk) = es256_key(31, KID);
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = Shared {
            inner: inner.clone(),
            key: Arc::new(key),
        };
        let router = Router::new()
            .route("/o/oauth2/v2/auth", get(authorization_endpoint))
            .route("/token", post(token_endpoint))
            .route(
                "/oauth2/v3/certs",
                get(move || {
                    let jwks = json!({ "keys": [jwk.clone()] });
                    async move { axum::Json(jwks) }
                }),
            )
            .with_state(shared);
        let google = Self {
            service: FakeService::start(router).await,
            inner,
        };
        google.next_user(user("1122334455", "chebet@gmail.com", true));
        google
    }

    pub fn url(&self, path: &str) -> String {
        self.service.url(path)
    }

    pub fn next_user(&self, user: Value) {
        self.inner.lock().unwrap().behaviour.user = user;
    }

    pub fn deny_next(&self, deny: bool) {
        self.inner.lock().unwrap().behaviour.deny = deny;
    }

    pub fn tamper(&self, claims: Option<Value>) {
        self.inner.lock().unwrap().behaviour.tamper = claims;
    }

    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.inner.lock().unwrap().token_requests.clone()
    }
}

pub fn user(sub: &str, email: &str, verified: bool) -> Value {
    json!({ "sub": sub, "email": email, "email_verified": verified, "name": "Chebet Langat",
            "picture": "https://lh3.googleusercontent.com/a/chebet" })
}

async fn authorization_endpoint(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| query.get(name).cloned().unwrap_or_default();
    if field("client_id") != CLIENT_ID
        || field("response_type") != "code"
        || !field("scope").split(' ').any(|s| s == "openid")
        || field("redirect_uri").is_empty()
    {
        return (StatusCode::BAD_REQUEST, "Error 400: invalid_request").into_response();
    }
    let mut inner = shared.inner.lock().unwrap();
    let mut back = url::Url::parse(&field("redirect_uri")).unwrap();
    if inner.behaviour.deny {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user denied access")
            .append_pair("state", &field("state"));
    } else {
        inner.next_code += 1;
        let code = format!("4/0Ad-fake-code-{}", inner.next_code);
        let grant = Grant {
            client_id: field("client_id"),
            redirect_uri: field("redirect_uri"),
            nonce: query.get("nonce").cloned(),
            user: inner.behaviour.user.clone(),
            tamper: inner.behaviour.tamper.clone(),
        };
        inner.codes.insert(code.clone(), grant);
        back.query_pairs_mut()
            .append_pair("state", &field("state"))
            .append_pair("code", &code)
            .append_pair("scope", &field("scope"))
            .append_pair("authuser", "0")
            .append_pair("prompt", "consent");
    }
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

async fn token_endpoint(
    State(shared): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let refuse = |status: StatusCode, error: &str, description: &str| {
        (
            status,
            axum::Json(json!({ "error": error, "error_description": description })),
        )
            .into_response()
    };
    let mut inner = shared.inner.lock().unwrap();
    inner.token_requests.push(form.clone());
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    if field("grant_type") != "authorization_code" {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        );
    }
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    // A code is spent by its first exchange, right or wrong.
    let Some(grant) = inner.codes.remove(&field("code")) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    };
    if grant.client_id != field("client_id") {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    }
    if grant.redirect_uri != field("redirect_uri") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
            "Bad Request",
        );
    }
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": "https://accounts.google.com", "azp": CLIENT_ID, "aud": CLIENT_ID,
        "iat": now, "exp": now + 3600, "at_hash": "fake",
    });
    for (key, value) in grant.user.as_object().unwrap() {
        claims[key] = value.clone();
    }
    if let Some(nonce) = grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    if let Some(tamper) = grant.tamper {
        for (key, value) in tamper.as_object().unwrap() {
            claims[key] = value.clone();
        }
    }
    let id_token = sign_es256(&shared.key, KID, &claims);
    axum::Json(json!({
        "access_token": format!("ya29.fake-access-{}", field("code")),
        "expires_in": 3599,
        "refresh_token": "1//fake-refresh",
        "scope": "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile",
        "token_type": "Bearer",
        "id_token": id_token,
    }))
    .into_response()
}

/// A P-256 key pair: the signing key and the public key as a JWK.
pub fn es256_key(seed: u8, kid: &str) -> (EncodingKey, Value) {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use p256::pkcs8::EncodePrivateKey as _;
    let secret = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
    let pem = secret.to_pkcs8_pem(Default::default()).unwrap();
    let point = secret.public_key().to_encoded_point(false);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())
    });
    (EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(), jwk)
}

pub fn sign_es256(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}
