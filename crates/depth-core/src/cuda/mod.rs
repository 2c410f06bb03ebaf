//! Why this file: the launches of depth-core's fused CUDA kernels (`kernels.cu`, compiled to PTX by
//! build.rs) — LayerNorm, softmax, GELU and flash attention for float32 and bfloat16 storage,
//! resampling for float32, forward and backward — as the `cuda_fwd` of the same custom ops whose `cpu_fwd` is their reference.
//! The ops route here only when [`crate::fused_cuda_kernels`] is on (`DEPTH_CUDA_KERNELS=fused`);
//! otherwise they take the composed candle path that was checked on an H100. Kernels that have
//! not run on a GPU are unverified (docs/gpu.md says which have).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CudaDevice, CudaStorage, DType, Layout};

type R<T> = candle_core::Result<T>;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/depth_kernels.ptx"));
const MODULE: &str = "depth_core_kernels";
/// Threads per block of every kernel; the row kernels give each row one warp (8 rows a block).
const THREADS: u32 = 256;
/// Rows per chunk of LayerNorm's column sums (dγ, dβ).
const CHUNK: usize = 64;
/// Dynamic shared memory of the tensor-core backward kernels (`BWD_TC_SMEM` in kernels.cu: five
/// 64-row bf16 tiles with rows padded to 72, 64 rows of 68 floats, two 64-float vectors).
const BWD_TC_SMEM: u32 = 4 * 64 * 72 * 2 + 64 * 68 * 4 + 64 * 72 * 2 + 2 * 64 * 4;
const MAX_DYNAMIC_SHARED: candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute =
    candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
/// The head dimension of the attention kernels (attention.rs routes only this one here).
const HEAD_DIM: usize = crate::attention::FUSED_HEAD_DIM;

/// A storage type the kernels take, with the suffix of their names.
trait Elem: CudaDType + DeviceRepr + ValidAsZeroBits {
    const SUFFIX: &'static str;
}

impl Elem for f32 {
    const SUFFIX: &'static str = "f32";
}

impl Elem for half::bf16 {
    const SUFFIX: &'static str = "bf16";
}

/// Runs `$body` with `$t` the element type of `$dtype` (float32 or bfloat16).
macro_rules! by_dtype {
    ($op:expr, $dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $t = f32;
                $body
            }
            DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            other => candle_core::bail!("{}: the CUDA kernels take f32 or bf16, got {other:?}", $op),
        }
    };
}

fn view<'a, T: Elem>(op: &str, s: &'a CudaStorage, l: &Layout) -> R<CudaView<'a, T>> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: the CUDA kernel needs contiguous inputs");
    };
    Ok(s.as_cuda_slice::<T>()?.slice(a..b))
}

/// The kernel `name` for element type `T`, to be launched (loaded once per device; counted in
/// `fused_kernel_launches`; candle does not export the type it returns, so this is a macro).
macro_rules! func {
    ($dev:expr, $name:expr, $t:ty) => {{
        crate::device::count_launch();
        $dev.get_or_load_custom_func(&format!("{}_{}", $name, <$t as Elem>::SUFFIX), MODULE, PTX)?
    }};
}

