//! Fault injection (shared floor): added latency and errors (429 with RetryInfo, 503, 500) by API method and rate,
//! decided by a seeded random generator so that a run is reproducible.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The faults in force, as set through `PUT /_emulator/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Reseeds the generator when given (else the configured seed is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Latency added to every API request.
    #[serde(default)]
    pub latency_ms: u64,
    /// Error rules, checked in order; the first that fires answers the request.
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// One error rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// API method name as counted in `/_emulator/stats` (`sql.instances.get`), a prefix ending in
    /// `*` (`sql.*`), or `*` for all.
    pub method: String,
    /// HTTP code to answer: 429, 503 or 500.
    pub code: u16,
    /// Probability in [0, 1] that a matching request fails.
    pub rate: f64,
    /// Extra latency for matching requests.
    #[serde(default)]
    pub latency_ms: u64,
    /// `RetryInfo.retryDelay` of a 429 (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<String>,
}

impl FaultRule {
    fn matches(&self, method: &str) -> bool {
        match self.method.strip_suffix('*') {
            Some(prefix) => method.starts_with(prefix),
            None => self.method == method,
        }
    }

    fn error(&self, method: &str) -> ApiError {
        match self.code {
            429 => ApiError::resource_exhausted(
                format!("Quota exceeded for {method} (injected by gcp-emulator)."),
                self.retry_delay.as_deref().unwrap_or("1s"),
            ),
            503 => ApiError::unavailable(format!(
                "The service is currently unavailable (injected by gcp-emulator for {method})."
            )),
            _ => ApiError::internal(format!("Internal error (injected by gcp-emulator for {method}).")),
        }
    }
}

/// The live fault state: the spec and the generator.
#[derive(Debug)]
pub struct Faults {
    spec: FaultSpec,
    rng: StdRng,
}

impl Faults {
    /// No faults; generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Faults { spec: FaultSpec::default(), rng: StdRng::seed_from_u64(seed) }
    }

    /// Validates and installs `spec`.
    pub fn set(&mut self, spec: FaultSpec) -> Result<(), String> {
        for r in &spec.rules {
            if ![429, 500, 503].contains(&r.code) {
                return Err(format!("rule for {}: code must be 429, 500 or 503", r.method));
            }
            if !(0.0..=1.0).contains(&r.rate) {
                return Err(format!("rule for {}: rate must be within [0, 1]", r.method));
            }
        }
        if let Some(seed) = spec.seed {
            self.rng = StdRng::seed_from_u64(seed);
        }
        self.spec = spec;
        Ok(())
    }

    /// The spec in force.
    pub fn spec(&self) -> &FaultSpec {
        &self.spec
    }

    /// Decides the fate of one call of `method`: the latency to add and the error to answer, if
    /// any. Every matching rule draws exactly one number, so a sequence of calls is reproducible
    /// for a given seed.
    pub fn decide(&mut self, method: &str) -> (Duration, Option<ApiError>) {
        let mut latency = self.spec.latency_ms;
        let mut error = None;
        for rule in &self.spec.rules {
            if !rule.matches(method) {
                continue;
            }
            latency = latency.max(self.spec.latency_ms + rule.latency_ms);
            let draw: f64 = self.rng.r#gen();
            if error.is_none() && draw < rule.rate {
                error = Some(rule.error(method));
            }
        }
        (Duration::from_millis(latency), error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate: f64, seed: u64) -> FaultSpec {
        FaultSpec {
            seed: Some(seed),
            latency_ms: 5,
            rules: vec![FaultRule { method: "sql.*".into(), code: 429, rate, latency_ms: 10, retry_delay: None }],
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let run = |seed| {
            let mut f = Faults::new(0);
            f.set(spec(0.5, seed)).unwrap();
            (0..64).map(|_| f.decide("sql.instances.get").1.is_some()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let hits = run(7).iter().filter(|x| **x).count();
        assert!((16..=48).contains(&hits), "about half should fail, got {hits}");
    }

    #[test]
    fn rules_match_by_prefix_and_add_latency() {
        let mut f = Faults::new(1);
        f.set(spec(1.0, 1)).unwrap();
        let (lat, err) = f.decide("sql.users.insert");
        assert_eq!(lat, Duration::from_millis(15));
        let err = err.unwrap();
        assert_eq!(err.http, 429);
        assert_eq!(err.body()["error"]["details"][0]["@type"], "type.googleapis.com/google.rpc.RetryInfo");
        let (lat, err) = f.decide("iam.serviceAccounts.get");
        assert_eq!(lat, Duration::from_millis(5));
        assert!(err.is_none());
    }

    #[test]
    fn invalid_rules_are_refused() {
        let mut f = Faults::new(1);
        let mut s = spec(1.5, 1);
        assert!(f.set(s.clone()).is_err());
        s.rules[0].rate = 0.5;
        s.rules[0].code = 404;
        assert!(f.set(s).is_err());
    }
}
