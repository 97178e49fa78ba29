//! GPU magnitude pruning against the CPU reference, bit for bit: the downloaded
//! formats must equal the ones built on the CPU from `wgsparse::prune` masks
//! (values compared as bit patterns, so -0.0 and denormals count). Outputs are
//! poisoned before every run. These tests FAIL (never skip) without an adapter.

use wgsparse::gpu::{
    elementwise, longest_first, prune_block_blocking, prune_global_blocking, prune_nm_blocking,
    prune_unstructured_blocking, Context, GpuBuffer, GpuMatrix, PrunePlan,
};
use wgsparse::prune::{self, BlockNorm};
use wgsparse::{Bsr, Csr, Error, Matrix, NmMatrix};

fn ctx() -> Context {
    match Context::new_blocking() {
        Ok(c) => c,
        Err(e) => panic!("GPU tests need an adapter (CI installs mesa-vulkan-drivers): {e}"),
    }
}

/// splitmix64: deterministic data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

#[derive(Clone, Copy, Debug)]
enum Data {
    /// Uniform in [-1, 1).
    Random,
    /// Every weight +-0.5: one magnitude, ties everywhere.
    AllHalf,
    /// +0, -0, denormals of both signs and a few normal values.
    ZerosDenormals,
    /// A handful of magnitudes (heavy ties at several levels).
    FewLevels,
}

const DATA: [Data; 4] = [Data::Random, Data::AllHalf, Data::ZerosDenormals, Data::FewLevels];

fn matrix(rows: usize, cols: usize, data: Data, seed: u64) -> Matrix {
    let mut rng = Rng(seed ^ ((rows as u64) << 32) ^ cols as u64);
    let v = (0..rows * cols)
        .map(|_| match data {
            Data::Random => rng.signed(),
            Data::AllHalf => {
                if rng.next() & 1 == 0 {
                    0.5
                } else {
                    -0.5
                }
            }
            Data::ZerosDenormals => {
                let options = [
                    0.0,
                    -0.0,
                    f32::from_bits(1),
                    -f32::from_bits(1),
                    f32::from_bits(0x0000_0400),
                    f32::from_bits(0x007f_ffff),
                    -f32::from_bits(0x007f_ffff),
                    f32::MIN_POSITIVE,
                    1e-30,
                    0.75,
                ];
                options[rng.below(options.len())]
            }
            Data::FewLevels => {
                let options = [0.0, -0.25, 0.25, 0.5, -1.0, 1.0, 2.0];
                options[rng.below(options.len())]
            }
        })
        .collect();
    Matrix::new(rows, cols, v).unwrap()
}

/// Shapes not multiples of anything, plus degenerate ones.
const SHAPES: [(usize, usize); 7] = [(37, 53), (1, 1), (130, 17), (257, 300), (1, 1000), (5, 3), (64, 4)];
const SPARSITIES: [f64; 5] = [0.0, 0.3, 0.5, 0.9, 0.99];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Panics with the first differing index, actual and expected.
fn assert_words(what: &str, got: &[u32], want: &[u32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: index {i}: actual {:#010x} ({}), expected {:#010x} ({})",
            got[i],
            f32::from_bits(got[i]),
            want[i],
            f32::from_bits(want[i])
        );
    }
}

fn poison(ctx: &Context, bufs: &[&GpuBuffer]) {
    for b in bufs {
        elementwise::fill_f32(ctx, b, f32::from_bits(0x7fc0_dead)).unwrap();
    }
}

fn run<T>(ctx: &Context, plan: &PrunePlan<T>) -> wgsparse::Result<()> {
    let mut enc = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    plan.encode(&mut enc);
    ctx.queue().submit([enc.finish()]);
    pollster::block_on(plan.check(ctx))
}

fn check_nm(ctx: &Context, w: &Matrix, n: usize, m: usize, what: &str) {
    let gw = GpuMatrix::upload(ctx, w, "w").unwrap();
    let plan = PrunePlan::nm(ctx, &gw, n, m).unwrap();
    poison(ctx, &[&plan.output().values, &plan.output().indices]);
    run(ctx, &plan).unwrap();
    let got = pollster::block_on(plan.output().download(ctx)).unwrap_or_else(|e| panic!("{what}: download: {e}"));
    let mask = prune::nm(w, n, m).unwrap().mask;
    let want = NmMatrix::from_dense_masked(w, &mask, n, m).unwrap();
    assert_words(&format!("{what} indices"), got.indices(), want.indices());
    assert_words(&format!("{what} values"), &bits(got.values()), &bits(want.values()));
}