fn grid(blocks: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (blocks.max(1) as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// Blocks for a grid-stride kernel over `n` elements.
fn stride_grid(n: usize) -> LaunchConfig {
    grid(n.div_ceil(THREADS as usize).min(65_535))
}

/// Blocks for one warp per row.
fn row_grid(rows: usize) -> LaunchConfig {
    grid(rows.div_ceil(THREADS as usize / 32))
}

/// A grid's y extent (heads, row chunks): at most 65 535 blocks.
fn grid_y(op: &str, what: &str, v: usize) -> R<u32> {
    match u32::try_from(v) {
        Ok(y) if y <= 65_535 => Ok(y.max(1)),
        _ => candle_core::bail!(
            "{op}: {what} = {v} exceeds CUDA's 65 535 blocks of a grid's y; split the batch"
        ),
    }
}

fn wrap<T: Elem>(out: CudaSlice<T>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(out, dev.clone())
}

fn as_i32(op: &str, what: &str, v: usize) -> R<i32> {
    i32::try_from(v)
        .map_err(|_| candle_core::Error::Msg(format!("{op}: {what} = {v} exceeds the kernels' i32 range")))
}

/// LayerNorm over rows of length `d` (γ and β of the input's dtype).
pub(crate) fn layer_norm(
    x: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
    b: (&CudaStorage, &Layout),
    eps: f64,
) -> R<CudaStorage> {
    const OP: &str = "depth-layer-norm";
    let dev = x.0.device();
    let d = g.1.shape().elem_count();
    let rows = x.1.shape().elem_count() / d.max(1);
    by_dtype!(OP, x.0.dtype(), T => {
        let (xv, gv, bv) = (view::<T>(OP, x.0, x.1)?, view::<T>(OP, g.0, g.1)?, view::<T>(OP, b.0, b.1)?);
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(rows * d)? };
        let (r, dd, e) = (as_i32(OP, "rows", rows)?, as_i32(OP, "d", d)?, eps as f32);
        let f = func!(dev, "layer_norm", T);
        let mut a = f.builder();
        a.arg(&xv).arg(&gv).arg(&bv).arg(&out).arg(&r).arg(&dd).arg(&e);
        // SAFETY: the argument list matches the kernel's signature; sizes are the tensors'.
        unsafe { a.launch(row_grid(rows)) }.w()?;
        Ok(wrap(out, dev))
    })
}

/// LayerNorm's backward from (x, γ, dy): rows `0..n` dx, row `n` dγ, row `n + 1` dβ.
pub(crate) fn layer_norm_bwd(
    x: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
    eps: f64,
) -> R<CudaStorage> {
    const OP: &str = "depth-layer-norm-bwd";
    let dev = x.0.device();
    let d = g.1.shape().elem_count();
    let rows = x.1.shape().elem_count() / d.max(1);
    let chunks = rows.div_ceil(CHUNK);
    by_dtype!(OP, x.0.dtype(), T => {
        let (xv, gv, dyv) = (view::<T>(OP, x.0, x.1)?, view::<T>(OP, g.0, g.1)?, view::<T>(OP, dy.0, dy.1)?);
        // SAFETY: rows·d + 2·d elements, all written (dx by the rows kernel, dγ and dβ by the sum).
        let out = unsafe { dev.alloc::<T>((rows + 2) * d)? };
        let stats = unsafe { dev.alloc::<f32>(2 * rows.max(1))? };
        let partial = unsafe { dev.alloc::<f32>(2 * chunks.max(1) * d)? };
        let (r, dd, e) = (as_i32(OP, "rows", rows)?, as_i32(OP, "d", d)?, eps as f32);
        let (chunk, nchunks) = (CHUNK as i32, as_i32(OP, "chunks", chunks)?);
        let f = func!(dev, "layer_norm_bwd_rows", T);
        let mut a = f.builder();
        a.arg(&xv).arg(&gv).arg(&dyv).arg(&out).arg(&stats).arg(&r).arg(&dd).arg(&e);
        // SAFETY: as in layer_norm.
        unsafe { a.launch(row_grid(rows)) }.w()?;
        let cols = d.div_ceil(THREADS as usize) as u32;
        let f = func!(dev, "layer_norm_bwd_cols", T);
        let mut a = f.builder();
        a.arg(&xv).arg(&dyv).arg(&stats).arg(&partial).arg(&r).arg(&dd).arg(&chunk);
        let cfg = LaunchConfig {
            grid_dim: (cols, grid_y(OP, "row chunks", chunks)?, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: as in layer_norm; `partial` holds chunks·2·d floats.
        unsafe { a.launch(cfg) }.w()?;
        let f = func!(dev, "layer_norm_bwd_sum", T);
        let mut a = f.builder();
        a.arg(&partial).arg(&out).arg(&r).arg(&dd).arg(&nchunks);
        // SAFETY: as in layer_norm.
        unsafe { a.launch(grid(cols as usize)) }.w()?;
        Ok(wrap(out, dev))
    })
}

/// Softmax over rows of length `d`.
pub(crate) fn softmax(x: (&CudaStorage, &Layout), d: usize) -> R<CudaStorage> {
    const OP: &str = "depth-softmax";
    let dev = x.0.device();
    let rows = x.1.shape().elem_count() / d.max(1);
    by_dtype!(OP, x.0.dtype(), T => {
        let xv = view::<T>(OP, x.0, x.1)?;
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(rows * d)? };
        let (r, dd) = (as_i32(OP, "rows", rows)?, as_i32(OP, "d", d)?);
        let f = func!(dev, "softmax", T);
        let mut a = f.builder();
        a.arg(&xv).arg(&out).arg(&r).arg(&dd);
        // SAFETY: as in layer_norm.
        unsafe { a.launch(row_grid(rows)) }.w()?;
        Ok(wrap(out, dev))
    })
}

/// The softmax gradient from (y, dy) over rows of length `d`.
pub(crate) fn softmax_bwd(
    y: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
    d: usize,
) -> R<CudaStorage> {
    const OP: &str = "depth-softmax-bwd";
    let dev = y.0.device();
    let rows = y.1.shape().elem_count() / d.max(1);
    by_dtype!(OP, y.0.dtype(), T => {
        let (yv, dyv) = (view::<T>(OP, y.0, y.1)?, view::<T>(OP, dy.0, dy.1)?);
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(rows * d)? };
        let (r, dd) = (as_i32(OP, "rows", rows)?, as_i32(OP, "d", d)?);
        let f = func!(dev, "softmax_bwd", T);
        let mut a = f.builder();
        a.arg(&yv).arg(&dyv).arg(&out).arg(&r).arg(&dd);
        // SAFETY: as in layer_norm.
        unsafe { a.launch(row_grid(rows)) }.w()?;
        Ok(wrap(out, dev))
    })
}

/// The element-wise kernels: GELU (`inputs` = [x]) and its gradient ([x, dy]).
pub(crate) fn elementwise(name: &str, inputs: &[(&CudaStorage, &Layout)]) -> R<CudaStorage> {
    let dev = inputs[0].0.device();
    let n = inputs[0].1.shape().elem_count();
    by_dtype!(name, inputs[0].0.dtype(), T => {
        let views = inputs.iter().map(|(s, l)| view::<T>(name, s, l)).collect::<R<Vec<_>>>()?;
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(n)? };
        let len = n as u64;
        let f = func!(dev, name, T);
        let mut a = f.builder();
        for v in &views {
            a.arg(v);
        }
        a.arg(&out).arg(&len);
        // SAFETY: the kernels take (inputs…, out, n) and stride over the grid.
        unsafe { a.launch(stride_grid(n)) }.w()?;
        Ok(wrap(out, dev))
    })
}

