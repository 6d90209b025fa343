//! A policy that lives on S3 (`run --policy s3://BUCKET/PATH/policies.yaml`),
//! so that every worker of a fleet scores with the same one: mirrored to
//! the worker's disk, where the policy watcher picks each change up as it
//! does a local edit (validated, compiled, swapped in between batches; a
//! bad change refused while the running policy stays, on every worker).
//!
//! Every poll interval the mirror asks S3 for the policy's and its modules'
//! ETags (HEAD requests, no download); what changed is downloaded to a
//! staging directory and moved into place, the modules before the policy,
//! within the watcher's settling time, so it sees one change. What an
//! attacker with write access to the bucket can do is bounded: a module
//! must be named by a path below the policy's own prefix (no `..`, no
//! absolute path), the policy may be at most 4 MiB and a module 64 MiB
//! (the limits of local files), and a policy or module the mirror refuses
//! leaves the last good copy in place.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use authpulse_engine::files::{MAX_MODULE_BYTES, MAX_POLICY_BYTES};
use authpulse_engine::policy::Policy;
use opendal::Operator;

use crate::sources::{S3Access, split_s3};

/// The default wait between two looks at the bucket.
pub const DEFAULT_POLL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("`{0}` is not s3://BUCKET/PATH/POLICY.yaml")]
    Url(String),
    #[error("{url}: no AWS region (give --aws-region or set AWS_REGION)")]
    NoRegion { url: String },
    #[error("{url}: {message}")]
    S3 { url: String, message: String },
    #[error("{url}: {size} bytes, more than the {limit} a {what} may have")]
    TooLarge {
        url: String,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error(
        "{url}: rule `{rule}` names module `{module}`, which is not a path below the policy's own prefix"
    )]
    ModuleOutside {
        url: String,
        rule: String,
        module: String,
    },
    #[error("{path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the policy mirror's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Keeps a local copy of an S3 policy and its modules current.
pub struct PolicyMirror {
    local: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PolicyMirror {
    /// Copies the policy at `url` and its modules into `dir` (created if
    /// needed), then keeps them current every `poll`.
    pub fn start(
        url: &str,
        dir: &Path,
        poll: Duration,
        access: &S3Access,
    ) -> Result<PolicyMirror, MirrorError> {
        let mut copy = Copy::open(url, dir, access)?;
        copy.sync()?;
        let local = copy.local_policy();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("policy-mirror".into())
            .spawn(move || {
                let step = Duration::from_millis(100).min(poll);
                let mut waited = Duration::ZERO;
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(step);
                    waited += step;
                    if waited < poll {
                        continue;
                    }
                    waited = Duration::ZERO;
                    if let Err(e) = copy.sync() {
                        tracing::error!(error = %crate::describe_error(&e), "policy change on S3 not taken; the running policy stays");
                    }
                }
            })
            .map_err(MirrorError::Runtime)?;
        Ok(PolicyMirror {
            local,
            stop,
            thread: Some(thread),
        })
    }

    /// The local copy of the policy, for the run's `--policy`.
    pub fn local_policy(&self) -> &Path {
        &self.local
    }
}

impl Drop for PolicyMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The S3 side and the local side of the mirror.
struct Copy {
    url: String,
    operator: Operator,
    runtime: tokio::runtime::Runtime,
    /// The policy's name below the operator's root (its prefix).
    policy_name: String,
    dir: PathBuf,
    /// The ETag of each file as last copied, by its name below the prefix.
    copied: BTreeMap<String, String>,
}

