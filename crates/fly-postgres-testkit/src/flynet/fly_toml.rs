//! fly.toml, read for what Fly does with it: the app's name and primary
//! region, `[env]`, how a machine is stopped (`kill_signal`,
//! `kill_timeout`), the HTTP health check, and the deploy strategy.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Result, TestkitError};

/// The parts of a fly.toml the Fly world acts on; the rest is ignored, as
/// it has no counterpart here (`[build]`, `force_https`, ...).
#[derive(Debug, Clone, Deserialize)]
pub struct FlyToml {
    /// `app`.
    pub app: String,
    /// `primary_region`, also set as `PRIMARY_REGION` in every machine.
    pub primary_region: String,
    /// `kill_signal` (Fly's default: `SIGINT`).
    #[serde(default = "default_kill_signal")]
    pub kill_signal: String,
    /// `kill_timeout`: seconds, or a duration such as `"15s"` (default 5 s);
    /// SIGKILL follows when a machine has not exited by then.
    #[serde(default = "default_kill_timeout", deserialize_with = "duration")]
    pub kill_timeout: Duration,
    /// `[env]`, set in every machine.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `[deploy]`.
    #[serde(default)]
    pub deploy: DeploySection,
    /// `[http_service]`.
    pub http_service: Option<HttpService>,
}

/// `[deploy]`.
#[derive(Debug, Clone, Deserialize)]
pub struct DeploySection {
    /// `strategy`: `rolling` (Fly's default) or `bluegreen`.
    #[serde(default)]
    pub strategy: Strategy,
}

impl Default for DeploySection {
    fn default() -> Self {
        DeploySection {
            strategy: Strategy::Rolling,
        }
    }
}

/// How `fly deploy` replaces an app's machines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// One machine at a time, updated in place (same id and address): it
    /// is stopped, started on the new image, and must pass its check
    /// before the next one goes.
    #[default]
    Rolling,
    /// New machines (new ids, new addresses) started and checked beside
    /// the old ones, then the old ones stopped and destroyed.
    Bluegreen,
}

/// `[http_service]`.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpService {
    /// `internal_port`: where the app serves HTTP.
    pub internal_port: u16,
    /// `[[http_service.checks]]`.
    #[serde(default)]
    pub checks: Vec<HttpCheck>,
}

/// One `[[http_service.checks]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpCheck {
    /// `grace_period`: how long a starting machine may fail the check.
    #[serde(default = "zero", deserialize_with = "duration")]
    pub grace_period: Duration,
    /// `interval` between checks.
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// `timeout` of one check.
    #[serde(default = "default_check_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// `method` (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// `path`.
    pub path: String,
}

impl FlyToml {
    /// Reads fly.toml's text.
    pub fn parse(text: &str) -> Result<Self> {
        let toml: FlyToml =
            toml::from_str(text).map_err(|e| TestkitError::FlyToml(e.to_string()))?;
        if toml.http_service.is_none() {
            return Err(TestkitError::FlyToml(
                "no [http_service]: the Fly world routes and checks through it".into(),
            ));
        }
        Ok(toml)
    }

    /// The port the app serves HTTP on (`[http_service] internal_port`).
    pub fn http_port(&self) -> u16 {
        self.http_service.as_ref().map_or(8080, |s| s.internal_port)
    }

    /// The first HTTP check, if any.
    pub fn check(&self) -> Option<&HttpCheck> {
        self.http_service.as_ref().and_then(|s| s.checks.first())
    }
}

fn default_kill_signal() -> String {
    "SIGINT".into()
}

fn default_kill_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(2)
}

fn zero() -> Duration {
    Duration::ZERO
}

fn default_method() -> String {
    "GET".into()
}

/// Seconds as a number, or a duration as text (`"10s"`, `"500ms"`).
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Seconds(u64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Seconds(s) => Ok(Duration::from_secs(s)),
        Either::Text(t) => humantime::parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_fly_acts_on_with_fly_defaults() {
        let toml = FlyToml::parse(
            r#"
            app = "a"
            primary_region = "syd"
            kill_timeout = "15s"
            [env]
              PORT = "8080"
            [deploy]
              strategy = "bluegreen"
            [http_service]
              internal_port = 8080
              [[http_service.checks]]
                grace_period = "10s"
                path = "/healthz"
            "#,
        )
        .unwrap();
        assert_eq!(toml.kill_signal, "SIGINT");
        assert_eq!(toml.kill_timeout, Duration::from_secs(15));
        assert_eq!(toml.deploy.strategy, Strategy::Bluegreen);
        assert_eq!(toml.env["PORT"], "8080");
        let check = toml.check().unwrap();
        assert_eq!(check.grace_period, Duration::from_secs(10));
        assert_eq!(check.interval, Duration::from_secs(15));
        assert_eq!(check.method, "GET");
        assert!(FlyToml::parse("app = 1").is_err());
        assert!(FlyToml::parse("app = \"a\"\nprimary_region = \"syd\"\n").is_err());
        let seconds =
            FlyToml::parse("app = \"a\"\nprimary_region = \"syd\"\nkill_timeout = 3\n[http_service]\ninternal_port = 1\n")
                .unwrap();
        assert_eq!(seconds.kill_timeout, Duration::from_secs(3));
        assert_eq!(seconds.deploy.strategy, Strategy::Rolling);
    }
}