fn flash_grid(heads: u32, n: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(64) as u32, heads, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Whether attention for `T` runs on tensor cores: bf16 does (4 warps a block), float32 runs on
/// CUDA cores (256 threads). The tensor-core kernels' 16-byte loads need every operand to start
/// at a multiple of 8 elements, which attention.rs's copies guarantee; anything else is refused.
fn on_tensor_cores<T: Elem>(op: &str, operands: &[&Layout]) -> R<bool> {
    if T::SUFFIX != "bf16" {
        return Ok(false);
    }
    if let Some(l) = operands.iter().find(|l| l.start_offset() % 8 != 0) {
        candle_core::bail!(
            "{op}: a bf16 operand starts at element {}, not a multiple of 8: copy it first",
            l.start_offset()
        );
    }
    Ok(true)
}

/// `softmax(scale · q kᵀ) v` for contiguous (heads, n, 64) q, k, v.
pub(crate) fn flash_fwd(
    q: (&CudaStorage, &Layout),
    k: (&CudaStorage, &Layout),
    v: (&CudaStorage, &Layout),
    n: usize,
    scale: f64,
) -> R<CudaStorage> {
    const OP: &str = "depth-attention";
    let dev = q.0.device();
    let total = q.1.shape().elem_count();
    let heads = grid_y(OP, "heads", total / (n * HEAD_DIM).max(1))?;
    by_dtype!(OP, q.0.dtype(), T => {
        let (qv, kv, vv) = (view::<T>(OP, q.0, q.1)?, view::<T>(OP, k.0, k.1)?, view::<T>(OP, v.0, v.1)?);
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(total)? };
        let (nn, s, no_lse) = (as_i32(OP, "n", n)?, scale as f32, 0u64);
        let tc = on_tensor_cores::<T>(OP, &[q.1, k.1, v.1])?;
        let (name, threads) = if tc { ("flash_fwd_tc", 128) } else { ("flash_fwd", THREADS) };
        let f = func!(dev, name, T);
        let mut a = f.builder();
        a.arg(&qv).arg(&kv).arg(&vv).arg(&out).arg(&no_lse).arg(&nn).arg(&s);
        // SAFETY: (q, k, v, o, lse = NULL, n, scale); heads·n·64 elements each.
        unsafe { a.launch(flash_grid(heads, n, threads)) }.w()?;
        Ok(wrap(out, dev))
    })
}