impl Copy {
    fn open(url: &str, dir: &Path, access: &S3Access) -> Result<Copy, MirrorError> {
        let (bucket, key) = split_s3(url).map_err(|_| MirrorError::Url(url.to_string()))?;
        let (prefix, policy_name) = key.rsplit_once('/').unwrap_or(("", key));
        if policy_name.is_empty() {
            return Err(MirrorError::Url(url.to_string()));
        }
        let region = access.region().ok_or_else(|| MirrorError::NoRegion {
            url: url.to_string(),
        })?;
        let operator = access
            .operator(bucket, prefix, &region)
            .map_err(|e| MirrorError::S3 {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        std::fs::create_dir_all(dir).map_err(|source| MirrorError::Local {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Copy {
            url: url.to_string(),
            operator,
            runtime: crate::net::runtime("policy-mirror").map_err(MirrorError::Runtime)?,
            policy_name: policy_name.to_string(),
            dir: dir.to_path_buf(),
            copied: BTreeMap::new(),
        })
    }

    fn local_policy(&self) -> PathBuf {
        self.dir.join(&self.policy_name)
    }

    fn s3_error(&self, name: &str, error: opendal::Error) -> MirrorError {
        MirrorError::S3 {
            url: self.object_url(name),
            message: error.to_string(),
        }
    }

    fn object_url(&self, name: &str) -> String {
        match self.url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => name.to_string(),
        }
    }

    /// The object's ETag (or size and time where a store gives none).
    fn version(&self, name: &str, limit: u64, what: &'static str) -> Result<String, MirrorError> {
        let meta = self
            .runtime
            .block_on(self.operator.stat(name))
            .map_err(|e| self.s3_error(name, e))?;
        if meta.content_length() > limit {
            return Err(MirrorError::TooLarge {
                url: self.object_url(name),
                what,
                size: meta.content_length(),
                limit,
            });
        }
        Ok(meta
            .etag()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}@{:?}", meta.content_length(), meta.last_modified())))
    }

    fn download(&self, name: &str, limit: u64, what: &'static str) -> Result<Vec<u8>, MirrorError> {
        let bytes = self
            .runtime
            .block_on(self.operator.read(name))
            .map_err(|e| self.s3_error(name, e))?
            .to_vec();
        // The object may have grown since it was looked at.
        if bytes.len() as u64 > limit {
            return Err(MirrorError::TooLarge {
                url: self.object_url(name),
                what,
                size: bytes.len() as u64,
                limit,
            });
        }
        Ok(bytes)
    }

    /// Copies what changed on S3 since the last sync.
    fn sync(&mut self) -> Result<(), MirrorError> {
        let policy_name = self.policy_name.clone();
        let policy_version = self.version(&policy_name, MAX_POLICY_BYTES, "policy")?;
        let policy_changed = self.copied.get(&policy_name) != Some(&policy_version);
        let policy_text = if policy_changed {
            Some(self.download(&policy_name, MAX_POLICY_BYTES, "policy")?)
        } else {
            None
        };
        // The modules the policy names: from the new text, or the copy.
        let text = match &policy_text {
            Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            None => std::fs::read_to_string(self.local_policy()).unwrap_or_default(),
        };
        let modules = self.modules(&text)?;
        let mut staged: Vec<(String, Vec<u8>, String)> = Vec::new();
        for module in modules {
            let version = self.version(&module, MAX_MODULE_BYTES, "rule module")?;
            let present = self.dir.join(&module).exists();
            if self.copied.get(&module) != Some(&version) || !present {
                let bytes = self.download(&module, MAX_MODULE_BYTES, "rule module")?;
                staged.push((module, bytes, version));
            }
        }
        if staged.is_empty() && policy_text.is_none() {
            return Ok(());
        }
        // Modules first, the policy last: the watcher settles on the policy.
        for (module, bytes, version) in staged {
            self.place(&module, &bytes)?;
            self.copied.insert(module, version);
        }
        if let Some(bytes) = policy_text {
            self.place(&policy_name, &bytes)?;
            tracing::info!(policy = %self.url, etag = %policy_version, "policy copied from S3");
            self.copied.insert(policy_name, policy_version);
        }
        Ok(())
    }

    /// The module files a policy text names, each checked to lie below the
    /// policy's prefix. A text that does not parse names none: it is copied
    /// all the same, and the policy watcher refuses it with the reason.
    fn modules(&self, text: &str) -> Result<Vec<String>, MirrorError> {
        let Ok(policy) = Policy::parse(text, &self.url, Path::new("")) else {
            return Ok(Vec::new());
        };
        let mut modules = Vec::new();
        for rule in &policy.file.rules {
            if rule.module.starts_with("builtin:") {
                continue;
            }
            let path = Path::new(&rule.module);
            let below = path.components().count() > 0
                && path.components().all(|c| matches!(c, Component::Normal(_)));
            if !below {
                return Err(MirrorError::ModuleOutside {
                    url: self.url.clone(),
                    rule: rule.id.clone(),
                    module: rule.module.clone(),
                });
            }
            modules.push(rule.module.clone());
        }
        modules.sort();
        modules.dedup();
        Ok(modules)
    }

    /// Writes `bytes` as the local `name`, whole or not at all.
    fn place(&self, name: &str, bytes: &[u8]) -> Result<(), MirrorError> {
        let path = self.dir.join(name);
        let local = |source| MirrorError::Local {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(local)?;
        }
        let staging = self.dir.join(format!(".{}.part", name.replace('/', "_")));
        std::fs::write(&staging, bytes).map_err(local)?;
        std::fs::rename(&staging, &path).map_err(local)
    }
}
