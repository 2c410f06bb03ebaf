//! `cargo xtask data …`: write synthetic datasets, build and verify manifests, validate datasets
//! into a report, and download Hub-hosted ones (or print the manual steps).

use crate::error::{Result, XtaskError};
use crate::progress::Bar;
use clap::{Args, Subcommand};
use depth_core::Progress;
use depth_core::config::ConfigFile;
use depth_core::hash::sha256_file;
use depth_core::weights::{HubOptions, hub_file};
use depth_data::manifest::{FileEntry, Manifest};
use depth_data::synth::{PhotoBank, SceneConfig, SynthDataset, write_dataset};
use depth_data::{DataConfig, DatasetSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    cmd: DataCmd,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Render N procedural scenes (RGB PNG + float32 depth .npy + index.json) into a folder.
    Synth {
        #[arg(long, value_parser = crate::net_input::positive())]
        count: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Image width and height.
        #[arg(long, default_value_t = 518, value_parser = clap::value_parser!(u32).range(14..=8192))]
        size: u32,
        /// Photos to cut textures from (default: the fixtures' unlabeled photos; "none": noise only).
        #[arg(long)]
        photos: Option<String>,
        #[arg(long, default_value_t = 0.5)]
        outdoor_fraction: f64,
    },
    /// The datasets of the config, whether each is present, and how many items it has.
    List {
        #[arg(long, default_value = "configs/data.toml")]
        config: PathBuf,
    },
    /// Hash every file under a dataset's root into its manifest.
    Manifest {
        name: String,
        #[arg(long, default_value = "configs/data.toml")]
        config: PathBuf,
        /// Where to write it (default: the dataset's `manifest` in the config).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a dataset's files against its manifest (presence, size, SHA-256).
    Verify {
        name: String,
        #[arg(long, default_value = "configs/data.toml")]
        config: PathBuf,
    },
    /// Load every item of the datasets and report corrupt files, size mismatches, depth without
    /// valid pixels and missing files (validation.md + validation.json).
    Validate {
        names: Vec<String>,
        #[arg(long, default_value = "configs/data.toml")]
        config: PathBuf,
        #[arg(long, default_value = "out/data")]
        report: PathBuf,
    },
    /// Fetch a Hub-hosted dataset into its root (checked against, or recorded into, its
    /// manifest); print the manual steps for the others.
    Download {
        name: String,
        #[arg(long, default_value = "configs/data.toml")]
        config: PathBuf,
    },
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.cmd {
        DataCmd::Synth { count, out, seed, size, photos, outdoor_fraction } => {
            synth(count, &out, seed, size, photos.as_deref(), outdoor_fraction)
        }
        DataCmd::List { config } => list(&DataConfig::load(&config, &[])?),
        DataCmd::Manifest { name, config, out } => manifest(DataConfig::load(&config, &[])?.get(&name)?, out),
        DataCmd::Verify { name, config } => verify(DataConfig::load(&config, &[])?.get(&name)?),
        DataCmd::Validate { names, config, report } => {
            validate(&DataConfig::load(&config, &[])?, &names, &report)
        }
        DataCmd::Download { name, config } => download(DataConfig::load(&config, &[])?.get(&name)?),
    }
}

fn synth(
    count: usize,
    out: &Path,
    seed: u64,
    size: u32,
    photos: Option<&str>,
    outdoor_fraction: f64,
) -> Result<()> {
    let bank = match photos {
        Some("none") => PhotoBank::default(),
        Some(dir) => PhotoBank::from_dir(Path::new(dir))?,
        None => PhotoBank::from_dir(&depth_core::fixtures::fixtures_dir()?.join("unlabeled"))?,
    };
    let config = SceneConfig { width: size, height: size, outdoor_fraction, ..SceneConfig::default() };
    let data = SynthDataset { config, bank: Arc::new(bank), seed, count };
    depth_core::atomic::prepare_output_dir(out)?;
    let pb = Bar::new("synth");
    pb.start(count as u64, 0);
    write_dataset(out, &data, |n| pb.set_position(n as u64))?;
    drop(pb);
    println!("wrote {count} scenes to {} (index.json, rgb/, depth/)", out.display());
    Ok(())
}

fn list(cfg: &DataConfig) -> Result<()> {
    println!("| dataset | kind | items | expected | licence |\n|---|---|---|---|---|");
    for d in &cfg.datasets {
        let items = match d.open() {
            Ok(ds) => ds.len().to_string(),
            Err(_) if !d.root.exists() => "absent".into(),
            Err(e) => format!("error: {e}"),
        };
        let expected = d.expected.map_or("–".into(), |n| n.to_string());
        println!("| {} | {:?} | {items} | {expected} | {} |", d.name, d.kind, d.licence);
    }
    Ok(())
}

/// The dataset's `manifest` from the config; `fix` says how to do without one.
fn manifest_path<'a>(d: &'a DatasetSpec, fix: &str) -> Result<&'a Path> {
    d.manifest.as_deref().ok_or_else(|| XtaskError::Dataset {
        dataset: d.name.clone(),
        reason: format!("no `manifest` in the config; {fix}"),
    })
}

fn manifest(d: &DatasetSpec, out: Option<PathBuf>) -> Result<()> {
    let out = match out {
        Some(p) => p,
        None => manifest_path(d, "pass --out or add one")?.to_path_buf(),
    };
    let n = depth_data::manifest::list_files(&d.root)?.len();
    let pb = Bar::new("hash");
    pb.start(n as u64, 0);
    let m = Manifest::build(&d.name, &d.root, |_| pb.advance(1))?;
    drop(pb);
    m.write(&out)?;
    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
    println!("{}: {} files, {bytes} bytes → {}", d.name, m.files.len(), out.display());
    Ok(())
}