fn check_csr(what: &str, got: &Csr, want: &Csr) {
    assert_eq!((got.rows(), got.cols()), (want.rows(), want.cols()), "{what}");
    assert_words(&format!("{what} row_ptr"), got.row_ptr(), want.row_ptr());
    assert_words(&format!("{what} col_idx"), got.col_idx(), want.col_idx());
    assert_words(&format!("{what} values"), &bits(got.values()), &bits(want.values()));
}

fn check_unstructured(ctx: &Context, w: &Matrix, s: f64, what: &str) {
    let gw = GpuMatrix::upload(ctx, w, "w").unwrap();
    let plan = PrunePlan::unstructured(ctx, &gw, s).unwrap();
    let o = plan.output();
    poison(ctx, &[&o.row_ptr, &o.col_idx, &o.values]);
    run(ctx, &plan).unwrap();
    let got = pollster::block_on(plan.output().download(ctx)).unwrap_or_else(|e| panic!("{what}: download: {e}"));
    let mask = prune::unstructured(w, s).unwrap().mask;
    check_csr(what, &got, &Csr::from_dense_masked(w, &mask).unwrap());
}

fn check_block(ctx: &Context, w: &Matrix, (br, bc): (usize, usize), s: f64, norm: BlockNorm, what: &str) {
    let gw = GpuMatrix::upload(ctx, w, "w").unwrap();
    let plan = PrunePlan::block(ctx, &gw, br, bc, s, norm).unwrap();
    let o = plan.output();
    poison(ctx, &[&o.row_ptr, &o.col_idx, &o.values, &o.row_order]);
    run(ctx, &plan).unwrap();
    let o = plan.output();
    let got = pollster::block_on(o.download(ctx)).unwrap_or_else(|e| panic!("{what}: download: {e}"));
    let mask = prune::block(w, br, bc, s, norm).unwrap().mask;
    let want = Bsr::from_dense_masked(w, &mask, br, bc).unwrap();
    assert_words(&format!("{what} row_ptr"), got.row_ptr(), want.row_ptr());
    assert_words(&format!("{what} col_idx"), got.col_idx(), want.col_idx());
    assert_words(&format!("{what} values"), &bits(got.values()), &bits(want.values()));
    let order: Vec<u32> = o.row_order.read_blocking(ctx).unwrap();
    assert_words(&format!("{what} row_order"), &order, &longest_first(want.row_ptr()));
}

#[test]
fn nm_matches_the_cpu_on_every_pattern_shape_and_data() {
    let ctx = ctx();
    let patterns = [
        (2, 4),
        (1, 4),
        (2, 8),
        (4, 8),
        (3, 16),
        (1, 2),
        (5, 7),
        (16, 16),
        (7, 9),
    ];
    for (rows, cols) in SHAPES {
        for (n, m) in patterns {
            for data in DATA {
                let w = matrix(rows, cols, data, 1);
                check_nm(&ctx, &w, n, m, &format!("{rows}x{cols} {n}:{m} {data:?}"));
            }
        }
    }
}

#[test]
fn nm_spans_many_workgroups() {
    let ctx = ctx();
    // 300 rows of 1001 columns: tiles cross rows for every word width.
    for (n, m) in [(2, 4), (1, 2), (3, 8), (3, 16)] {
        let w = matrix(300, 1001, Data::Random, 2);
        check_nm(&ctx, &w, n, m, &format!("300x1001 {n}:{m}"));
    }
    // Narrow rows: many rows per tile.
    let w = matrix(3000, 5, Data::FewLevels, 3);
    check_nm(&ctx, &w, 2, 4, "3000x5 2:4");
}

#[test]
fn unstructured_matches_the_cpu() {
    let ctx = ctx();
    for (rows, cols) in SHAPES {
        for s in SPARSITIES {
            for data in DATA {
                let w = matrix(rows, cols, data, 4);
                check_unstructured(&ctx, &w, s, &format!("{rows}x{cols} s={s} {data:?}"));
            }
        }
    }
}

