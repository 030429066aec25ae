//! Lakebase wire ⇄ domain: records to `Project`/`Branch`/`Endpoint`, request
//! bodies to create requests, and `update_mask` paths to patches.

use kiln_api::postgres as wire;
use kiln_core::time::rfc3339;
use kiln_core::{Error, Result};
use kiln_lakebase::branches::{BranchPatch, NewBranch};
use kiln_lakebase::endpoints::EndpointPatch;
use kiln_lakebase::model::{
    duration, parse_duration, parse_timestamp, BranchRecord, ComputeSettings, EndpointRecord,
    EndpointType, ProjectRecord,
};
use kiln_lakebase::projects::{NewProject, ProjectPatch};
use kiln_lakebase::Lakebase;

fn defaults_wire(s: &ComputeSettings) -> wire::DefaultEndpointSettings {
    wire::DefaultEndpointSettings {
        autoscaling_limit_min_cu: Some(s.min_cu),
        autoscaling_limit_max_cu: Some(s.max_cu),
        suspend_timeout_duration: s.suspend_secs.map(duration),
        no_suspension: s.suspend_secs.is_none().then_some(true),
        pg_settings: (!s.pg_settings.is_empty()).then(|| s.pg_settings.clone()),
    }
}

fn tags_wire(tags: &[(String, String)]) -> Option<Vec<wire::CustomTag>> {
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|(k, v)| wire::CustomTag {
                key: Some(k.clone()),
                value: Some(v.clone()),
            })
            .collect()
    })
}

pub fn project(p: &ProjectRecord) -> wire::Project {
    let default_branch = format!("{}/branches/{}", p.name(), p.default_branch);
    let spec = wire::ProjectSpec {
        display_name: Some(p.display_name.clone()),
        pg_version: Some(p.pg_version),
        history_retention_duration: Some(duration(p.history_retention_secs)),
        default_endpoint_settings: Some(defaults_wire(&p.defaults)),
        default_branch: Some(default_branch.clone()),
        enable_pg_native_login: Some(p.enable_pg_native_login),
        custom_tags: tags_wire(&p.custom_tags),
        budget_policy_id: p.budget_policy_id.clone(),
    };
    let status = wire::ProjectStatus {
        display_name: spec.display_name.clone(),
        pg_version: spec.pg_version,
        history_retention_duration: spec.history_retention_duration.clone(),
        default_endpoint_settings: spec.default_endpoint_settings.clone(),
        default_branch: Some(default_branch),
        enable_pg_native_login: spec.enable_pg_native_login,
        custom_tags: spec.custom_tags.clone(),
        budget_policy_id: spec.budget_policy_id.clone(),
        owner: Some(p.owner.clone()),
        project_id: Some(p.project_id.clone()),
        branch_logical_size_limit_bytes: Some(8 << 40),
        ..Default::default()
    };
    wire::Project {
        name: Some(p.name()),
        project_id: Some(p.project_id.clone()),
        uid: Some(p.uid.clone()),
        create_time: Some(rfc3339(p.create_ms)),
        update_time: Some(rfc3339(p.update_ms)),
        spec: Some(spec),
        status: Some(status),
        ..Default::default()
    }
}

pub fn branch(lb: &Lakebase, b: &BranchRecord) -> wire::Branch {
    let size =
        kiln_lakebase::storage::size_of(&lb.config.root.join("b").join(&b.uid).join("pgdata"));
    let spec = wire::BranchSpec {
        source_branch: b.source_branch.clone(),
        is_protected: Some(b.is_protected),
        expire_time: b.expire_ms.map(rfc3339),
        no_expiry: b.expire_ms.is_none().then_some(true),
        ..Default::default()
    };
    let status = wire::BranchStatus {
        branch_id: Some(b.branch_id.clone()),
        current_state: Some(b.state.as_str().into()),
        default: Some(b.default),
        is_protected: Some(b.is_protected),
        logical_size_bytes: Some(size),
        source_branch: b.source_branch.clone(),
        source_branch_lsn: b.source_lsn.clone(),
        source_branch_time: b.source_time_ms.map(rfc3339),
        expire_time: b.expire_ms.map(rfc3339),
        state_change_time: Some(rfc3339(b.state_change_ms)),
        delete_time: None,
        purge_time: None,
        source_snapshot: b.source_snapshot.clone(),
    };
    wire::Branch {
        name: Some(b.name()),
        branch_id: Some(b.branch_id.clone()),
        parent: Some(format!("projects/{}", b.project_id)),
        uid: Some(b.uid.clone()),
        create_time: Some(rfc3339(b.create_ms)),
        update_time: Some(rfc3339(b.update_ms)),
        spec: Some(spec),
        status: Some(status),
    }
}