fn verify(d: &DatasetSpec) -> Result<()> {
    let m =
        Manifest::read(manifest_path(d, "add one (`cargo xtask data manifest NAME --out FILE` writes it)")?)?;
    let pb = Bar::new("verify");
    pb.start(m.files.len() as u64, 0);
    let v = m.verify(&d.root, |_| pb.advance(1));
    drop(pb);
    for (path, problem) in &v.problems {
        eprintln!("{}: {problem}", d.root.join(path).display());
    }
    if !v.ok() {
        return Err(XtaskError::Dataset {
            dataset: d.name.clone(),
            reason: format!("{} of {} files do not match the manifest", v.problems.len(), v.checked),
        });
    }
    println!("{}: all {} files match the manifest", d.name, v.checked);
    Ok(())
}

fn validate(cfg: &DataConfig, names: &[String], report: &Path) -> Result<()> {
    let specs: Vec<&DatasetSpec> = if names.is_empty() {
        cfg.datasets.iter().collect()
    } else {
        names.iter().map(|n| cfg.get(n)).collect::<std::result::Result<_, _>>()?
    };
    depth_core::atomic::prepare_output_dir(report)?;
    let mut md = String::from("# Dataset validation\n\n");
    let mut all = Vec::new();
    let mut bad = 0;
    for d in specs {
        let ds = match d.open() {
            Ok(ds) => ds,
            Err(e @ depth_data::DataError::Absent { .. }) if names.is_empty() => {
                md += &format!("## {}\n\nnot there (not validated): {e}\n\n", d.name);
                println!("{}: not there", d.name);
                continue;
            }
            Err(e) => {
                md += &format!("## {}\n\ncannot open: {e}\n\n", d.name);
                bad += 1;
                continue;
            }
        };
        let pb = Bar::new(&d.name);
        pb.start(ds.len() as u64, 0);
        let mut v = depth_data::validate::validate(ds.as_ref(), || pb.advance(1));
        v.dataset = d.name.clone();
        drop(pb);
        md += &v.to_markdown();
        if let Some(n) = d.expected.filter(|&n| n != v.items) {
            md += &format!("**expected {n} items, found {}**\n\n", v.items);
            bad += 1;
        }
        bad += v.failures.len();
        println!("{}: {} items, {} ok, {} failed", d.name, v.items, v.ok, v.failures.len());
        all.push(v);
    }
    depth_core::atomic::write_atomic(&report.join("validation.md"), |w| w.write_all(md.as_bytes()))?;
    let json = serde_json::to_string_pretty(&all).expect("validation serialises");
    depth_core::atomic::write_atomic(&report.join("validation.json"), |w| w.write_all(json.as_bytes()))?;
    println!("report: {}", report.join("validation.md").display());
    if bad > 0 {
        let dataset = if names.is_empty() { "*".to_string() } else { names.join(", ") };
        let reason = format!("{bad} problems found (see {})", report.join("validation.md").display());
        return Err(XtaskError::Dataset { dataset, reason });
    }
    Ok(())
}

fn download(d: &DatasetSpec) -> Result<()> {
    let Some(hub) = &d.hub else {
        let steps =
            d.manual.as_deref().unwrap_or("no download source is configured; see the dataset's home page");
        return Err(XtaskError::Dataset {
            dataset: d.name.clone(),
            reason: format!("cannot be downloaded automatically. Steps:\n{steps}"),
        });
    };
    let opts = HubOptions {
        revision: hub.revision.clone(),
        dataset: hub.repo_type != "model",
        ..HubOptions::from_env()
    };
    let known = match &d.manifest {
        Some(p) if p.exists() => Some(Manifest::read(p)?),
        _ => None,
    };
    std::fs::create_dir_all(&d.root).map_err(|source| depth_core::CoreError::write(&d.root, source))?;
    let pb = Bar::new("download");
    pb.start(hub.files.len() as u64, 0);
    let mut entries = Vec::new();
    for file in &hub.files {
        // hf-hub keeps completed files in its cache, so an interrupted run resumes per file
        let cached = hub_file(&hub.repo, file, &opts)?;
        let sha256 = sha256_file(&cached)?;
        let expected = known.as_ref().and_then(|m| m.files.iter().find(|f| &f.path == file));
        if let Some(expected) = expected.filter(|e| e.sha256 != sha256) {
            return Err(XtaskError::Dataset {
                dataset: d.name.clone(),
                reason: format!(
                    "{file} from {}: sha256 {sha256}, the manifest expects {}; the download is corrupt or the \
                     repository changed (pin `revision`)",
                    hub.repo, expected.sha256
                ),
            });
        }
        let dest = d.root.join(file);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|source| depth_core::CoreError::write(parent, source))?;
        }
        depth_core::atomic::write_atomic(&dest, |w| {
            std::io::copy(&mut std::fs::File::open(&cached)?, w).map(|_| ())
        })?;
        let size = std::fs::metadata(&dest).map_err(|source| depth_core::CoreError::io(&dest, source))?.len();
        entries.push(FileEntry { path: file.clone(), size, sha256 });
        pb.advance(1);
    }
    drop(pb);
    if known.is_none()
        && let Some(p) = &d.manifest
    {
        Manifest { format: depth_data::manifest::FORMAT.into(), dataset: d.name.clone(), files: entries }
            .write(p)?;
        println!("recorded the files' sha256 in {}", p.display());
    }
    println!("{}: {} files in {}", d.name, hub.files.len(), d.root.display());
    Ok(())
}