#[test]
fn unstructured_on_larger_matrices_with_many_chunks() {
    let ctx = ctx();
    // 1200 x 1001: 300 chunks, many histogram workgroups.
    for (s, data) in [(0.9, Data::Random), (0.5, Data::FewLevels), (0.37, Data::AllHalf)] {
        let w = matrix(1200, 1001, data, 5);
        check_unstructured(&ctx, &w, s, &format!("1200x1001 s={s} {data:?}"));
    }
    // 2049 x 4093: 2049 chunks, more than one round of the chunk scan
    // (256 threads x 8 chunks).
    let w = matrix(2049, 4093, Data::FewLevels, 6);
    check_unstructured(&ctx, &w, 0.6, "2049x4093");
}

#[test]
fn unstructured_distinguishes_values_in_the_low_digits() {
    let ctx = ctx();
    // Magnitudes differing only in the lowest bits, with repeats: the last two
    // radix passes decide.
    let v: Vec<f32> = (0..5000)
        .map(|i| {
            let b = 0x3f00_0000u32 + ((i * 7919) % 1500) as u32;
            let x = f32::from_bits(b);
            if i % 3 == 0 {
                -x
            } else {
                x
            }
        })
        .collect();
    let w = Matrix::new(50, 100, v).unwrap();
    for s in [0.001, 0.25, 0.5, 0.77, 0.999] {
        check_unstructured(&ctx, &w, s, &format!("low digits s={s}"));
    }
}

#[test]
fn block_matches_the_cpu() {
    let ctx = ctx();
    let blocks = [(1, 1), (2, 2), (3, 5), (8, 8), (4, 16), (16, 4), (7, 3), (64, 64)];
    let shapes = [(37, 53), (1, 1), (130, 17), (257, 300), (5, 3)];
    for (rows, cols) in shapes {
        for bsz in blocks {
            for s in [0.0, 0.5, 0.9, 0.99] {
                for norm in [BlockNorm::L2, BlockNorm::L1] {
                    let w = matrix(rows, cols, Data::Random, 6);
                    let what = format!("{rows}x{cols} {bsz:?} s={s} {norm:?}");
                    check_block(&ctx, &w, bsz, s, norm, &what);
                }
            }
        }
    }
}

#[test]
fn block_with_ties_zeros_and_denormals() {
    let ctx = ctx();
    for data in [Data::AllHalf, Data::ZerosDenormals, Data::FewLevels] {
        for (rows, cols) in [(37, 53), (130, 17), (64, 4)] {
            for bsz in [(1, 1), (2, 2), (3, 5), (8, 8)] {
                for s in [0.0, 0.5, 0.9] {
                    for norm in [BlockNorm::L2, BlockNorm::L1] {
                        let w = matrix(rows, cols, data, 7);
                        let what = format!("{rows}x{cols} {bsz:?} s={s} {norm:?} {data:?}");
                        check_block(&ctx, &w, bsz, s, norm, &what);
                    }
                }
            }
        }
    }
}

#[test]
fn block_row_order_puts_the_longest_rows_first() {
    let ctx = ctx();
    // 600 block rows (more than one workgroup of the ranking kernel) with
    // uneven counts: row r has large weights in (r * 7) % 13 of its 13 blocks.
    let (rows, cols) = (600, 13);
    let mut v = vec![0.01f32; rows * cols];
    for r in 0..rows {
        for c in 0..(r * 7) % 13 {
            v[r * cols + c] = 1.0 + c as f32;
        }
    }
    let w = Matrix::new(rows, cols, v).unwrap();
    check_block(&ctx, &w, (1, 1), 0.5, BlockNorm::L2, "row order");
}

#[test]
fn global_matches_the_cpu_across_three_tensors() {
    let ctx = ctx();
    let shapes = [(37, 53), (130, 17), (1, 1000)];
    for data in DATA {
        for s in SPARSITIES {
            let ws: Vec<Matrix> = shapes
                .iter()
                .enumerate()
                .map(|(i, &(r, c))| matrix(r, c, data, 8 + i as u64))
                .collect();
            check_global(&ctx, &ws, s, &format!("{data:?} s={s}"));
        }
    }
}