pub fn endpoint(lb: &Lakebase, e: &EndpointRecord) -> wire::Endpoint {
    let host = lb.endpoint_host(&e.uid);
    let settings = wire::EndpointSettings {
        pg_settings: (!e.settings.pg_settings.is_empty()).then(|| e.settings.pg_settings.clone()),
    };
    let spec = wire::EndpointSpec {
        endpoint_type: Some(e.endpoint_type.as_str().into()),
        autoscaling_limit_min_cu: Some(e.settings.min_cu),
        autoscaling_limit_max_cu: Some(e.settings.max_cu),
        suspend_timeout_duration: e.settings.suspend_secs.map(duration),
        no_suspension: e.settings.suspend_secs.is_none().then_some(true),
        disabled: Some(e.disabled),
        settings: Some(settings.clone()),
    };
    let read_only = e.endpoint_type == EndpointType::ReadOnly;
    let status = wire::EndpointStatus {
        endpoint_id: Some(e.endpoint_id.clone()),
        endpoint_type: spec.endpoint_type.clone(),
        current_state: Some(e.state.as_str().into()),
        autoscaling_limit_min_cu: spec.autoscaling_limit_min_cu,
        autoscaling_limit_max_cu: spec.autoscaling_limit_max_cu,
        suspend_timeout_duration: spec.suspend_timeout_duration.clone(),
        disabled: Some(e.disabled),
        settings: Some(settings),
        hosts: Some(wire::EndpointHosts {
            host: Some(host.clone()),
            read_only_host: read_only.then(|| host.clone()),
        }),
        host: Some(host),
        last_active_time: Some(rfc3339(e.last_active_ms)),
        current_cu: lb.current_cu(&e.uid),
    };
    wire::Endpoint {
        name: Some(e.name()),
        endpoint_id: Some(e.endpoint_id.clone()),
        parent: Some(e.branch_name()),
        uid: Some(e.uid.clone()),
        create_time: Some(rfc3339(e.create_ms)),
        update_time: Some(rfc3339(e.update_ms)),
        spec: Some(spec),
        status: Some(status),
    }
}

/// Compute settings from wire fields over a base.
fn settings_from(
    base: &ComputeSettings,
    min: Option<f64>,
    max: Option<f64>,
    suspend: Option<&str>,
    no_suspension: Option<bool>,
    pg_settings: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<ComputeSettings> {
    let mut s = base.clone();
    if let Some(v) = min {
        s.min_cu = v;
    }
    if let Some(v) = max {
        s.max_cu = v;
    }
    if let Some(d) = suspend {
        if no_suspension == Some(true) {
            return Err(Error::invalid(
                "Set either suspend_timeout_duration or no_suspension",
            ));
        }
        s.suspend_secs = Some(parse_duration("suspend_timeout_duration", d)?);
    } else if no_suspension == Some(true) {
        s.suspend_secs = None;
    }
    if let Some(p) = pg_settings {
        s.pg_settings = p.clone();
    }
    Ok(s)
}

fn defaults_from(
    base: &ComputeSettings,
    d: &wire::DefaultEndpointSettings,
) -> Result<ComputeSettings> {
    settings_from(
        base,
        d.autoscaling_limit_min_cu,
        d.autoscaling_limit_max_cu,
        d.suspend_timeout_duration.as_deref(),
        d.no_suspension,
        d.pg_settings.as_ref(),
    )
}

fn tags_from(tags: &[wire::CustomTag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            (
                t.key.clone().unwrap_or_default(),
                t.value.clone().unwrap_or_default(),
            )
        })
        .collect()
}

