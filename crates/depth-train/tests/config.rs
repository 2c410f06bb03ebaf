//! The shipped training configs load and check, and a resolved config written to a run folder
//! reads back as the same config (every field survives TOML).

use depth_core::config::ConfigFile;
use depth_train::{Task, TrainConfig};
use std::path::{Path, PathBuf};

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

#[test]
fn shipped_configs_load_and_round_trip() {
    for (file, task) in [("train.toml", Task::Relative), ("metric.toml", Task::Metric)] {
        let a = TrainConfig::load(&configs().join(file), &[]).unwrap();
        assert_eq!(a.task, task, "{file}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, a.to_toml()).unwrap();
        let b = TrainConfig::load(&p, &[]).unwrap();
        assert_eq!(a, b, "{file} does not survive a round trip through config.toml");
    }
    // the metric config follows metric_depth/train.py
    let m = TrainConfig::load(&configs().join("metric.toml"), &[]).unwrap();
    assert_eq!((m.optim.lr, m.optim.decoder_lr_mult, m.optim.weight_decay), (5e-6, 10.0, 0.01));
    assert_eq!(m.optim.betas, (0.9, 0.999));
    assert!(!m.optim.exempt_no_decay);
    assert_eq!((m.loss.silog_lambda, m.loss.min_depth, m.model.max_depth), (0.5, 1e-3, Some(20.0)));
}

#[test]
fn overrides_apply_before_the_checks() {
    let p = configs().join("train.toml");
    let c = TrainConfig::load(&p, &["schedule.steps=7".into(), "data.source.0.ratio=2".into()]).unwrap();
    assert_eq!((c.schedule.steps, c.data.sources[0].ratio), (7, 2.0));
    let err = TrainConfig::load(&p, &["schedule.steps=0".into()]).unwrap_err().to_string();
    assert!(err.contains("train.toml") && err.contains("steps"), "{err}");
}

#[test]
fn a_config_read_by_a_relative_path_means_the_same_files_from_its_run_folder() {
    // the tests run in crates/depth-train: the shipped config by a relative path
    let rel = Path::new("../../configs/train.toml");
    let cfg = TrainConfig::load(rel, &[]).unwrap();
    let v = cfg.validate.as_ref().expect("train.toml validates");
    for p in [&cfg.out, &cfg.data.config, &v.config] {
        assert!(p.is_absolute(), "{} is relative", p.display());
    }
    assert_eq!(cfg.data.config, depth_core::config::normalize(&configs().join("data.toml")));
    // written into a run folder elsewhere and read from there: the same config
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("run/config.toml");
    std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
    std::fs::write(&saved, cfg.to_toml()).unwrap();
    assert_eq!(TrainConfig::load(&saved, &[]).unwrap(), cfg);
}
