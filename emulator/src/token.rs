//! Access tokens the emulator mints (shared floor): which principal each stands for, until it
//! expires. The token endpoint (`metadata::oauth`) and the metadata server (`metadata`) mint
//! them; the router accepts them as credentials and names the caller by them; the GKE webhooks
//! review them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long minted access tokens live (Google: one hour).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The principal an access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// A service account's email.
    pub email: String,
}

/// Access tokens minted by the emulator.
#[derive(Debug, Default)]
pub struct Tokens {
    minted: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl Tokens {
    /// Mints a token for `p`.
    pub fn mint(&self, p: Principal) -> String {
        let token = format!("ya29.emu-{}", crate::util::random_hex(40));
        let mut m = self.minted.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        m.retain(|_, (_, exp)| *exp > now);
        m.insert(token.clone(), (p, now + TOKEN_LIFETIME));
        token
    }

    /// The principal of a valid (unexpired) token.
    pub fn principal(&self, token: &str) -> Option<Principal> {
        let m = self.minted.lock().unwrap_or_else(|e| e.into_inner());
        m.get(token).filter(|(_, exp)| *exp > Instant::now()).map(|(p, _)| p.clone())
    }
}