pub fn new_project(body: &wire::Project) -> Result<NewProject> {
    let spec = body.spec.clone().unwrap_or_default();
    let defaults = spec
        .default_endpoint_settings
        .as_ref()
        .map(|d| defaults_from(&ComputeSettings::default(), d))
        .transpose()?;
    let base = defaults.clone().unwrap_or_default();
    let initial_endpoint = body
        .initial_endpoint_spec
        .as_ref()
        .map(|i| {
            settings_from(
                &base,
                i.autoscaling_limit_min_cu,
                i.autoscaling_limit_max_cu,
                i.suspend_timeout_duration.as_deref(),
                i.no_suspension,
                None,
            )
        })
        .transpose()?;
    Ok(NewProject {
        display_name: spec.display_name,
        pg_version: spec.pg_version,
        history_retention_secs: spec
            .history_retention_duration
            .as_deref()
            .map(|d| parse_duration("history_retention_duration", d))
            .transpose()?,
        defaults,
        enable_pg_native_login: spec.enable_pg_native_login.unwrap_or(false),
        custom_tags: tags_from(spec.custom_tags.as_deref().unwrap_or_default()),
        budget_policy_id: spec.budget_policy_id,
        initial_endpoint,
        initial_branch_protected: body
            .initial_branch_spec
            .as_ref()
            .and_then(|b| b.is_protected)
            .unwrap_or(false),
    })
}

/// The mask's paths; `update_mask` is required.
pub fn mask(update_mask: Option<&str>) -> Result<Vec<String>> {
    let paths: Vec<String> = update_mask
        .unwrap_or("")
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask is required: name the fields to change, e.g. spec.display_name",
        ));
    }
    Ok(paths)
}

fn unknown(path: &str) -> Error {
    Error::invalid(format!(
        "Field '{path}' cannot be updated (unknown or immutable)"
    ))
}

pub fn project_patch(
    current: &ProjectRecord,
    body: &wire::Project,
    paths: &[String],
) -> Result<ProjectPatch> {
    let spec = body.spec.clone().unwrap_or_default();
    let mut patch = ProjectPatch::default();
    for path in paths {
        let all = path == "*" || path == "spec";
        let p = path.replace(
            "spec.project_default_settings",
            "spec.default_endpoint_settings",
        );
        if all || p == "spec.display_name" {
            patch.display_name = spec
                .display_name
                .clone()
                .or_else(|| all.then(|| current.display_name.clone()));
        }
        if all || p == "spec.history_retention_duration" {
            if let Some(d) = spec.history_retention_duration.as_deref() {
                patch.history_retention_secs =
                    Some(parse_duration("history_retention_duration", d)?);
            }
        }
        if all || p.starts_with("spec.default_endpoint_settings") {
            let d = spec.default_endpoint_settings.clone().unwrap_or_default();
            patch.defaults = Some(defaults_from(&current.defaults, &d)?);
        }
        if all || p == "spec.custom_tags" {
            patch.custom_tags = Some(tags_from(spec.custom_tags.as_deref().unwrap_or_default()));
        }
        if all || p == "spec.enable_pg_native_login" {
            patch.enable_pg_native_login = spec.enable_pg_native_login.or(Some(false));
        }
        if all || p == "spec.budget_policy_id" {
            patch.budget_policy_id = Some(spec.budget_policy_id.clone());
        }
        if all || p == "spec.default_branch" {
            patch.default_branch = spec.default_branch.clone();
        }
        let known = all
            || p.starts_with("spec.default_endpoint_settings")
            || [
                "spec.display_name",
                "spec.history_retention_duration",
                "spec.custom_tags",
                "spec.enable_pg_native_login",
                "spec.budget_policy_id",
                "spec.default_branch",
            ]
            .contains(&p.as_str());
        if !known {
            return Err(unknown(path));
        }
    }
    Ok(patch)
}

/// Expiry from a branch spec: `Some(None)` = no expiry, `None` = unset.
fn expiry(spec: &wire::BranchSpec) -> Result<Option<Option<i64>>> {
    expiry_of(&spec.ttl, &spec.expire_time, spec.no_expiry)
}