/// Attention's backward from q, k, v stacked as (3, heads, n, 64), the output o and its
/// gradient: dq, dk, dv stacked the same way. Recomputes each query's log-sum-exp (a forward
/// pass without the output), then one kernel for dq (and Δ = rowsum(dO ⊙ O)) and one for dk, dv.
pub(crate) fn flash_bwd(
    qkv: (&CudaStorage, &Layout),
    o: (&CudaStorage, &Layout),
    dout: (&CudaStorage, &Layout),
    n: usize,
    scale: f64,
) -> R<CudaStorage> {
    const OP: &str = "depth-attention-bwd";
    let dev = qkv.0.device();
    let total = qkv.1.shape().elem_count();
    let m = total / 3;
    let heads = grid_y(OP, "heads", m / (n * HEAD_DIM).max(1))?;
    by_dtype!(OP, qkv.0.dtype(), T => {
        let all = view::<T>(OP, qkv.0, qkv.1)?;
        let (ov, dov) = (view::<T>(OP, o.0, o.1)?, view::<T>(OP, dout.0, dout.1)?);
        let (qv, kv, vv) = (all.slice(0..m), all.slice(m..2 * m), all.slice(2 * m..3 * m));
        // SAFETY: every element of all three is written below (lse and delta by the first two kernels).
        let grads = unsafe { dev.alloc::<T>(total)? };
        let lse = unsafe { dev.alloc::<f32>((heads as usize * n).max(1))? };
        let delta = unsafe { dev.alloc::<f32>((heads as usize * n).max(1))? };
        let (nn, s, no_out) = (as_i32(OP, "n", n)?, scale as f32, 0u64);
        // k and v start m = heads·n·64 elements after q: a multiple of 8 whenever q's start is
        let tc = on_tensor_cores::<T>(OP, &[qkv.1, o.1, dout.1])?;
        let (name, threads) = if tc { ("flash_fwd_tc", 128) } else { ("flash_fwd", THREADS) };
        let f = func!(dev, name, T);
        let mut a = f.builder();
        a.arg(&qv).arg(&kv).arg(&vv).arg(&no_out).arg(&lse).arg(&nn).arg(&s);
        // SAFETY: (q, k, v, o = NULL, lse, n, scale).
        unsafe { a.launch(flash_grid(heads, n, threads)) }.w()?;
        // on tensor cores, 64 000 bytes of dynamic shared memory (the kernel's limit raised);
        // the same arguments either way
        let (suffix, cfg) = if tc {
            let mut cfg = flash_grid(heads, n, 128);
            cfg.shared_mem_bytes = BWD_TC_SMEM;
            ("_tc", cfg)
        } else {
            ("", flash_grid(heads, n, THREADS))
        };
        let f = func!(dev, format!("flash_bwd_dq{suffix}"), T);
        if tc {
            f.set_attribute(MAX_DYNAMIC_SHARED, BWD_TC_SMEM as i32).w()?;
        }
        let mut a = f.builder();
        a.arg(&all).arg(&ov).arg(&dov).arg(&lse).arg(&delta).arg(&grads).arg(&nn).arg(&s);
        // SAFETY: (qkv, o, dout, lse, delta, grads, n, scale); grads holds 3·heads·n·64.
        unsafe { a.launch(cfg) }.w()?;
        let f = func!(dev, format!("flash_bwd_dkdv{suffix}"), T);
        if tc {
            f.set_attribute(MAX_DYNAMIC_SHARED, BWD_TC_SMEM as i32).w()?;
        }
        let mut a = f.builder();
        a.arg(&all).arg(&dov).arg(&lse).arg(&delta).arg(&grads).arg(&nn).arg(&s);
        // SAFETY: (qkv, dout, lse, delta, grads, n, scale).
        unsafe { a.launch(cfg) }.w()?;
        Ok(wrap(grads, dev))
    })
}