#[test]
fn global_with_empty_and_tiny_tensors() {
    let ctx = ctx();
    let ws = vec![
        matrix(3, 5, Data::AllHalf, 9),
        Matrix::zeros(0, 5).unwrap(),
        matrix(1, 1, Data::AllHalf, 10),
        matrix(200, 33, Data::FewLevels, 11),
    ];
    for s in [0.0, 0.1, 0.5, 0.99] {
        check_global(&ctx, &ws, s, &format!("with empty s={s}"));
    }
    assert!(prune_global_blocking(&ctx, &[], 0.5).unwrap().is_empty());
}

fn check_global(ctx: &Context, ws: &[Matrix], s: f64, what: &str) {
    let gws: Vec<GpuMatrix> = ws.iter().map(|w| GpuMatrix::upload(ctx, w, "w").unwrap()).collect();
    let refs: Vec<&GpuMatrix> = gws.iter().collect();
    let plan = PrunePlan::global(ctx, &refs, s).unwrap();
    for o in plan.output() {
        poison(ctx, &[&o.row_ptr, &o.col_idx, &o.values]);
    }
    let outs = pollster::block_on(plan.run(ctx)).unwrap();
    let cpu: Vec<&Matrix> = ws.iter().collect();
    let masks = prune::global(&cpu, s).unwrap();
    assert_eq!(outs.len(), ws.len());
    for (t, ((o, w), p)) in outs.iter().zip(ws).zip(&masks).enumerate() {
        let got = pollster::block_on(o.download(ctx)).unwrap_or_else(|e| panic!("{what} tensor {t}: download: {e}"));
        let want = Csr::from_dense_masked(w, &p.mask).unwrap();
        check_csr(&format!("{what} tensor {t}"), &got, &want);
    }
}

#[test]
fn empty_matrices() {
    let ctx = ctx();
    for (rows, cols) in [(0, 5), (5, 0), (0, 0)] {
        let w = Matrix::zeros(rows, cols).unwrap();
        check_nm(&ctx, &w, 2, 4, &format!("{rows}x{cols}"));
        check_unstructured(&ctx, &w, 0.5, &format!("{rows}x{cols}"));
        check_block(&ctx, &w, (2, 3), 0.5, BlockNorm::L2, &format!("{rows}x{cols}"));
    }
}

/// The CPU's error for `w`, which the GPU must reproduce (index and value bits).
fn assert_same_error(what: &str, got: wgsparse::Result<()>, want: wgsparse::Error) {
    match (got, want) {
        (
            Err(Error::NonFinite {
                index: gi, value: gv, ..
            }),
            Error::NonFinite {
                index: wi, value: wv, ..
            },
        ) => {
            assert_eq!(gi, wi, "{what}: index");
            assert_eq!(gv.to_bits(), wv.to_bits(), "{what}: value");
        }
        (got, want) => panic!("{what}: got {got:?}, expected {want:?}"),
    }
}

#[test]
fn non_finite_weights_are_errors_naming_the_first() {
    let ctx = ctx();
    let bad = [
        (5usize, f32::NAN),
        (100, f32::INFINITY),
        (1000, f32::NEG_INFINITY),
        (1960, f32::from_bits(0xffc0_1234)),
    ];
    for (first, value) in bad {
        let mut w = matrix(37, 53, Data::Random, 12);
        w.data_mut()[first] = value;
        w.data_mut()[1960] = f32::INFINITY; // a later one must not win
        if first == 1960 {
            w.data_mut()[1960] = value;
        }
        let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
        let what = format!("{value} at {first}");

        let want = prune::nm(&w, 2, 4).unwrap_err();
        let got = prune_nm_blocking(&ctx, &gw, 2, 4).map(|_| ());
        assert_same_error(&format!("nm {what}"), got, want);

        let want = prune::unstructured(&w, 0.5).unwrap_err();
        let got = prune_unstructured_blocking(&ctx, &gw, 0.5).map(|_| ());
        assert_same_error(&format!("unstructured {what}"), got, want);
        // k = 0 runs no radix pass but still checks.
        let want = prune::unstructured(&w, 0.0).unwrap_err();
        let got = prune_unstructured_blocking(&ctx, &gw, 0.0).map(|_| ());
        assert_same_error(&format!("unstructured s=0 {what}"), got, want);

        for norm in [BlockNorm::L2, BlockNorm::L1] {
            let want = prune::block(&w, 4, 3, 0.5, norm).unwrap_err();
            let got = prune_block_blocking(&ctx, &gw, 4, 3, 0.5, norm).map(|_| ());
            assert_same_error(&format!("block {norm:?} {what}"), got, want);
        }

        // Global: the bad tensor is the second; the error names its own index.
        let a = matrix(10, 10, Data::Random, 13);
        let ga = GpuMatrix::upload(&ctx, &a, "a").unwrap();
        let want = prune::global(&[&a, &w, &a], 0.5).unwrap_err();
        let got = prune_global_blocking(&ctx, &[&ga, &gw, &ga], 0.5).map(|_| ());
        assert_same_error(&format!("global {what}"), got, want);
    }
}

