//! What the auth service is configured with.

/// Auth settings, with GoTrue's defaults.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// HS256 secret shared with Supabase (`SUPABASE_JWT_SECRET`).
    pub jwt_secret: String,
    /// The public URL of this server or of the Supabase project: tokens carry `<site>/auth/v1`
    /// as their issuer.
    pub site_url: String,
    pub access_token_ttl_seconds: i64,
    /// A client that lost the answer to a refresh may present the old token again this long.
    pub refresh_reuse_interval_seconds: i64,
    /// Emails and phones count as confirmed without a code (sign-up, changes). Off unless the
    /// operator asks for it (`serve --demo`): a phone or email identifies a person only once a
    /// code sent to it has come back.
    pub autoconfirm: bool,
    pub disable_signup: bool,
    /// A password change from a session older than 24 hours needs the nonce of
    /// `GET /reauthenticate` (GoTrue's `SECURITY_UPDATE_PASSWORD_REQUIRE_REAUTHENTICATION`, the
    /// dashboard's "Secure password change"). Off by default, as on GoTrue and Supabase.
    pub update_password_require_reauthentication: bool,
    /// Recovery and OTP tokens expire after this long.
    pub otp_ttl_seconds: i64,
    /// OAuth client ids whose Google ID tokens are accepted (`aud`).
    pub google_client_ids: Vec<String>,
    pub google_jwks_url: String,
    /// A JWKS URL (a Supabase project's) whose keys also verify access tokens.
    pub jwks_url: Option<String>,
    /// The header a trusted reverse proxy puts the client address in (`X-Forwarded-For`);
    /// without it, the socket's peer address is the client.
    pub trusted_proxy_header: Option<String>,
    pub rate_limits: RateLimits,
    /// How failed passwords slow further attempts (see `gotrue::throttle`).
    pub password_failures: PasswordLimits,
    /// Opaque API keys accepted in `apikey` besides JWTs signed with the secret: a Supabase
    /// project's newer `sb_publishable_...` / `sb_secret_...` keys (`SUPABASE_ANON_KEY`,
    /// `SUPABASE_SERVICE_KEY`).
    pub opaque_api_keys: Vec<String>,
    /// How stale the per-request check of a token's session and user may be (see
    /// `gotrue::live`); zero asks the database on every request.
    pub session_check_ttl: std::time::Duration,
    /// Where users may be sent back after signing in (GoTrue's `SITE_URL`, `URI_ALLOW_LIST`).
    pub redirects: super::redirect::RedirectRules,
    /// The browser OAuth flow with Google (`/authorize`, `/callback`).
    pub google_oauth: GoogleOAuth,
}

/// The browser OAuth flow with Google: the web client is the first of `google_client_ids`,
/// and it needs its secret; without one, `/authorize?provider=google` is refused.
#[derive(Clone)]
pub struct GoogleOAuth {
    pub client_secret: Option<String>,
    /// Google's authorization endpoint, where the browser is sent.
    pub authorization_url: String,
    /// Google's token endpoint, where the callback trades the code (server to server).
    pub token_url: String,
    /// Where Google sends the user back (must be registered with the client at Google);
    /// `<site_url>/auth/v1/callback` unless set.
    pub redirect_uri: Option<String>,
    /// How long a flow may take, from `/authorize` to the exchange of its auth code
    /// (GoTrue's `FLOW_STATE_EXPIRY_DURATION`, 300 s at least).
    pub flow_state_ttl_seconds: i64,
}

impl Default for GoogleOAuth {
    fn default() -> Self {
        Self {
            client_secret: None,
            authorization_url: "https://accounts.google.com/o/oauth2/v2/auth".to_owned(),
            token_url: "https://oauth2.googleapis.com/token".to_owned(),
            redirect_uri: None,
            flow_state_ttl_seconds: 300,
        }
    }
}

/// The secret is never printed.
impl std::fmt::Debug for GoogleOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleOAuth")
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("authorization_url", &self.authorization_url)
            .field("token_url", &self.token_url)
            .field("redirect_uri", &self.redirect_uri)
            .field("flow_state_ttl_seconds", &self.flow_state_ttl_seconds)
            .finish()
    }
}

/// Requests allowed per window, per client address and per identifier (email or phone). The
/// token endpoint counts per address only, password grants and refresh grants apart (a wrong
/// password is throttled per account by [`PasswordLimits`]).
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub window_seconds: i64,
    pub signup: i32,
    pub token: i32,
    pub otp: i32,
    pub recover: i32,
    pub verify: i32,
}

impl Default for RateLimits {
    /// GoTrue's defaults: 30 per 5 minutes for sign-up, OTP, recover and verify, 150 for tokens.
    fn default() -> Self {
        Self {
            window_seconds: 300,
            signup: 30,
            token: 150,
            otp: 30,
            recover: 30,
            verify: 30,
        }
    }
}

/// Failed passwords: how many are free, per account and address and per account, and the
/// doubling wait after them.
#[derive(Debug, Clone, Copy)]
pub struct PasswordLimits {
    /// Failures for one account from one address before the wait starts.
    pub per_address: i32,
    /// Failures for one account from all addresses together before the wait starts.
    pub per_account: i32,
    /// The first wait; each further failure doubles it.
    pub backoff_seconds: i64,
    pub max_backoff_seconds: i64,
    /// A count whose last failure is older than this starts again.
    pub forget_after_seconds: i64,
}

impl Default for PasswordLimits {
    /// 5 failures per address and 20 per account, then 30 s, 60 s, 120 s... up to an hour.
    fn default() -> Self {
        Self {
            per_address: 5,
            per_account: 20,
            backoff_seconds: 30,
            max_backoff_seconds: 3600,
            forget_after_seconds: 24 * 3600,
        }
    }
}

impl AuthSettings {
    pub fn new(jwt_secret: impl Into<String>) -> Self {
        Self {
            jwt_secret: jwt_secret.into(),
            site_url: "http://127.0.0.1:3000".to_owned(),
            access_token_ttl_seconds: 3600,
            refresh_reuse_interval_seconds: 10,
            autoconfirm: false,
            disable_signup: false,
            update_password_require_reauthentication: false,
            otp_ttl_seconds: 3600,
            google_client_ids: Vec::new(),
            google_jwks_url: "https://www.googleapis.com/oauth2/v3/certs".to_owned(),
            jwks_url: None,
            trusted_proxy_header: None,
            rate_limits: RateLimits::default(),
            password_failures: PasswordLimits::default(),
            opaque_api_keys: Vec::new(),
            session_check_ttl: std::time::Duration::from_secs(5),
            redirects: super::redirect::RedirectRules::new("http://127.0.0.1:3000"),
            google_oauth: GoogleOAuth::default(),
        }
    }

    pub fn issuer(&self) -> String {
        format!("{}/auth/v1", self.site_url.trim_end_matches('/'))
    }

    /// The address Google sends users back to: this server's `/auth/v1/callback`.
    pub fn google_redirect_uri(&self) -> String {
        self.google_oauth
            .redirect_uri
            .clone()
            .unwrap_or_else(|| format!("{}/callback", self.issuer()))
    }
}
