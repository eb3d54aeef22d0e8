//! HS256 tokens for the generator's users, signed with the dev secret all three servers accept.

use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::OnceLock;

static SECRET: OnceLock<String> = OnceLock::new();

/// Sets the secret (from `.dev.vars.example`); call once before minting.
pub fn set_secret(secret: String) {
    let _ = SECRET.set(secret);
}

/// A token for `user` valid for `ttl_secs`.
pub fn mint(user: &str, ttl_secs: u64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let header = Base64UrlUnpadded::encode_string(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({ "sub": user, "iat": now, "exp": now + ttl_secs }).to_string();
    let body = format!("{header}.{}", Base64UrlUnpadded::encode_string(claims.as_bytes()));
    let secret = SECRET.get().map(String::as_str).unwrap_or("");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body.as_bytes());
    format!("{body}.{}", Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes()))
}

/// Reads `NAME="value"` from a dotenv-style file.
pub fn read_var(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_quoted_dotenv_values() {
        let text = "# c\nJWT_SECRET=\"abc\"\nOTHER='x y'\n";
        assert_eq!(super::read_var(text, "JWT_SECRET").as_deref(), Some("abc"));
        assert_eq!(super::read_var(text, "OTHER").as_deref(), Some("x y"));
        assert_eq!(super::read_var(text, "NONE"), None);
    }
}
