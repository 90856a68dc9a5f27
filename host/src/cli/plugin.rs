//! `weir plugin`: manage a broker's policy plugins over its HTTP admin API (`install`, `list`,
//! `activate`, `rollback`, `remove`), and check a component locally, without a broker (`test`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::CliError;
use crate::policy::conformance::{Outcome, ScenarioFile};
use crate::policy::{PluginInfo, Policies};

/// The admin API of a broker started with no flags (`admin.listener`'s default).
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9644";

/// How long one admin request may take (an install compiles and tests the component).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest admin API answer read.
const RESPONSE_MAX_BYTES: u64 = 16 << 20;

#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    /// The broker's HTTP admin API (its `admin.listener`).
    #[arg(long, global = true, value_name = "URL", default_value = DEFAULT_ADMIN_URL)]
    pub admin_url: String,
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Install a component (conformance scenarios run first); it runs once activated.
    Install {
        /// The component (.wasm).
        file: PathBuf,
        /// The plugin's name (1-64 of a-z, A-Z, 0-9, '-', '_', '.').
        #[arg(long)]
        name: String,
        /// The version; default: one more than the newest numeric version.
        #[arg(long)]
        version: Option<String>,
    },
    /// List every plugin: built-ins first, then the installed ones.
    List,
    /// Make a version current: broker-wide for its kind, or for one topic with --topic.
    Activate {
        name: String,
        /// Default: the newest installed version.
        #[arg(long)]
        version: Option<String>,
        /// Bind this topic to the plugin (its `policy.<kind>` config) instead of the whole broker.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Return to the version current before the last activation.
    Rollback { name: String },
    /// Uninstall every version (refused while the plugin is in use).
    Remove { name: String },
    /// Run the conformance scenarios (and yours) on a component, here, without a broker.
    Test {
        /// The component (.wasm).
        file: PathBuf,
        /// More scenarios: `{"scenarios": [{"name": ..., "partition": {...}, "expect": {...}}]}`.
        #[arg(long, value_name = "FILE.json")]
        scenarios: Option<PathBuf>,
    },
}

pub fn run(args: PluginArgs) -> Result<(), CliError> {
    let admin = Admin::new(&args.admin_url);
    match args.command {
        PluginCommand::Install {
            file,
            name,
            version,
        } => {
            let bytes = read_file(&file)?;
            let mut query = vec![("name", name.as_str())];
            if let Some(version) = &version {
                query.push(("version", version));
            }
            let info: PluginInfo = admin.post("/v1/plugins", &query, Body::Wasm(bytes))?;
            let version = version
                .or_else(|| info.versions.last().map(|v| v.version.clone()))
                .unwrap_or_default();
            println!(
                "Installed {} plugin '{}' version {version}. Activate it with: weir plugin activate {} --version {version}",
                info.kind.interface(),
                info.name,
                info.name
            );
        }
        PluginCommand::List => {
            #[derive(Deserialize)]
            struct List {
                plugins: Vec<PluginInfo>,
            }
            let list: List = admin.get("/v1/plugins")?;
            print!("{}", format_list(&list.plugins));
        }
        PluginCommand::Activate {
            name,
            version,
            topic,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(version) = version {
                body.insert("version".into(), version.into());
            }
            if let Some(topic) = &topic {
                body.insert("topic".into(), topic.clone().into());
            }
            let info: PluginInfo = admin.post(
                &format!("/v1/plugins/{}/activate", segment(&name)),
                &[],
                Body::Json(serde_json::Value::Object(body)),
            )?;
            let version = info.current_version.as_deref().unwrap_or("-");
            match topic {
                Some(topic) => println!(
                    "Activated plugin '{}' version {version} for topic '{topic}' ({}={}).",
                    info.name,
                    info.kind.topic_config(),
                    info.name
                ),
                None => println!(
                    "Activated plugin '{}' version {version} as the broker-wide {} plugin.",
                    info.name,
                    info.kind.interface()
                ),
            }
        }
        PluginCommand::Rollback { name } => {
            let info: PluginInfo = admin.post(
                &format!("/v1/plugins/{}/rollback", segment(&name)),
                &[],
                Body::Empty,
            )?;
            println!(
                "Rolled back plugin '{}' to version {}.",
                info.name,
                info.current_version.as_deref().unwrap_or("-")
            );
        }
        PluginCommand::Remove { name } => {
            let _: serde_json::Value = admin.delete(&format!("/v1/plugins/{}", segment(&name)))?;
            println!("Removed plugin '{name}'.");
        }
        PluginCommand::Test { file, scenarios } => test(&file, scenarios.as_deref())?,
    }
    Ok(())
}

