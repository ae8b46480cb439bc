//! Data sources: `gcp_container_cluster`, `gcp_sql_instance`, `gcp_project`.

use super::client::Api;
use super::policy::PolicyKey;
use super::{Gcp, container_cluster, jstr, sql_instance, str_attr};
use crate::foundation::schema::{AttrType, Attribute, ResourceSchema, SchemaKind};
use crate::providers::ProviderError;
use crate::value::Value;

fn project_arg() -> Attribute {
    Attribute::optional("project", AttrType::String, "Project; defaults to the provider's.")
}

/// `data.gcp_container_cluster`.
pub fn cluster_schema() -> ResourceSchema {
    let mut attributes = vec![
        Attribute::required("name", AttrType::String, "Cluster name."),
        Attribute::required("location", AttrType::String, "Region or zone."),
        project_arg(),
        Attribute::computed("workload_identity", AttrType::Bool, "Whether Workload Identity is on."),
        Attribute::computed("machine_type", AttrType::String, "Machine type of the first node pool."),
        Attribute::computed("release_channel", AttrType::String, "Release channel."),
    ];
    attributes.extend(container_cluster::computed_attrs());
    ResourceSchema {
        type_name: "gcp_container_cluster",
        kind: SchemaKind::Data,
        description: "Reads an existing GKE cluster (e.g. to configure a Kubernetes provider).",
        attributes,
    }
}

/// `data.gcp_sql_instance`.
pub fn sql_instance_schema() -> ResourceSchema {
    let c = |n, d| Attribute::computed(n, AttrType::String, d);
    ResourceSchema {
        type_name: "gcp_sql_instance",
        kind: SchemaKind::Data,
        description: "Reads an existing Cloud SQL instance.",
        attributes: vec![
            Attribute::required("name", AttrType::String, "Instance name."),
            project_arg(),
            c("region", "Region."),
            c("database_version", "e.g. POSTGRES_15."),
            c("tier", "Tier."),
            c("connection_name", "<project>:<region>:<name>."),
            c("public_ip", "PRIMARY address."),
            c("private_ip", "PRIVATE address."),
            c("self_link", "API URL."),
            Attribute::computed("database_flags", AttrType::Map(Box::new(AttrType::String)), "Flags."),
            Attribute::computed("port", AttrType::Number, "PostgreSQL port."),
        ],
    }
}

/// `data.gcp_project`.
pub fn project_schema() -> ResourceSchema {
    ResourceSchema {
        type_name: "gcp_project",
        kind: SchemaKind::Data,
        description: "Reads a project (its number, e.g. for service agents).",
        attributes: vec![
            Attribute::optional("project_id", AttrType::String, "Project id; defaults to the provider's."),
            Attribute::computed("number", AttrType::String, "Project number."),
            Attribute::computed("name", AttrType::String, "Display name."),
            Attribute::computed("lifecycle_state", AttrType::String, "ACTIVE, …"),
        ],
    }
}

/// `data.gcp_iam_policy`: the members of a project or service-account policy,
/// to report members skyform does not manage (member resources never remove
/// them).
pub fn iam_policy_schema() -> ResourceSchema {
    ResourceSchema {
        type_name: "gcp_iam_policy",
        kind: SchemaKind::Data,
        description: "Reads the unconditional bindings of a project's policy (or, with service_account, of that \
                      account's policy), e.g. to report members skyform does not manage: compare `bindings` with \
                      the members your gcp_*_iam_member resources claim.",
        attributes: vec![
            project_arg(),
            Attribute::optional("service_account", AttrType::String, "Read this service account's policy instead."),
            Attribute::optional("role", AttrType::String, "Only this role."),
            Attribute::computed(
                "bindings",
                AttrType::Map(Box::new(AttrType::List(Box::new(AttrType::String)))),
                "Role → members.",
            ),
            Attribute::computed("etag", AttrType::String, "The policy's etag."),
        ],
    }
}

/// Reads a data source.
pub async fn read(g: &Gcp, type_name: &str, args: &Value) -> Result<Value, ProviderError> {
    let project = str_attr(args, "project").unwrap_or_else(|| g.project.clone());
    match type_name {
        "gcp_container_cluster" => {
            let (Some(name), Some(location)) = (str_attr(args, "name"), str_attr(args, "location")) else {
                return Err(ProviderError::Permanent("name and location are required".into()));
            };
            let c = g
                .client
                .get_opt(Api::Container, &container_cluster::path(&project, &location, &name))
                .await?
                .ok_or_else(|| {
                    ProviderError::Permanent(format!("GKE cluster {name:?} not found in {project}/{location}"))
                })?;
            Ok(Value::Map(container_cluster::attrs_of(&c, &project)))
        }
        "gcp_sql_instance" => {
            let name = str_attr(args, "name").ok_or_else(|| ProviderError::Permanent("name is required".into()))?;
            let i = g.client.get_opt(Api::Sql, &sql_instance::path(&project, &name)).await?.ok_or_else(|| {
                ProviderError::Permanent(format!("Cloud SQL instance {name:?} not found in {project}"))
            })?;
            let mut a = sql_instance::attrs_of(&i, None);
            a.retain(|k, _| sql_instance_schema().attr(k).is_some());
            Ok(Value::Map(a))
        }
        "gcp_project" => {
            let id = str_attr(args, "project_id").unwrap_or(project);
            let p = g.client.get(Api::Crm, &format!("v1/projects/{id}")).await?;
            Ok(Value::map([
                ("project_id", Value::str(&id)),
                ("number", jstr(&p, "/projectNumber")),
                ("name", jstr(&p, "/name")),
                ("lifecycle_state", jstr(&p, "/lifecycleState")),
            ]))
        }
        "gcp_iam_policy" => {
            let key = match str_attr(args, "service_account") {
                Some(sa) => PolicyKey::ServiceAccount(super::iam_member::sa_email(&sa)),
                None => PolicyKey::Project(project),
            };
            let policy = g
                .policies
                .read(&g.client, &key)
                .await?
                .ok_or_else(|| ProviderError::Permanent(format!("no such service account: {key:?}")))?;
            let role = str_attr(args, "role");
            let mut bindings = std::collections::BTreeMap::new();
            for b in policy["bindings"].as_array().cloned().unwrap_or_default() {
                let Some(r) = b["role"].as_str() else { continue };
                if b.get("condition").is_some_and(|c| !c.is_null()) || role.as_deref().is_some_and(|x| x != r) {
                    continue;
                }
                let members = super::policy::members_of(&policy, r).into_iter().map(Value::str).collect();
                bindings.insert(r.to_string(), Value::List(members));
            }
            Ok(Value::map([("bindings", Value::Map(bindings)), ("etag", jstr(&policy, "/etag"))]))
        }
        t => Err(ProviderError::Permanent(format!("the gcp provider has no data source {t}"))),
    }
}
