//! `POST /v1/dev/token` (dev only, where `DEV_TOKENS` is on): a short-lived token for any user,
//! minted by the core ([`dev_token::mint`]).

use super::{config, http, now, setting, Call};
use crate::core::dev_token;
use crate::core::error::{Error, ErrorCode};
use crate::core::gate::Asked;
use worker::{Env, Response};

/// Whether `DEV_TOKENS` turns the route on; when it does not, the Worker answers 404.
pub(super) fn enabled(env: &Env) -> bool {
    dev_token::enabled(setting(env, "DEV_TOKENS").as_deref())
}

/// `200 {"token", "user", "expires"}` for a `{"user", "ttl"?}` body.
pub(super) async fn token(call: &mut Call, env: &Env) -> Result<Response, Error> {
    let own = call.url.origin().ascii_serialization();
    if !dev_token::origin_may_mint(call.header("origin").as_deref(), &own) {
        return Err(Error::new(
            ErrorCode::Forbidden,
            "dev tokens are minted only for this server's own pages",
        ));
    }
    let body = call.body(dev_token::MAX_BODY_BYTES).await?;
    let config = config(env)?;
    http::json(200, &dev_token::mint(&body, &config.auth, now())?)
}
