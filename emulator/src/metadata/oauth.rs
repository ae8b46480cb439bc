//! The OAuth 2.0 token endpoint service-account key files point at (`token_uri`), on the API
//! floor beside the metadata server that mints the same tokens: `POST /token` with the JWT-bearer
//! grant (RFC 7523), as Google's `https://oauth2.googleapis.com/token` takes it from the Go, Python and Java auth libraries
//! (and so from the Cloud SQL Auth Proxy's `--credentials-file`).
//!
//! The assertion is an RS256 JWS whose header names the key (`kid` = `private_key_id`) and whose
//! claims say `iss` = the account's email, `aud` = the token URI, and `iat`/`exp` at most an hour
//! apart. Its signature is checked against the public key of a key created through the IAM API:
//! a deleted key, a disabled or deleted account, a bad signature or an expired assertion is
//! refused with Google's `invalid_grant` shape. The answer is an access token for that principal,
//! valid one hour, which the emulator then accepts like its configured token.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::{Value, json};

use crate::app::{App, lock};
use crate::http::json_response;
use crate::token::{Principal, TOKEN_LIFETIME};

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(status, &json!({"error": error, "error_description": description}))
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let d =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (d(k), d(v))
        })
        .collect()
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Handles `POST /token`.
pub fn handle(app: &App, body: &[u8]) -> Response {
    let token_uri = format!("{}token", app.base_url);
    let f = form(body);
    if f.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type: the emulator supports urn:ietf:params:oauth:grant-type:jwt-bearer",
        );
    }
    let Some(assertion) = f.get("assertion") else { return invalid_grant("Invalid JWT: missing assertion.") };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [h, c, s] = parts.as_slice() else { return invalid_grant("Invalid JWT Signature.") };
    let (Some(header), Some(claims), Some(sig)) = (b64url(h), b64url(c), b64url(s)) else {
        return invalid_grant("Invalid JWT Signature.");
    };
    let header: Value = serde_json::from_slice(&header).unwrap_or(Value::Null);
    let claims: Value = serde_json::from_slice(&claims).unwrap_or(Value::Null);
    if header["alg"] != "RS256" {
        return invalid_grant("Invalid JWT Signature.");
    }
    let iss = claims["iss"].as_str().unwrap_or_default().to_string();
    let kid = header["kid"].as_str().unwrap_or_default().to_string();
    // The account and its key, as created through the IAM API.
    let public_pem = {
        let st = lock(&app.state);
        let Some(sa) = st.iam.accounts.get(&iss) else { return invalid_grant("Invalid grant: account not found") };
        if sa.resource["disabled"] == json!(true) {
            return invalid_grant("Invalid grant: account not found");
        }
        let key = match (kid.is_empty(), sa.keys.get(&kid)) {
            (false, Some(k)) => Some(k.clone()),
            // Without `kid`, any of the account's keys may have signed it.
            (true, _) => None,
            (false, None) => return invalid_grant("Invalid JWT Signature."),
        };
        let keys: Vec<Value> = match key {
            Some(k) => vec![k],
            None => sa.keys.values().cloned().collect(),
        };
        keys.iter()
            .filter_map(|k| k["publicKeyData"].as_str())
            .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter_map(|b| String::from_utf8(b).ok())
            .collect::<Vec<_>>()
    };
    let signed = format!("{h}.{c}");
    let verified = public_pem.iter().any(|pem| {
        let Ok(key) = rsa::RsaPublicKey::from_public_key_pem(pem) else { return false };
        let Ok(sig) = Signature::try_from(sig.as_slice()) else { return false };
        VerifyingKey::<rsa::sha2::Sha256>::new(key).verify(signed.as_bytes(), &sig).is_ok()
    });
    if !verified {
        return invalid_grant("Invalid JWT Signature.");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    // The assertion is for this endpoint (a JWT made for another audience is no grant here).
    if claims["aud"].as_str() != Some(token_uri.as_str()) {
        return invalid_grant("Invalid JWT: the audience (aud) must be the token URI.");
    }
    let (iat, exp) = (claims["iat"].as_i64().unwrap_or(0), claims["exp"].as_i64().unwrap_or(0));
    let lifetime = exp.checked_sub(iat).unwrap_or(i64::MAX);
    if exp <= now - 30 || iat > now + 300 || !(0..=3600 + 60).contains(&lifetime) {
        return invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let token = app.tokens.mint(Principal { email: iss });
    json_response(
        StatusCode::OK,
        &json!({"access_token": token, "expires_in": TOKEN_LIFETIME.as_secs() - 1, "token_type": "Bearer"}),
    )
}
