//! The naming rules the APIs impose, checked at `validate` (and again at plan,
//! once references are known) so that a bad name is refused at the door with
//! its location and the rule it breaks, instead of failing half-way through an
//! apply, or being read by a tool as something else (a Helm release name
//! `--kubeconfig=/etc/passwd` is a flag to helm).
//!
//! Sources: Kubernetes `IsDNS1123Label`/`IsDNS1123Subdomain`; Helm's
//! `ValidateReleaseName` (53 characters); the IAM API's `accountId`
//! (`[a-z]([-a-z0-9]*[a-z0-9])`, 6–30); Cloud SQL instance ids (lowercase
//! letters, digits, hyphens, starting with a letter); GKE cluster names (40);
//! PostgreSQL identifiers (at most 63 bytes, `NAMEDATALEN - 1`).

/// A naming rule of an API. Closed: each attribute that names something in an
/// API that constrains names carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameRule {
    /// An RFC 1123 label: a Kubernetes namespace.
    K8sLabel,
    /// An RFC 1123 subdomain: most Kubernetes object names.
    K8sSubdomain,
    /// A Helm release name.
    HelmRelease,
    /// A service account id (the part before `@`).
    GcpAccountId,
    /// A Cloud SQL instance id.
    SqlInstance,
    /// A GKE cluster name.
    GkeCluster,
    /// A PostgreSQL identifier (database, role): any text but control
    /// characters, at most 63 bytes.
    PgIdentifier,
    /// A Cloud SQL database or user name: a PostgreSQL identifier that is also one segment of the
    /// Admin API's URL paths (`…/databases/{name}`): not `.` or `..`, no `/`, `\`, `?`, `#` or `%`.
    SqlObject,
}

impl NameRule {
    /// The rule in words (for errors and the spec reference).
    pub fn describe(self) -> &'static str {
        match self {
            NameRule::K8sLabel => {
                "an RFC 1123 label: at most 63 characters, lowercase letters, digits and '-', starting and ending \
                 with a letter or digit"
            }
            NameRule::K8sSubdomain => {
                "an RFC 1123 subdomain: at most 253 characters, lowercase letters, digits, '-' and '.', starting and \
                 ending with a letter or digit"
            }
            NameRule::HelmRelease => {
                "a Helm release name: at most 53 characters, lowercase letters, digits, '-' and '.', starting and \
                 ending with a letter or digit"
            }
            NameRule::GcpAccountId => {
                "a service account id: 6 to 30 characters, lowercase letters, digits and '-', starting with a letter \
                 and not ending with '-'"
            }
            NameRule::SqlInstance => {
                "a Cloud SQL instance id: at most 98 characters, lowercase letters, digits and '-', starting with a \
                 letter and not ending with '-'"
            }
            NameRule::GkeCluster => {
                "a GKE cluster name: at most 40 characters, lowercase letters, digits and '-', starting with a letter \
                 and not ending with '-'"
            }
            NameRule::PgIdentifier => "a PostgreSQL name: 1 to 63 bytes, no control characters (NUL, newline...)",
            NameRule::SqlObject => {
                "a Cloud SQL database or user name: 1 to 63 bytes, no control characters, not `.` or `..`, and none \
                 of `/`, `\\`, `?`, `#`, `%` (it is a segment of the Admin API's URLs)"
            }
        }
    }

    /// Whether `s` follows the rule.
    pub fn allows(self, s: &str) -> bool {
        match self {
            NameRule::K8sLabel => s.len() <= 63 && label(s),
            NameRule::K8sSubdomain => s.len() <= 253 && s.split('.').all(label),
            NameRule::HelmRelease => s.len() <= 53 && s.split('.').all(label),
            NameRule::GcpAccountId => (6..=30).contains(&s.len()) && letter_first(s),
            NameRule::SqlInstance => (1..=98).contains(&s.len()) && letter_first(s),
            NameRule::GkeCluster => (1..=40).contains(&s.len()) && letter_first(s),
            NameRule::PgIdentifier => (1..=63).contains(&s.len()) && !s.chars().any(char::is_control),
            NameRule::SqlObject => {
                NameRule::PgIdentifier.allows(s) && s != "." && s != ".." && !s.contains(['/', '\\', '?', '#', '%'])
            }
        }
    }

    /// `Err` with the rule when `s` breaks it.
    pub fn check(self, s: &str) -> Result<(), String> {
        if self.allows(s) { Ok(()) } else { Err(self.describe().to_string()) }
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
fn letter_first(s: &str) -> bool {
    label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::NameRule::*;

    #[test]
    fn rules_accept_real_names_and_refuse_hostile_ones() {
        for (rule, good) in [
            (K8sLabel, "skypilot"),
            (K8sSubdomain, "skypilot-db-connection-uri"),
            (K8sSubdomain, "a.b-c"),
            (HelmRelease, "skypilot"),
            (GcpAccountId, "skypilot-cloud-sql-access"),
            (SqlInstance, "cloud-sql-skypilot-instance"),
            (GkeCluster, "skypilot-cluster"),
            (PgIdentifier, "skypilot-db"),
            (PgIdentifier, "sa@p.iam"),
            (SqlObject, "skypilot-cloud-sql-access@p.iam"),
            (SqlObject, "a..b"),
        ] {
            assert!(rule.allows(good), "{rule:?} {good}");
        }
        for (rule, bad) in [
            (K8sLabel, "Bad_Namespace"),
            (K8sLabel, "a.b"),
            (K8sLabel, ""),
            (K8sLabel, "-x"),
            (K8sSubdomain, "x."),
            (HelmRelease, "--kubeconfig=/etc/passwd"),
            (HelmRelease, &"a".repeat(54)),
            (GcpAccountId, "short"),
            (GcpAccountId, "9starts-with-digit"),
            (GcpAccountId, "ends-with-"),
            (SqlInstance, "Upper"),
            (GkeCluster, &"a".repeat(41)),
            (PgIdentifier, "x\0y"),
            (PgIdentifier, "line\nbreak"),
            (PgIdentifier, &"r".repeat(64)),
            (SqlObject, ".."),
            (SqlObject, "."),
            (SqlObject, "a/b"),
            (SqlObject, "a?b"),
            (SqlObject, "a#b"),
            (SqlObject, "a%2Fb"),
            (SqlObject, "a\nb"),
        ] {
            assert!(!rule.allows(bad), "{rule:?} {bad:?}");
            assert!(rule.check(bad).unwrap_err().contains("characters") || rule == PgIdentifier);
        }
    }
}