#[test]
fn invalid_parameters_are_errors_not_panics() {
    let ctx = ctx();
    let w = matrix(8, 8, Data::Random, 14);
    let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
    for s in [-0.1, 1.0, 1.5, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            PrunePlan::unstructured(&ctx, &gw, s),
            Err(Error::InvalidSparsity(_))
        ));
        assert!(matches!(
            PrunePlan::global(&ctx, &[&gw], s),
            Err(Error::InvalidSparsity(_))
        ));
        assert!(matches!(
            PrunePlan::block(&ctx, &gw, 2, 2, s, BlockNorm::L2),
            Err(Error::InvalidSparsity(_))
        ));
    }
    for (n, m) in [(0, 4), (5, 4), (2, 1), (2, 17), (0, 0)] {
        assert!(matches!(PrunePlan::nm(&ctx, &gw, n, m), Err(Error::InvalidNm { .. })));
    }
    for (br, bc) in [(0, 4), (4, 0), (65, 1), (1, 65)] {
        assert!(matches!(
            PrunePlan::block(&ctx, &gw, br, bc, 0.5, BlockNorm::L1),
            Err(Error::InvalidBlock { .. })
        ));
    }
}

#[test]
fn plans_encode_into_one_submission_and_rerun_on_new_weights() {
    let ctx = ctx();
    let w1 = matrix(37, 53, Data::Random, 15);
    let w2 = matrix(130, 17, Data::FewLevels, 16);
    let g1 = GpuMatrix::upload(&ctx, &w1, "w1").unwrap();
    let g2 = GpuMatrix::upload(&ctx, &w2, "w2").unwrap();
    let nm = PrunePlan::nm(&ctx, &g1, 2, 4).unwrap();
    let un = PrunePlan::unstructured(&ctx, &g2, 0.7).unwrap();
    let bl = PrunePlan::block(&ctx, &g1, 4, 4, 0.5, BlockNorm::L2).unwrap();
    let gl = PrunePlan::global(&ctx, &[&g1, &g2], 0.8).unwrap();
    let pipelines = ctx.cached_pipelines();

    let check_all = |a: &Matrix, b: &Matrix| {
        let got = pollster::block_on(nm.output().download(&ctx)).unwrap();
        let mask = prune::nm(a, 2, 4).unwrap().mask;
        assert_eq!(got, NmMatrix::from_dense_masked(a, &mask, 2, 4).unwrap());
        let got = pollster::block_on(un.output().download(&ctx)).unwrap();
        let mask = prune::unstructured(b, 0.7).unwrap().mask;
        check_csr("one submission", &got, &Csr::from_dense_masked(b, &mask).unwrap());
        let got = pollster::block_on(bl.output().download(&ctx)).unwrap();
        let mask = prune::block(a, 4, 4, 0.5, BlockNorm::L2).unwrap().mask;
        assert_eq!(got, Bsr::from_dense_masked(a, &mask, 4, 4).unwrap());
        // Global plan outputs have capacity; the kept count is row_ptr[rows].
        let masks = prune::global(&[a, b], 0.8).unwrap();
        for (o, (w, p)) in gl.output().iter().zip([a, b].iter().zip(&masks)) {
            let want = Csr::from_dense_masked(w, &p.mask).unwrap();
            let row_ptr: Vec<u32> = o.row_ptr.read_blocking(&ctx).unwrap();
            assert_eq!(row_ptr, want.row_ptr());
            let nnz = want.nnz();
            let cols: Vec<u32> = o.col_idx.read_blocking(&ctx).unwrap();
            assert_eq!(&cols[..nnz], want.col_idx());
            let vals: Vec<f32> = o.values.read_blocking(&ctx).unwrap();
            assert_eq!(bits(&vals[..nnz]), bits(want.values()));
        }
    };

    let submit_all = || {
        let mut enc = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        nm.encode(&mut enc);
        un.encode(&mut enc);
        bl.encode(&mut enc);
        gl.encode(&mut enc);
        ctx.queue().submit([enc.finish()]);
    };
    submit_all();
    for s in [nm.status(), un.status(), bl.status(), gl.status()] {
        assert_eq!(s.read_blocking::<u32>(&ctx).unwrap()[0], 0);
    }
    check_all(&w1, &w2);

    // New weights in the same buffers (same shapes): record the same plans again,
    // twice in one submission (scratch is reset by the plans themselves).
    let w1b = matrix(37, 53, Data::AllHalf, 17);
    let w2b = matrix(130, 17, Data::Random, 18);
    for (g, w) in [(&g1, &w1b), (&g2, &w2b)] {
        let mut padded = vec![0.0f32; w.rows() * g.stride()];
        for r in 0..w.rows() {
            padded[r * g.stride()..r * g.stride() + w.cols()]
                .copy_from_slice(&w.data()[r * w.cols()..(r + 1) * w.cols()]);
        }
        ctx.queue()
            .write_buffer(g.buffer().raw(), 0, bytemuck::cast_slice(&padded));
    }
    let mut enc = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    for _ in 0..2 {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        nm.record(&mut pass);
        un.record(&mut pass);
        bl.record(&mut pass);
        gl.record(&mut pass);
    }
    ctx.queue().submit([enc.finish()]);
    check_all(&w1b, &w2b);
    // No pipeline was compiled for the reruns.
    submit_all();
    assert_eq!(ctx.cached_pipelines(), pipelines);
}

