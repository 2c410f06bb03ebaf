//! `cargo xtask export`: writes a model in the format of another ecosystem (transformers,
//! the official `.pth`, ONNX) and, with `--check`, proves it: the export read back by our
//! loader gives the same tensors, and the target itself (transformers, the official code,
//! ONNX Runtime, through `scripts/export_check.py`) gives our depth on three fixture images of
//! different aspect ratios. The check's report is also written beside the export.

use crate::error::{Result, XtaskError};
use crate::net_input::ModelArgs;
use candle_core::{DType, Device, Tensor};
use depth_core::weights::{Metadata, TensorMap, save_safetensors};
use depth_models::{
    DepthEstimator, ExportFormat, ExportOptions, ModelConfig, WeightsSource, export, load_checked,
};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// transformers (a folder for from_pretrained), official (a .pth for the official code's
    /// load_state_dict), or onnx (a graph: preprocessed image → depth).
    #[arg(long)]
    to: ExportFormat,
    /// Where to write: a folder for transformers, a file otherwise.
    #[arg(long)]
    out: PathBuf,
    /// ONNX: float16 weights and activations (float32 input and output).
    #[arg(long)]
    fp16: bool,
    /// ONNX: the weights in OUT.data beside the graph (ONNX's external data; always so for a
    /// model over protobuf's 2 GB, vitg in float32).
    #[arg(long)]
    external_data: bool,
    /// After exporting: read it back and run it in its target (python3 with torch,
    /// transformers, onnx, onnxruntime), comparing depths on three fixture images.
    #[arg(long)]
    check: bool,
    /// The network input's shorter side for --check.
    #[arg(long, default_value_t = 518)]
    input_size: usize,
    /// A clone of github.com/DepthAnything/Depth-Anything-V2, for --check of an official export.
    #[arg(long, env = "DEPTH_OFFICIAL_REPO")]
    official_repo: Option<PathBuf>,
    /// The Python that runs the target for --check.
    #[arg(long, env = "DEPTH_PYTHON", default_value = "python3")]
    python: String,
}

pub(crate) fn run(args: ExportArgs) -> Result<()> {
    let source = args.model.source()?;
    let opts =
        ExportOptions { fp16: args.fp16, external_data: args.external_data, max_depth: args.model.max_depth };
    let path = export(&source, args.to, &args.out, opts)?;
    println!("wrote {}", path.display());
    if args.check {
        let report = check(&args, &source, &path)?;
        println!("{report}");
    }
    Ok(())
}

/// The round trip and the target's run; the report (also written to `<out>.check.md`).
fn check(args: &ExportArgs, source: &WeightsSource, path: &Path) -> Result<String> {
    let fail = |reason: String| XtaskError::usage("--check", reason);
    let (cfg, tensors) = source.load()?;
    let back = WeightsSource::from(path);
    let (back_cfg, back_tensors) = back.load()?;
    let mut report =
        format!("# Export check: {} → {} ({})\n\n", source.spec(), args.to.name(), path.display());
    // the round trip: the same tensors, the same configuration but what the format cannot carry
    let worst = max_difference(&tensors, &back_tensors).map_err(|e| fail(format!("round trip: {e}")))?;
    let mut expected = cfg.clone();
    expected.max_depth = args.model.max_depth.or(cfg.max_depth);
    match args.to {
        // transformers resizes position embeddings its own way; a state dict has no max_depth
        ExportFormat::Transformers => expected.vit.pos_embed_resize = back_cfg.vit.pos_embed_resize,
        ExportFormat::Official => expected.max_depth = back_cfg.max_depth,
        ExportFormat::Onnx => {}
    }
    let same_cfg = back_cfg == expected;
    let bound = if args.fp16 { 1e-3 } else { 0.0 };
    report += &format!(
        "- round trip: {} tensors read back, largest difference {worst:.1e} (allowed {bound:.0e}), configuration {}\n",
        back_tensors.len(),
        if same_cfg { "equal" } else { "DIFFERENT" }
    );
    if worst > bound || !same_cfg {
        return Err(fail(format!("the export read back differs from the model:\n{report}")));
    }
    // the target: our depths on three inputs, for the script to compare with the target's
    let dir = tempfile::tempdir().map_err(|e| depth_core::CoreError::io(path, e))?;
    let reference = dir.path().join("reference.safetensors");
    write_reference(args, source, &back, &cfg, &reference)?;
    let mut cmd = std::process::Command::new(&args.python);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/export_check.py");
    cmd.arg(&script).arg(args.to.name()).arg(path).arg(&reference);
    if args.fp16 {
        cmd.arg("--fp16");
    }
    if let Some(repo) = &args.official_repo {
        cmd.arg("--official-repo").arg(repo);
    }
    let out = cmd.output().map_err(|source| XtaskError::Tool {
        tool: args.python.clone(),
        hint: "install Python 3 or name one with --python",
        source,
    })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    report += &text.lines().map(|l| format!("- {l}\n")).collect::<String>();
    let md = PathBuf::from(format!("{}.check.md", path.display()));
    depth_core::atomic::write_atomic(&md, |w| w.write_all(report.as_bytes()))?;
    match out.status.code() {
        Some(0) => Ok(report),
        Some(3) => Err(fail(format!("the target did not run:\n{report}"))),
        _ => Err(fail(format!("the target disagrees or failed:\n{report}"))),
    }
}

