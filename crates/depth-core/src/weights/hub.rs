//! Files from the Hugging Face Hub through `hf-hub`'s cache; `HF_HUB_OFFLINE` makes the lookup
//! cache-only (a miss is an error that says so).

use crate::error::{CoreError, Result};
use std::path::PathBuf;

/// Where and how to look a file up.
#[derive(Clone, Debug, Default)]
pub struct HubOptions {
    /// The cache folder; `None` takes hf-hub's default (`HF_HUB_CACHE`, `$HF_HOME/hub`, …).
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network.
    pub offline: bool,
    /// Branch, tag or commit; `None` is `main`.
    pub revision: Option<String>,
    /// A dataset repository instead of a model repository.
    pub dataset: bool,
}

impl HubOptions {
    /// Defaults with `offline` taken from `HF_HUB_OFFLINE` (1/true/yes/on).
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        Self { offline, ..Self::default() }
    }
}

/// The local path of `file` in model (or dataset) repository `repo` ("owner/name"), downloading it into the
/// cache unless offline.
pub fn hub_file(repo: &str, file: &str, opts: &HubOptions) -> Result<PathBuf> {
    let hub_err = |reason: String| CoreError::Hub { repo: repo.into(), file: file.into(), reason };
    let mut builder = hf_hub::HFClient::builder();
    if let Some(dir) = &opts.cache_dir {
        builder = builder.cache_dir(dir.clone());
    }
    let client = builder.build().map_err(|e| hub_err(e.to_string()))?;
    let client = hf_hub::HFClientSync::from_inner(client).map_err(|e| hub_err(e.to_string()))?;
    let (owner, name) = hf_hub::split_id(repo);
    macro_rules! fetch {
        ($repo:expr) => {
            $repo
                .download_file()
                .filename(file)
                .maybe_revision(opts.revision.clone())
                .local_files_only(opts.offline)
                .send()
        };
    }
    let fetched =
        if opts.dataset { fetch!(client.dataset(owner, name)) } else { fetch!(client.model(owner, name)) };
    fetched.map_err(|e| match e {
        hf_hub::HFError::LocalEntryNotFound { .. } if opts.offline => {
            CoreError::HubOffline { repo: repo.into(), file: file.into() }
        }
        e => hub_err(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_reads_the_cache_layout_and_reports_a_miss() {
        let cache = tempfile::tempdir().unwrap();
        let repo_dir = cache.path().join("models--acme--tiny-depth");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
        std::fs::write(repo_dir.join("refs/main"), commit).unwrap();
        let snap = repo_dir.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("model.safetensors"), b"x").unwrap();
        let opts =
            HubOptions { cache_dir: Some(cache.path().into()), offline: true, ..HubOptions::default() };

        let p = hub_file("acme/tiny-depth", "model.safetensors", &opts).unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"x");
        let err = hub_file("acme/tiny-depth", "other.pth", &opts).unwrap_err();
        assert!(matches!(err, CoreError::HubOffline { .. }), "{err}");
        assert!(err.to_string().contains("HF_HUB_OFFLINE"));
    }
}
