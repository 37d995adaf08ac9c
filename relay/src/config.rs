//! The relay's data directory: what lives where, and the settings chosen at `init`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(
        "{0} is not an initialized relay data directory (run `tether-relay init --data {0}` first)"
    )]
    NotInitialized(String),
    #[error("{0} already holds a relay (its CA would be overwritten); use another directory")]
    AlreadyInitialized(String),
    #[error("{path}: {reason}")]
    Bad { path: String, reason: String },
}

/// Settings written by `init` into `relay.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelaySettings {
    /// DNS name in the relay certificate; clients check the relay against it.
    pub name: String,
    /// `host:port` put into enrollment tokens: where agents and technicians reach the relay.
    pub public_addr: String,
    /// This relay among several sharing one store (`init --id`); relays made before there
    /// could be several have none and go by `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl RelaySettings {
    /// The relay's id in the cluster: `id`, else `name`.
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.name)
    }
}

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn settings(&self) -> PathBuf {
        self.root.join("relay.toml")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca-key.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("relay.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("relay-key.pem")
    }
    /// The certificate of the key that signs session grants (issued by the CA).
    pub fn grant_signer_cert(&self) -> PathBuf {
        self.root.join("grant-signer.pem")
    }
    pub fn grant_signer_key(&self) -> PathBuf {
        self.root.join("grant-signer-key.pem")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("tether.db")
    }
    /// Shell transcripts, one file per session.
    pub fn transcripts(&self) -> PathBuf {
        self.root.join("transcripts")
    }

    pub fn is_initialized(&self) -> bool {
        self.settings().exists() && self.ca_key().exists()
    }

    pub fn load_settings(&self) -> Result<RelaySettings, ConfigError> {
        let path = self.settings();
        if !self.is_initialized() {
            return Err(ConfigError::NotInitialized(self.root.display().to_string()));
        }
        let bad = |reason: String| ConfigError::Bad {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        toml::from_str(&text).map_err(|e| bad(e.to_string()))
    }

    pub fn save_settings(&self, s: &RelaySettings) -> Result<(), ConfigError> {
        let path = self.settings();
        let bad = |reason: String| ConfigError::Bad {
            path: path.display().to_string(),
            reason,
        };
        let text = toml::to_string_pretty(s).map_err(|e| bad(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| bad(e.to_string()))
    }
}

pub fn ensure_dir(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| ConfigError::Bad {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}