/// The resampling op (`resample/`) on float32: `cols` along the last dim, then `rows` along
/// dim −2, each rule uploaded as CSR arrays (a few KB).
pub(crate) fn resample(
    x: (&CudaStorage, &Layout),
    rows: &crate::resample::Taps,
    cols: &crate::resample::Taps,
) -> R<CudaStorage> {
    const OP: &str = "resample2d";
    let dev = x.0.device();
    let (h, w, ho, wo) = (rows.n_in(), cols.n_in(), rows.n_out(), cols.n_out());
    let planes = x.1.shape().elem_count() / (h * w).max(1);
    let xv = view::<f32>(OP, x.0, x.1)?;
    let upload = |t: &crate::resample::Taps| -> R<(CudaSlice<i32>, CudaSlice<i32>, CudaSlice<f32>)> {
        let (off, idx, wt) = t.csr();
        let off: Vec<i32> = off.iter().map(|&o| as_i32(OP, "taps", o)).collect::<R<_>>()?;
        let idx: Vec<i32> = idx.iter().map(|&i| i as i32).collect();
        let wt: Vec<f32> = wt.iter().map(|&v| v as f32).collect();
        Ok((dev.clone_htod(&off)?, dev.clone_htod(&idx)?, dev.clone_htod(&wt)?))
    };
    let ((ro, ri, rw), (co, ci, cw)) = (upload(rows)?, upload(cols)?);
    // SAFETY: both are written whole by their kernels.
    let tmp = unsafe { dev.alloc::<f32>((planes * h * wo).max(1))? };
    let out = unsafe { dev.alloc::<f32>((planes * ho * wo).max(1))? };
    let (np, nh, nw, nho, nwo) = (
        as_i32(OP, "planes", planes)?,
        as_i32(OP, "h", h)?,
        as_i32(OP, "w", w)?,
        as_i32(OP, "output h", ho)?,
        as_i32(OP, "output w", wo)?,
    );
    let rows_in = as_i32(OP, "rows", planes * h)?;
    let f = func!(dev, "resample_cols", f32);
    let mut a = f.builder();
    a.arg(&xv).arg(&tmp).arg(&co).arg(&ci).arg(&cw).arg(&rows_in).arg(&nw).arg(&nwo);
    // SAFETY: (x, out, off, idx, w, rows, n_in, n_out); the taps index within n_in (taps.rs).
    unsafe { a.launch(stride_grid(planes * h * wo)) }.w()?;
    let f = func!(dev, "resample_rows", f32);
    let mut a = f.builder();
    a.arg(&tmp).arg(&out).arg(&ro).arg(&ri).arg(&rw).arg(&np).arg(&nh).arg(&nho).arg(&nwo);
    // SAFETY: (x, out, off, idx, w, planes, n_in, n_out, width).
    unsafe { a.launch(stride_grid(planes * ho * wo)) }.w()?;
    Ok(wrap(out, dev))
}