/// The largest absolute difference between two tensor maps of the same keys and shapes.
fn max_difference(a: &TensorMap, b: &TensorMap) -> std::result::Result<f32, String> {
    if a.len() != b.len() || a.keys().any(|k| !b.contains_key(k)) {
        let only: Vec<_> = a
            .keys()
            .filter(|k| !b.contains_key(*k))
            .chain(b.keys().filter(|k| !a.contains_key(*k)))
            .collect();
        return Err(format!("keys differ: {only:?}"));
    }
    let mut worst = 0f32;
    for (k, t) in a {
        let u = &b[k];
        if t.dims() != u.dims() {
            return Err(format!("{k}: {:?} vs {:?}", t.dims(), u.dims()));
        }
        let d = (t.to_dtype(DType::F32).and_then(|t| t - u.to_dtype(DType::F32)?))
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
            .map_err(|e| e.to_string())?;
        worst = worst.max(d);
    }
    Ok(worst)
}

/// The network inputs of three fixture images of different aspect ratios (a landscape photo,
/// a square one, the photo turned upright) with the depths of the model exported (`original_k`)
/// and of the export read back by our loader (`ours_k`); the official constructor's arguments
/// in the metadata.
fn write_reference(
    args: &ExportArgs,
    source: &WeightsSource,
    back: &WeightsSource,
    cfg: &ModelConfig,
    path: &Path,
) -> Result<()> {
    let dev = Device::Cpu;
    let md = args.model.max_depth;
    let original = DepthEstimator::new(load_checked(source, None, md, &dev)?, dev.clone())
        .with_input_size(args.input_size);
    let ours = DepthEstimator::new(load_checked(back, None, md.or(cfg.max_depth), &dev)?, dev.clone())
        .with_input_size(args.input_size);
    let images = depth_core::fixtures::fixtures_dir()?.join("images");
    let landscape = depth_models::read_image(&images.join("demo08.jpg"))?;
    let square = depth_models::read_image(&images.join("square04.png"))?;
    let portrait = image::imageops::rotate90(&landscape);
    let mut tensors = TensorMap::new();
    for (k, img) in ["landscape", "square", "portrait"].iter().zip([&landscape, &square, &portrait]) {
        let x = original.preprocess(img)?;
        let run = |e: &DepthEstimator| -> Result<Tensor> {
            Ok(e.network_of(std::slice::from_ref(&x))?.squeeze(1)?)
        };
        tensors.insert(format!("original_{k}"), run(&original)?);
        tensors.insert(format!("ours_{k}"), run(&ours)?);
        tensors.insert(format!("input_{k}"), x);
    }
    let mut meta = Metadata::new();
    if let Some(e) = cfg.official_class_encoder() {
        meta.insert("encoder".into(), e.name().to_string());
        meta.insert("features".into(), cfg.head.features.to_string());
        let oc: Vec<String> = cfg.head.out_channels.iter().map(|c| c.to_string()).collect();
        meta.insert("out_channels".into(), oc.join(","));
    }
    if let Some(m) = md.or(cfg.max_depth) {
        meta.insert("max_depth".into(), m.to_string());
    }
    save_safetensors(&tensors, &meta, path)?;
    Ok(())
}