/// `weir plugin test`: the built-in scenarios of the component's kind, then the file's.
fn test(file: &Path, scenarios: Option<&Path>) -> Result<(), CliError> {
    let bytes = read_file(file)?;
    let scenarios = match scenarios {
        None => Vec::new(),
        Some(path) => {
            let text = read_file(path)?;
            serde_json::from_slice::<ScenarioFile>(&text)
                .map_err(|error| {
                    CliError::Plugin(format!(
                        "{} is not a scenarios file ({{\"scenarios\": [...]}}): {error}",
                        path.display()
                    ))
                })?
                .scenarios
        }
    };
    let policies = Policies::open(None, crate::config::BrokerConfig::default().policy)
        .map_err(|error| CliError::Plugin(format!("cannot start the plugin runtime: {error:#}")))?;
    let (kind, outcomes) = policies
        .test(&bytes, &scenarios)
        .map_err(|error| CliError::Plugin(one_line(&format!("{}: {error:#}", file.display()))))?;
    print!("{}", format_outcomes(&outcomes));
    let failed = outcomes.iter().filter(|outcome| !outcome.passed).count();
    println!(
        "{} plugin {}: {} of {} scenarios pass",
        kind.interface(),
        file.display(),
        outcomes.len() - failed,
        outcomes.len()
    );
    if failed > 0 {
        return Err(CliError::Plugin(format!(
            "{} fails {failed} of {} scenarios",
            file.display(),
            outcomes.len()
        )));
    }
    Ok(())
}

/// One line per scenario: PASS or FAIL, its name, the plugin's decision, and what was wrong.
pub fn format_outcomes(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        let verdict = if outcome.passed { "PASS" } else { "FAIL" };
        out.push_str(&format!(
            "{verdict}  {}  =>  {}\n",
            outcome.name, outcome.decision
        ));
        if let Some(problem) = &outcome.problem {
            out.push_str(&format!("      {problem}\n"));
        }
    }
    out
}