/// Expiry from `ttl` / `expire_time` / `no_expiry` (branches and snapshots).
pub fn expiry_of(
    ttl: &Option<String>,
    expire_time: &Option<String>,
    no_expiry: Option<bool>,
) -> Result<Option<Option<i64>>> {
    let now = kiln_core::time::now_ms();
    match (ttl, expire_time, no_expiry) {
        (Some(ttl), None, None | Some(false)) => {
            Ok(Some(Some(now + parse_duration("ttl", ttl)? as i64 * 1000)))
        }
        (None, Some(t), None | Some(false)) => Ok(Some(Some(parse_timestamp("expire_time", t)?))),
        (None, None, Some(true)) => Ok(Some(None)),
        (None, None, _) => Ok(None),
        _ => Err(Error::invalid(
            "Set only one of ttl, expire_time and no_expiry",
        )),
    }
}

pub fn new_branch(body: &wire::Branch) -> Result<NewBranch> {
    let spec = body.spec.clone().unwrap_or_default();
    Ok(NewBranch {
        source_branch: spec.source_branch.clone(),
        source_lsn: spec.source_branch_lsn.clone(),
        source_time_ms: spec
            .source_branch_time
            .as_deref()
            .map(|t| parse_timestamp("source_branch_time", t))
            .transpose()?,
        source_snapshot: spec.source_snapshot.clone().filter(|s| !s.is_empty()),
        is_protected: spec.is_protected.unwrap_or(false),
        expire_ms: expiry(&spec)?.flatten(),
    })
}

pub fn branch_patch(body: &wire::Branch, paths: &[String]) -> Result<BranchPatch> {
    let spec = body.spec.clone().unwrap_or_default();
    let mut patch = BranchPatch::default();
    for path in paths {
        let all = path == "*" || path == "spec";
        match path.as_str() {
            _ if all => {
                patch.is_protected = spec.is_protected;
                patch.expire_ms = expiry(&spec)?;
            }
            "spec.is_protected" => patch.is_protected = Some(spec.is_protected.unwrap_or(false)),
            "spec.expiration" | "spec.ttl" | "spec.expire_time" | "spec.no_expiry" => {
                patch.expire_ms = Some(expiry(&spec)?.flatten());
            }
            _ => return Err(unknown(path)),
        }
    }
    Ok(patch)
}

pub fn endpoint_settings(
    base: &ComputeSettings,
    spec: &wire::EndpointSpec,
) -> Result<ComputeSettings> {
    settings_from(
        base,
        spec.autoscaling_limit_min_cu,
        spec.autoscaling_limit_max_cu,
        spec.suspend_timeout_duration.as_deref(),
        spec.no_suspension,
        spec.settings.as_ref().and_then(|s| s.pg_settings.as_ref()),
    )
}

pub fn endpoint_patch(
    current: &EndpointRecord,
    body: &wire::Endpoint,
    paths: &[String],
) -> Result<EndpointPatch> {
    let spec = body.spec.clone().unwrap_or_default();
    let mut patch = EndpointPatch::default();
    let mut settings = current.settings.clone();
    for path in paths {
        let all = path == "*" || path == "spec";
        match path.as_str() {
            _ if all => {
                settings = endpoint_settings(&settings, &spec)?;
                patch.disabled = spec.disabled;
            }
            "spec.autoscaling_limit_min_cu" => {
                settings.min_cu = spec.autoscaling_limit_min_cu.unwrap_or(settings.min_cu)
            }
            "spec.autoscaling_limit_max_cu" => {
                settings.max_cu = spec.autoscaling_limit_max_cu.unwrap_or(settings.max_cu)
            }
            "spec.suspend_timeout_duration" | "spec.no_suspension" | "spec.suspension" => {
                settings = settings_from(
                    &settings,
                    None,
                    None,
                    spec.suspend_timeout_duration.as_deref(),
                    spec.no_suspension,
                    None,
                )?;
            }
            "spec.settings" | "spec.settings.pg_settings" => {
                settings.pg_settings = spec
                    .settings
                    .as_ref()
                    .and_then(|s| s.pg_settings.clone())
                    .unwrap_or_default();
            }
            "spec.disabled" => patch.disabled = Some(spec.disabled.unwrap_or(false)),
            _ => return Err(unknown(path)),
        }
    }
    patch.settings = Some(settings);
    Ok(patch)
}
