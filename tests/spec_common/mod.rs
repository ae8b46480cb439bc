//! Shared by the spec tests: provider schemas to validate against.
#![allow(dead_code)]

use skyform::foundation::schema::{AttrType, Attribute, ProviderSchema, ResourceSchema, SchemaKind};

fn list(t: AttrType) -> AttrType {
    AttrType::List(Box::new(t))
}
fn map(t: AttrType) -> AttrType {
    AttrType::Map(Box::new(t))
}

/// A GCP-like and a Kubernetes-like provider, enough to exercise every check.
pub fn schemas() -> Vec<ProviderSchema> {
    vec![
        ProviderSchema {
            name: "gcp",
            type_prefix: "gcp_",
            config: vec![
                Attribute::required("project", AttrType::String, "GCP project"),
                Attribute::optional("region", AttrType::String, "default region"),
            ],
            reaches_services: false,
            types: vec![
                ResourceSchema {
                    type_name: "gcp_service_account",
                    kind: SchemaKind::Resource,
                    description: "a service account",
                    attributes: vec![
                        Attribute::required("account_id", AttrType::String, "").force_new(),
                        Attribute::optional("display_name", AttrType::String, ""),
                        Attribute::optional("disabled", AttrType::Bool, ""),
                        Attribute::computed("email", AttrType::String, ""),
                    ],
                },
                ResourceSchema {
                    type_name: "gcp_sql_database_instance",
                    kind: SchemaKind::Resource,
                    description: "a Cloud SQL instance",
                    attributes: vec![
                        Attribute::required("name", AttrType::String, "").force_new(),
                        Attribute::optional("tier", AttrType::String, ""),
                        Attribute::optional("disk_size_gb", AttrType::Number, ""),
                        Attribute::optional("flags", map(AttrType::String), ""),
                        Attribute::optional("authorized_networks", list(AttrType::String), ""),
                        Attribute::computed("connection_name", AttrType::String, ""),
                    ],
                },
                ResourceSchema {
                    type_name: "gcp_sql_user",
                    kind: SchemaKind::Resource,
                    description: "a Cloud SQL user",
                    attributes: vec![
                        Attribute::required("instance", AttrType::String, ""),
                        Attribute::required("name", AttrType::String, ""),
                        Attribute::optional("password", AttrType::String, "").write_only(),
                    ],
                },
                ResourceSchema {
                    type_name: "gcp_container_cluster",
                    kind: SchemaKind::Data,
                    description: "a GKE cluster",
                    attributes: vec![
                        Attribute::required("name", AttrType::String, ""),
                        Attribute::optional("location", AttrType::String, ""),
                        Attribute::computed("endpoint", AttrType::String, ""),
                        Attribute::computed("ca_certificate", AttrType::String, ""),
                    ],
                },
            ],
        },
        ProviderSchema {
            name: "kubernetes",
            type_prefix: "kubernetes_",
            config: vec![
                Attribute::optional("host", AttrType::String, ""),
                Attribute::optional("token", AttrType::String, "").sensitive(),
            ],
            reaches_services: false,
            types: vec![ResourceSchema {
                type_name: "kubernetes_secret",
                kind: SchemaKind::Resource,
                description: "a Secret",
                attributes: vec![
                    Attribute::required("name", AttrType::String, ""),
                    Attribute::optional("namespace", AttrType::String, "").default("default"),
                    Attribute::optional("data", map(AttrType::String), "").sensitive(),
                    Attribute::optional("manifest", AttrType::Any, ""),
                ],
            }],
        },
    ]
}
