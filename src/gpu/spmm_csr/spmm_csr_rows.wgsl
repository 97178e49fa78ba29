// CSR SpMM for narrow X: Y[M, N] = epilogue(W[M, K] * X[K, N]), W
// unstructured in CSR, N = 1..~28 (e.g. the classifier's N = 1). Wider X goes
// to spmm_csr_rowwise.wgsl (src/gpu/spmm_csr.rs picks).
//
// Inputs: row_ptr (M + 1), col_idx and values (nnz; columns strictly
//   increasing within a row), as in src/sparse/csr.rs. x, y: row-major with
//   rows padded to n4 vec4s (GpuMatrix); X's padding columns are zero, so every
//   vec4 column is computed and Y's padding columns get finite values.
//
// Load balance (row swizzle, after Sputnik): row_order lists the rows by
//   decreasing non-zero count (ties: lower row first), computed once on upload
//   (spmm_csr::CsrWeights). Workgroups take consecutive slices of that order, so
//   the rows sharing a workgroup have about the same length, the heaviest
//   workgroups start first and empty rows end up together at the tail.
//
// spmm_csr_rows: R_RPW sorted rows per workgroup; each row gets R_CT x R_KS
//   threads: R_CT across vec4 columns, R_KS taking every R_KS-th non-zero
//   (neighbours read neighbouring values and columns, coalesced), four loads in
//   flight per thread. X rows are read as vec4s straight from memory; the R_KS
//   partial sums are added in workgroup memory.
//
// Grids are 1-D over tiles (row tile fastest, so consecutive workgroups share
// a column slab of X), folded into 2-D past 65535; the flat index is checked.
//
// Also the automatic choice for small products (fewer than 2^20 outputs, e.g.
// EfficientNet-Lite0's 1x1 convolutions), where it edged out the row-wise
// kernel. H100, 2026-11-25, ms at 75 / 90 / 98% sparsity (dense WGSL GEMM):
//   1280x320x49   R_CT 8,  R_KS 4   0.0092 / 0.0079 / 0.0068   (0.0157)
//   192x32x3136   R_CT 32, R_KS 1   0.0076 / 0.0070 / 0.0068   (0.0092)
//   480x80x196    R_CT 8,  R_KS 4   0.0072 / 0.0069 / 0.0066   (0.0087)
//   1000x1280x1   R_CT 1,  R_KS 32  0.0089 / 0.0079 / 0.0072   (0.0181)

struct CsrParams {
    m_rows: u32,     // M
    k: u32,          // K
    n4: u32,         // vec4 columns of X and Y (row stride / 4)
    row_tiles: u32,  // row tiles of R_RPW rows
    tiles: u32,      // row_tiles * column tiles
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: CsrParams;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> values: array<f32>;
@group(0) @binding(4) var<storage, read> row_order: array<u32>;
@group(0) @binding(5) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;

// Fused epilogue (src/gpu/epilogue.rs): HAS_BIAS, ACT, epilogue().
// import epilogue

// spmm_csr_rows shape (R_CT, R_KS, R_RPW) and reduction: common/rows.wgsl.
// import rows

@compute @workgroup_size(R_WG)
fn spmm_csr_rows(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let flat = wid.y * nwg.x + wid.x;
    if (flat >= p.tiles) {
        return;
    }
    let lane = rows_lane(flat, lid);
    let ks = lane.ks;
    let s = lane.row;
    let c4 = lane.c4;
    let live = lane.live;

    var acc = vec4<f32>(0.0);
    var r = 0u;
    if (live) {
        r = row_order[s];
        let e = row_ptr[r + 1u];
        var q = row_ptr[r] + ks;
        // Four independent non-zeros per trip keep four X loads in flight.
        loop {
            if (q + 3u * R_KS >= e) {
                break;
            }
            let q1 = q + R_KS;
            let q2 = q1 + R_KS;
            let q3 = q2 + R_KS;
            let x0 = x[col_idx[q] * p.n4 + c4];
            let x1 = x[col_idx[q1] * p.n4 + c4];
            let x2 = x[col_idx[q2] * p.n4 + c4];
            let x3 = x[col_idx[q3] * p.n4 + c4];
            acc = fma(vec4<f32>(values[q]), x0, acc);
            acc = fma(vec4<f32>(values[q1]), x1, acc);
            acc = fma(vec4<f32>(values[q2]), x2, acc);
            acc = fma(vec4<f32>(values[q3]), x3, acc);
            q = q3 + R_KS;
        }
        for (; q < e; q += R_KS) {
            acc = fma(vec4<f32>(values[q]), x[col_idx[q] * p.n4 + c4], acc);
        }
    }
    acc = rows_sum(acc, lid, ks);
    if (live && ks == 0u) {
        y[r * p.n4 + c4] = epilogue(acc, r);
    }
}
