//! Cloud SQL enum values as numbers (API floor). Google's Rust SDK sends enums as their proto numbers
//! (`$alt=json;enum-encoding=int`), gcloud as names; the emulator stores names. Tables generated
//! from google-cloud-sql-v1's model (`From<i32>` and `From<&str>` impls).

use serde_json::Value;

const DATABASE_VERSION: &[(i64, &str)] = &[
    (0, "SQL_DATABASE_VERSION_UNSPECIFIED"),
    (2, "MYSQL_5_1"),
    (3, "MYSQL_5_5"),
    (5, "MYSQL_5_6"),
    (6, "MYSQL_5_7"),
    (9, "POSTGRES_9_6"),
    (10, "POSTGRES_11"),
    (11, "SQLSERVER_2017_STANDARD"),
    (14, "SQLSERVER_2017_ENTERPRISE"),
    (15, "SQLSERVER_2017_EXPRESS"),
    (16, "SQLSERVER_2017_WEB"),
    (18, "POSTGRES_10"),
    (19, "POSTGRES_12"),
    (20, "MYSQL_8_0"),
    (23, "POSTGRES_13"),
    (26, "SQLSERVER_2019_STANDARD"),
    (27, "SQLSERVER_2019_ENTERPRISE"),
    (28, "SQLSERVER_2019_EXPRESS"),
    (29, "SQLSERVER_2019_WEB"),
    (41, "MYSQL_8_0_18"),
    (85, "MYSQL_8_0_26"),
    (110, "POSTGRES_14"),
    (111, "MYSQL_8_0_27"),
    (132, "MYSQL_8_0_28"),
    (148, "MYSQL_8_0_29"),
    (172, "POSTGRES_15"),
    (174, "MYSQL_8_0_30"),
    (197, "MYSQL_8_0_31"),
    (199, "SQLSERVER_2022_STANDARD"),
    (200, "SQLSERVER_2022_ENTERPRISE"),
    (201, "SQLSERVER_2022_EXPRESS"),
    (202, "SQLSERVER_2022_WEB"),
    (213, "MYSQL_8_0_32"),
    (238, "MYSQL_8_0_33"),
    (239, "MYSQL_8_0_34"),
    (240, "MYSQL_8_0_35"),
    (241, "MYSQL_8_0_36"),
    (272, "POSTGRES_16"),
    (355, "MYSQL_8_0_37"),
    (357, "MYSQL_8_0_39"),
    (358, "MYSQL_8_0_40"),
    (398, "MYSQL_8_4"),
    (408, "POSTGRES_17"),
    (488, "MYSQL_8_0_41"),
    (489, "MYSQL_8_0_42"),
    (553, "MYSQL_8_0_43"),
    (554, "MYSQL_8_0_44"),
    (555, "MYSQL_8_0_45"),
    (556, "MYSQL_8_0_46"),
    (557, "POSTGRES_18"),
    (654, "MYSQL_9_7"),
];

const USER_TYPE: &[(i64, &str)] = &[
    (0, "BUILT_IN"),
    (1, "CLOUD_IAM_USER"),
    (2, "CLOUD_IAM_SERVICE_ACCOUNT"),
    (3, "CLOUD_IAM_GROUP"),
    (4, "CLOUD_IAM_GROUP_USER"),
    (5, "CLOUD_IAM_GROUP_SERVICE_ACCOUNT"),
    (7, "ENTRAID_USER"),
];

const AVAILABILITY_TYPE: &[(i64, &str)] = &[(0, "SQL_AVAILABILITY_TYPE_UNSPECIFIED"), (1, "ZONAL"), (2, "REGIONAL")];

const ACTIVATION_POLICY: &[(i64, &str)] =
    &[(0, "SQL_ACTIVATION_POLICY_UNSPECIFIED"), (1, "ALWAYS"), (2, "NEVER"), (3, "ON_DEMAND")];

const DATA_DISK_TYPE: &[(i64, &str)] = &[
    (0, "SQL_DATA_DISK_TYPE_UNSPECIFIED"),
    (1, "PD_SSD"),
    (2, "PD_HDD"),
    (3, "OBSOLETE_LOCAL_SSD"),
    (4, "HYPERDISK_BALANCED"),
];

const PRICING_PLAN: &[(i64, &str)] = &[(0, "SQL_PRICING_PLAN_UNSPECIFIED"), (1, "PACKAGE"), (2, "PER_USE")];

const EDITION: &[(i64, &str)] = &[(0, "EDITION_UNSPECIFIED"), (2, "ENTERPRISE"), (3, "ENTERPRISE_PLUS")];

const SSL_MODE: &[(i64, &str)] = &[
    (0, "SSL_MODE_UNSPECIFIED"),
    (1, "ALLOW_UNENCRYPTED_AND_ENCRYPTED"),
    (2, "ENCRYPTED_ONLY"),
    (3, "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"),
];

/// Replaces a number at JSON pointer `path` with its name from `table`.
fn name_at(v: &mut Value, path: &str, table: &[(i64, &str)]) {
    if let Some(slot) = v.pointer_mut(path) {
        if let Some(n) = slot.as_i64() {
            if let Some((_, name)) = table.iter().find(|(i, _)| *i == n) {
                *slot = Value::String((*name).to_string());
            }
        }
    }
}

/// Turns numeric enums of a `DatabaseInstance` body into names.
pub fn normalize_instance(v: &mut Value) {
    name_at(v, "/databaseVersion", DATABASE_VERSION);
    name_at(v, "/settings/availabilityType", AVAILABILITY_TYPE);
    name_at(v, "/settings/activationPolicy", ACTIVATION_POLICY);
    name_at(v, "/settings/dataDiskType", DATA_DISK_TYPE);
    name_at(v, "/settings/pricingPlan", PRICING_PLAN);
    name_at(v, "/settings/edition", EDITION);
    name_at(v, "/settings/ipConfiguration/sslMode", SSL_MODE);
}

/// Turns a numeric `User.type` into its name.
pub fn normalize_user(v: &mut Value) {
    name_at(v, "/type", USER_TYPE);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_become_names() {
        let mut i = json!({"databaseVersion": 172, "settings": {"availabilityType": 1, "edition": "ENTERPRISE"}});
        normalize_instance(&mut i);
        assert_eq!(
            i,
            json!({"databaseVersion": "POSTGRES_15", "settings": {"availabilityType": "ZONAL", "edition": "ENTERPRISE"}})
        );
        let mut u = json!({"type": 2});
        normalize_user(&mut u);
        assert_eq!(u["type"], "CLOUD_IAM_SERVICE_ACCOUNT");
    }
}
