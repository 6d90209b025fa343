//! The admin routes' bearer token: from `AUTHPULSE_ADMIN_TOKEN` or a file,
//! compared in constant time, never printed.

use std::path::Path;

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// Shortest token accepted: a guessable token guards nothing.
const MIN_TOKEN_BYTES: usize = 16;

#[derive(Clone)]
pub struct AdminToken(Vec<u8>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token given as text (surrounding whitespace and a final newline
    /// are not part of it).
    pub fn new(text: &str) -> Result<AdminToken, String> {
        let token = text.trim();
        if token.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "the admin token is {} bytes; at least {MIN_TOKEN_BYTES} are needed",
                token.len()
            ));
        }
        Ok(AdminToken(token.as_bytes().to_vec()))
    }

    /// The token in `path` (its whole content).
    pub fn from_file(path: &Path) -> Result<AdminToken, String> {
        let text = authpulse_engine::files::read_regular_text(path, 64 << 10, "token file")
            .map_err(|e| format!("read the admin token file {}: {e}", path.display()))?;
        AdminToken::new(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether `headers` carry exactly `Authorization: Bearer <this token>`
    /// (one space, nothing around the token).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .and_then(|v| v.strip_prefix(b"Bearer "))
        else {
            return false;
        };
        // Equal lengths are compared in constant time; a length differs
        // only for a wrong token, and says nothing of the right one's bytes.
        bool::from(given.ct_eq(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_is_admitted() {
        let token = AdminToken::new("s3cret-token-0123456789\n").unwrap();
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", value.parse().unwrap());
            token.admits(&headers)
        };
        assert!(with("Bearer s3cret-token-0123456789"));
        assert!(!with("Bearer s3cret-token-012345678"));
        assert!(!with("Bearer s3cret-token-0123456789x"));
        assert!(!with("Basic s3cret-token-0123456789"));
        assert!(!with("Bearer  s3cret-token-0123456789"));
        assert!(!with("Bearer s3cret-token-0123456789 "));
        assert!(!with("Bearer\ts3cret-token-0123456789"));
        assert!(!token.admits(&HeaderMap::new()));
        assert!(
            AdminToken::new("short")
                .unwrap_err()
                .contains("at least 16")
        );
        assert_eq!(format!("{token:?}"), "AdminToken(..)");
    }
}