#[test]
fn repeated_calls_reuse_the_cached_pipelines() {
    let ctx = ctx();
    let w = matrix(40, 40, Data::Random, 19);
    let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
    prune_nm_blocking(&ctx, &gw, 2, 4).unwrap();
    prune_unstructured_blocking(&ctx, &gw, 0.5).unwrap();
    prune_block_blocking(&ctx, &gw, 4, 4, 0.5, BlockNorm::L1).unwrap();
    let n = ctx.cached_pipelines();
    for s in [0.1, 0.6, 0.95] {
        prune_nm_blocking(&ctx, &gw, 2, 4).unwrap();
        prune_unstructured_blocking(&ctx, &gw, s).unwrap();
        prune_block_blocking(&ctx, &gw, 4, 4, s, BlockNorm::L1).unwrap();
        prune_global_blocking(&ctx, &[&gw, &gw], s).unwrap();
    }
    assert_eq!(ctx.cached_pipelines(), n);
}

#[test]
fn block_scores_round_like_the_cpu() {
    // One pair of 1x2 blocks [a, b] and [b, a] per matrix, half the blocks
    // pruned: with fused multiply-adds in row-major order the L2 score of the
    // first is smaller in the last bit, so the CPU prunes it; an unfused or
    // reordered sum would tie them and prune the later block. With L1, triples
    // [a, b, c] and [c, b, a] differ through the summation order alone.
    let ctx = ctx();
    let mut rng = Rng(20);
    let (mut l2, mut l1) = (0, 0);
    while l2 < 24 || l1 < 24 {
        let (a, b, c) = (rng.signed(), rng.signed() * 1e-3, rng.signed() * 1e-7);
        if l2 < 24 && b.mul_add(b, a.mul_add(a, 0.0)) < a.mul_add(a, b.mul_add(b, 0.0)) {
            let w = Matrix::new(1, 4, vec![a, b, b, a]).unwrap();
            let p = prune::block(&w, 1, 2, 0.5, BlockNorm::L2).unwrap();
            assert_eq!(p.mask.keep(), &[false, false, true, true]);
            check_block(&ctx, &w, (1, 2), 0.5, BlockNorm::L2, &format!("L2 {a} {b}"));
            l2 += 1;
        }
        if l1 < 24 && a.abs() + b.abs() + c.abs() < c.abs() + b.abs() + a.abs() {
            let w = Matrix::new(1, 6, vec![a, b, c, c, b, a]).unwrap();
            let p = prune::block(&w, 1, 3, 0.5, BlockNorm::L1).unwrap();
            assert_eq!(p.mask.keep(), &[false, false, false, true, true, true]);
            check_block(&ctx, &w, (1, 3), 0.5, BlockNorm::L1, &format!("L1 {a} {b} {c}"));
            l1 += 1;
        }
    }
}