/// The `list` table: name, kind, current version, installed versions, flags.
pub fn format_list(plugins: &[PluginInfo]) -> String {
    let rows: Vec<[String; 5]> = plugins
        .iter()
        .map(|plugin| {
            let mut flags = Vec::new();
            if plugin.builtin {
                flags.push("built-in");
            }
            if plugin.default_for_kind {
                flags.push("broker-wide");
            }
            if plugin.quarantined {
                flags.push("quarantined");
            }
            [
                plugin.name.clone(),
                plugin.kind.interface().to_string(),
                plugin
                    .current_version
                    .clone()
                    .unwrap_or_else(|| "-".to_string()),
                plugin
                    .versions
                    .iter()
                    .map(|v| v.version.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                if flags.is_empty() {
                    "-".to_string()
                } else {
                    flags.join(",")
                },
            ]
        })
        .collect();
    let header = ["NAME", "KIND", "CURRENT", "VERSIONS", "FLAGS"].map(str::to_string);
    let mut widths = header.clone().map(|column| column.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A message on one line: wasmtime's errors can span several.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|error| CliError::Plugin(format!("cannot read {}: {error}", path.display())))
}

/// A plugin name as one URL path segment (names are [a-zA-Z0-9._-]; anything else is escaped
/// so the broker answers "no plugin named ..." instead of another endpoint).
fn segment(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

enum Body {
    Empty,
    Wasm(Vec<u8>),
    Json(serde_json::Value),
}

/// A broker's admin API.
struct Admin {
    base: String,
    agent: ureq::Agent,
}

impl Admin {
    fn new(url: &str) -> Admin {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(ADMIN_TIMEOUT))
            .build()
            .into();
        Admin {
            base: url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        self.finish("GET", &url, self.agent.get(&url).call())
    }

    fn delete<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        self.finish("DELETE", &url, self.agent.delete(&url).call())
    }

    fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Body,
    ) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url);
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        let response = match body {
            Body::Empty => request.send_empty(),
            Body::Wasm(bytes) => request.content_type("application/wasm").send(&bytes[..]),
            Body::Json(value) => request
                .content_type("application/json")
                .send(value.to_string().as_bytes()),
        };
        self.finish("POST", &url, response)
    }

    /// The JSON answer of a 2xx response; otherwise the broker's `error` message.
    fn finish<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, CliError> {
        let (_, body) = self.successful(method, url, response)?;
        serde_json::from_slice(&body).map_err(|error| {
            CliError::Plugin(format!(
                "{method} {url}: unexpected answer ({error}): {}",
                String::from_utf8_lossy(&body)
            ))
        })
    }

    /// The headers and body (at most [`RESPONSE_MAX_BYTES`]) of a 2xx response; otherwise the
    /// broker's `error` message.
    fn successful(
        &self,
        method: &str,
        url: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(ureq::http::HeaderMap, Vec<u8>), CliError> {
        let mut response = response.map_err(|error| {
            CliError::Plugin(format!(
                "cannot reach the admin API at {}: {error} (is `weir serve` running there? see --admin-url)",
                self.base
            ))
        })?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(RESPONSE_MAX_BYTES)
            .read_to_vec()
            .map_err(|error| {
                CliError::Plugin(format!("{method} {url}: cannot read the answer: {error}"))
            })?;
        if !status.is_success() {
            #[derive(Deserialize)]
            struct ErrorBody {
                error: String,
            }
            let text = String::from_utf8_lossy(&body);
            let message = serde_json::from_str::<ErrorBody>(&text)
                .map(|body| body.error)
                .unwrap_or_else(|_| text.trim().to_string());
            return Err(CliError::Plugin(format!(
                "{method} {url}: HTTP {}: {message}",
                status.as_u16()
            )));
        }
        Ok((response.headers().clone(), body))
    }
}

/// The component of plugin `name`'s current version and that version, from a broker's admin
/// API (`GET /v1/plugins/{name}/component`).
pub fn fetch_component(admin_url: &str, name: &str) -> Result<(String, Vec<u8>), CliError> {
    let admin = Admin::new(admin_url);
    let url = format!("{}/v1/plugins/{name}/component", admin.base);
    let (headers, body) = admin.successful("GET", &url, admin.agent.get(&url).call())?;
    let version = headers
        .get(crate::admin::plugins::VERSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            CliError::Plugin(format!(
                "GET {url}: the answer has no {} header",
                crate::admin::plugins::VERSION_HEADER
            ))
        })?;
    Ok((version.to_string(), body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyKind;
    use crate::policy::registry::InstalledVersion;

    #[test]
    fn the_list_is_a_table() {
        let version = |v: &str| InstalledVersion {
            version: v.to_string(),
            sha256: String::new(),
            installed_at_ms: 0,
        };
        let plugins = vec![
            PluginInfo {
                name: "partitioner-default".into(),
                kind: PolicyKind::Partitioner,
                builtin: true,
                current_version: Some("0.1.0".into()),
                versions: vec![version("0.1.0")],
                default_for_kind: false,
                quarantined: false,
                activated_at: None,
            },
            PluginInfo {
                name: "prefix".into(),
                kind: PolicyKind::Partitioner,
                builtin: false,
                current_version: None,
                versions: vec![version("1"), version("2")],
                default_for_kind: true,
                quarantined: true,
                activated_at: Some(7),
            },
        ];
        assert_eq!(
            format_list(&plugins),
            "NAME                 KIND         CURRENT  VERSIONS  FLAGS\n\
             partitioner-default  partitioner  0.1.0    0.1.0     built-in\n\
             prefix               partitioner  -        1,2       broker-wide,quarantined\n"
        );
    }

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(segment("my-plugin_1.0"), "my-plugin_1.0");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