#[test]
fn block_scores_are_bit_identical_over_the_whole_f32_range() {
    // Random finite bit patterns (subnormals, huge values whose squares
    // overflow to inf, zeros of both signs), and magnitudes in a window of a
    // few binades so that every alignment and rounding case of the sums occurs.
    let ctx = ctx();
    let mut rng = Rng(21);
    let wide: Vec<f32> = (0..97 * 61)
        .map(|_| loop {
            let b = rng.next() as u32;
            if (b >> 23) & 0xff != 0xff {
                break f32::from_bits(b);
            }
        })
        .collect();
    let narrow = |center: u32, rng: &mut Rng| -> Vec<f32> {
        (0..97 * 61)
            .map(|_| {
                let e = center + (rng.below(24) as u32);
                let b = (rng.next() as u32 & 0x807f_ffff) | (e.min(254) << 23);
                if rng.below(10) == 0 {
                    f32::from_bits(rng.next() as u32 & 0x8000_07ff) // subnormal or zero
                } else {
                    f32::from_bits(b)
                }
            })
            .collect()
    };
    // Exact ties: with a significand odd * 2^11 (odd in 4097..5793), v * v ends
    // exactly on its rounding bit, so a tiny earlier score (shifted out of any
    // finite window) decides between rounding to even and rounding up.
    let ties: Vec<f32> = (0..97 * 61)
        .map(|i| {
            if i % 2 == 0 {
                [0.0, 1e-20, 3e-25, f32::from_bits(1)][rng.below(4)]
            } else {
                let odd = 4097 + 2 * rng.below(848) as u32;
                let e = 100 + rng.below(50) as u32;
                f32::from_bits((e << 23) | ((odd << 11) & 0x7f_ffff))
            }
        })
        .collect();
    let data = [
        ties,
        wide,
        narrow(1, &mut rng),   // subnormal squares, subnormal sums
        narrow(50, &mut rng),  // squares around the subnormal boundary
        narrow(110, &mut rng), // ordinary weights
        narrow(180, &mut rng), // squares near overflow
    ];
    for (i, v) in data.into_iter().enumerate() {
        let w = Matrix::new(97, 61, v).unwrap();
        let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
        for (br, bc) in [(1, 1), (1, 2), (3, 5), (8, 8), (64, 64), (2, 61), (1, 61)] {
            for norm in [BlockNorm::L2, BlockNorm::L1] {
                let plan = PrunePlan::block_scores(&ctx, &gw, br, bc, norm).unwrap();
                poison(&ctx, &[plan.output().buffer()]);
                let got = pollster::block_on(plan.run(&ctx)).unwrap();
                let got = got.download_blocking(&ctx).unwrap();
                let want = prune::block_scores(&w, br, bc, norm).unwrap();
                assert_words(&format!("data {i} {br}x{bc} {norm:?}"), &bits(got.data()), &bits(&want));
            }
        }
    }
}

#[test]
fn outputs_over_the_device_limit_are_limit_errors() {
    let ctx = ctx();
    // One column: the input takes 16 bytes a row (padded stride), N:M 16:16
    // stores 16 slots a row, 4x the input, which goes over the binding limit.
    let limit = ctx.limits().max_storage_buffer_binding_size;
    let rows = (limit / 64 + 1) as usize;
    let w = Matrix::zeros(rows, 1).unwrap();
    let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
    match PrunePlan::nm(&ctx, &gw, 16, 16) {
        Err(Error::Limit(msg)) => assert!(msg.contains("max_"), "{msg}"),
        other => panic!("expected a limit error, got {:?}", other.map(|_| ())),
    }
    // The same matrix prunes fine where the output is no larger than the input.
    assert!(PrunePlan::nm(&ctx, &gw, 1, 2).is_ok());
}
