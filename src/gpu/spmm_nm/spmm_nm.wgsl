// N:M SpMM: Y[M, N] = epilogue(W[M, K] * X[K, N]), W with n of every m along K.
//
// Inputs (see src/sparse/nm.rs for the authoritative layout):
//   w_values[(r * groups + g) * n + s]  slot s of group g of row r; a row's
//     slots j = g * n + s are contiguous (vpr = groups * n values per row).
//   w_indices: in-group index of slot j of row r in word r * wpr + j / PER_WORD,
//     at bit (j % PER_WORD) * BITS. Slots pointing past K hold the value 0.
//   x, y: row-major with rows padded to n4 vec4s (GpuMatrix); X's padding
//     columns are zero, so every vec4 column is computed and Y's padding
//     columns get finite values.
//
// Three entry points, the same bindings:
//
// spmm_nm_tiled (N >= ~32): a workgroup owns TM = RT * RM rows of W by
//   TN = 4 * CT columns of X/Y and walks K in chunks of KT = GPC * m rows.
//   Per chunk it stages, in workgroup memory,
//     xs: X[k0 .. k0 + KT, tile columns] (rows >= K and columns >= N4 as zeros),
//     wv/wo: for each of the TM rows, the SC = GPC * n slots of the chunk as
//       vec4s of values and of pre-scaled xs offsets (k_local * CT), decoded
//       once from the packed indices (Sputnik's trick of pre-scaled indices).
//   Thread (ct, rt) owns rows rt, rt + RT, ..., rt + (RM-1) * RT of the tile
//   and the vec4 column ct: for each slot it gathers xs[offset + ct] and does
//   one vec4 FMA per row. The 16 (CT) lanes that share a row read one xs row
//   contiguously and the row's value/offset by broadcast; compressed values
//   and indices are read from memory once per tile.
//
// spmm_nm_switch (large N, n <= 2, m <= 8: 2:4, 1:4, 1:2, ...): the smem
//   gather above moves one X float per FMA, which caps it at about a quarter
//   of the FMA rate. Here X values live in registers and serve several rows:
//   a workgroup owns S_TM = S_RT * S_RM rows by S_XW = S_CT * S_TN4 vec4
//   columns; thread (ct, rt) owns rows rt, rt + S_RT, ... and the vec4 columns
//   ct, ct + S_CT, .... Per group of m it loads the group's m X rows into
//   registers once and, for every row, adds v0 * X[i0] (+ v1 * X[i1]) picking
//   the registers by a switch on the group's pattern (i0, or i0 * 8 + i1):
//   the S_CT (>= subgroup size, 32 by default) lanes that share rows share the
//   pattern, so the branch does not diverge. Staged per chunk of S_GPC groups
//   (the next chunk loaded into registers while this one is multiplied): X
//   rows, and per (row, group) the pattern code and the n values.
//
// spmm_nm_rows (small N, e.g. the classifier's N = 1): RPW rows per workgroup;
//   each row gets CT x KS threads: CT across vec4 columns, KS splitting the
//   row's slots (strided, so KS neighbours read neighbouring values). Each
//   thread reads W and X straight from memory; the KS partial sums are added
//   in workgroup memory.
//
// Grids are 1-D over tiles (row tile fastest, so consecutive workgroups share
// a column slab of X), folded into 2-D past 65535; the flat index is checked.
//
// Measured on an H100 through Vulkan (wgpu 30, driver 580.159.04, 2026-11-25,
// median of 20 GPU-timestamped runs, `wgsparse bench --variants`), 4096^3,
// dense WGSL GEMM 3.80 ms:
//   2:4  switch S_CT 32 x S_TN4 2, S_RT 8 x S_RM 8, S_GPC 2 (auto)  4.85 ms
//        tiled CT 32, RT 8 x RM 8, GPC 8                           6.57
//        (old per-slot switch, 8 cases of 2 vec4 FMAs)             6.8 - 9.1
//   1:4  switch (same tile, auto)                                  3.66
//        tiled CT 32, RT 8 x RM 8, GPC 8                           3.76
//   2:8  tiled CT 16, RT 16 x RM 8, GPC 4 (auto)                   3.58
//        switch (28 patterns)                                      10 - 23
// The switch's time grows with the number of cases (2:8's 28 cost 4.6x
// 2:4's 6), as if the driver flattened it into predicated code rather than
// branching; the gather is bound by workgroup memory (one LDS.128 per vec4
// FMA: ~10 TFLOP/s of useful work). Neither reaches the dense kernel's 36
// TFLOP/s on the kept half of a 2:4 matrix, so 2:4 stays 0.78x dense.
// Small products (EfficientNet-Lite0, fewer than 2^20 outputs), ms for
// 1:4 / 2:8 / 2:4 (dense): 1280x320x49 rows R_CT 8, R_KS 4: 0.0084 / 0.0086 /
// 0.0109 (0.0157); 480x80x196 the same: 0.0067 / 0.0068 / 0.0075 (0.0087);
// 192x32x3136 tiled CT 16, RT 16 x RM 1, GPC 4: 0.0075 / 0.0075 / 0.0086
// (0.0092); 1000x1280x1 rows R_CT 1, R_KS 32: 0.0080 / 0.0081 / 0.0094
// (0.0181).

struct NmParams {
    m_rows: u32,     // M
    k: u32,          // K
    n4: u32,         // vec4 columns of X and Y (row stride / 4)
    vpr: u32,        // values (slots) per row: groups * n
    wpr: u32,        // index words per row
    row_tiles: u32,  // row tiles (of TM rows, or RPW rows for spmm_nm_rows)
    tiles: u32,      // row_tiles * column tiles
    chunks: u32,     // ceil(groups / GPC), spmm_nm_tiled only
}

@group(0) @binding(0) var<uniform> p: NmParams;
@group(0) @binding(1) var<storage, read> w_values: array<f32>;
@group(0) @binding(2) var<storage, read> w_indices: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;

// The pattern (specialised so slot arithmetic folds to constants).
override N_KEEP: u32 = 2u;
override M_GROUP: u32 = 4u;
override BITS: u32 = 2u;                     // ceil(log2 M_GROUP)
override PER_WORD: u32 = 32u / BITS;
override IDX_MASK: u32 = (1u << BITS) - 1u;

// Fused epilogue (src/gpu/epilogue.rs): HAS_BIAS, ACT, epilogue().
// import epilogue

// spmm_nm_tiled tile.
override GPC: u32 = 4u;                      // groups per K chunk
override CT: u32 = 16u;                      // threads (vec4 columns) across the tile
override RT: u32 = 16u;                      // threads across rows
override RM: u32 = 8u;                       // rows per thread, <= MAX_RM
override WG: u32 = CT * RT;
override KT: u32 = GPC * M_GROUP;            // X rows per chunk
override SC: u32 = GPC * N_KEEP;             // slots per row per chunk
override SC4: u32 = (SC + 3u) / 4u;          // ... in vec4s (tail slots: value 0)
override TM: u32 = RT * RM;
override XS_LEN: u32 = KT * CT;
override WS_LEN: u32 = TM * SC4;

// spmm_nm_switch tile.
override S_CT: u32 = 32u;                    // lanes sharing rows (>= subgroup size)
override S_TN4: u32 = 2u;                    // vec4 columns per lane (M_GROUP * S_TN4 <= 32)
override S_RT: u32 = 8u;                     // threads across rows
override S_RM: u32 = 8u;                     // rows per thread (S_RM * S_TN4 <= 16)
override S_GPC: u32 = 2u;                    // groups per K chunk
override S_WG: u32 = S_CT * S_RT;
override S_TM: u32 = S_RT * S_RM;
override S_XW: u32 = S_CT * S_TN4;           // vec4s per staged X row
override S_XS_LEN: u32 = S_GPC * M_GROUP * S_XW;
override S_WS_LEN: u32 = S_TM * S_GPC;
override S_XL: u32 = (S_XS_LEN + S_WG - 1u) / S_WG;   // staged X vec4s per thread (<= 8)
override S_WL: u32 = (S_WS_LEN + S_WG - 1u) / S_WG;   // staged (row, group) entries per thread (<= 4)

// spmm_nm_rows shape (R_CT, R_KS, R_RPW) and reduction: common/rows.wgsl.
// import rows

const MAX_RM: u32 = 8u;

var<workgroup> xs: array<vec4<f32>, XS_LEN>;
var<workgroup> wv: array<vec4<f32>, WS_LEN>;
var<workgroup> wo: array<vec4<u32>, WS_LEN>;
var<workgroup> sxs: array<vec4<f32>, S_XS_LEN>;
var<workgroup> sws: array<vec4<u32>, S_WS_LEN>;

// In-group index of slot j of row r.
fn slot_index(r: u32, j: u32) -> u32 {
    let word = w_indices[r * p.wpr + j / PER_WORD];
    return (word >> ((j % PER_WORD) * BITS)) & IDX_MASK;
}

@compute @workgroup_size(WG)
fn spmm_nm_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let flat = wid.y * nwg.x + wid.x;
    if (flat >= p.tiles) {
        return;
    }
    let row0 = (flat % p.row_tiles) * TM;
    let c4_0 = (flat / p.row_tiles) * CT;
    let ct = lid % CT;
    let rt = lid / CT;

    var acc: array<vec4<f32>, MAX_RM>;
    for (var i = 0u; i < MAX_RM; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var chunk = 0u; chunk < p.chunks; chunk++) {
        // Stage X rows k0 .. k0 + KT of the tile's columns (coalesced vec4s).
        let k0 = chunk * KT;
        for (var e = lid; e < XS_LEN; e += WG) {
            let k = k0 + e / CT;
            let c4 = c4_0 + e % CT;
            var v = vec4<f32>(0.0);
            if (k < p.k && c4 < p.n4) {
                v = x[k * p.n4 + c4];
            }
            xs[e] = v;
        }
        // Stage the chunk's slots of every tile row: values and xs offsets.
        let j0 = chunk * SC;
        for (var e = lid; e < WS_LEN; e += WG) {
            let r = row0 + e / SC4;
            let q = e % SC4;
            var vals = vec4<f32>(0.0);
            var offs = vec4<u32>(0u);
            if (r < p.m_rows) {
                for (var t = 0u; t < 4u; t++) {
                    let sl = q * 4u + t;
                    let j = j0 + sl;
                    if (sl < SC && j < p.vpr) {
                        vals[t] = w_values[r * p.vpr + j];
                        offs[t] = ((sl / N_KEEP) * M_GROUP + slot_index(r, j)) * CT;
                    }
                }
            }
            wv[e] = vals;
            wo[e] = offs;
        }
        workgroupBarrier();

        for (var q = 0u; q < SC4; q++) {
            for (var i = 0u; i < RM; i++) {
                let e = (rt + i * RT) * SC4 + q;
                let v = wv[e];
                let o = wo[e] + vec4<u32>(ct);
                var a = acc[i];
                a = fma(vec4<f32>(v.x), xs[o.x], a);
                a = fma(vec4<f32>(v.y), xs[o.y], a);
                a = fma(vec4<f32>(v.z), xs[o.z], a);
                a = fma(vec4<f32>(v.w), xs[o.w], a);
                acc[i] = a;
            }
        }
        workgroupBarrier();
    }

    let c4 = c4_0 + ct;
    if (c4 < p.n4) {
        for (var i = 0u; i < RM; i++) {
            let r = row0 + rt + i * RT;
            if (r < p.m_rows) {
                y[r * p.n4 + c4] = epilogue(acc[i], r);
            }
        }
    }
}

// Staged element e of chunk `chunk` for spmm_nm_switch: an X vec4.
fn switch_x(chunk: u32, c4_0: u32, e: u32) -> vec4<f32> {
    let k = chunk * S_GPC * M_GROUP + e / S_XW;
    let c4 = c4_0 + e % S_XW;
    var v = vec4<f32>(0.0);
    if (e < S_XS_LEN && k < p.k && c4 < p.n4) {
        v = x[k * p.n4 + c4];
    }
    return v;
}

// Staged entry e of chunk `chunk` for spmm_nm_switch: (row, group) of the
// tile as (pattern code, value bits of its n <= 2 slots, 0). Code: i0 for
// n = 1, i0 * 8 + i1 for n = 2; rows past M get code 0 and values 0.
fn switch_w(chunk: u32, row0: u32, e: u32) -> vec4<u32> {
    let r = row0 + e / S_GPC;
    let g = chunk * S_GPC + e % S_GPC;
    var w = vec4<u32>(0u);
    if (e < S_WS_LEN && r < p.m_rows && g * N_KEEP < p.vpr) {
        let j = g * N_KEEP;
        w.y = bitcast<u32>(w_values[r * p.vpr + j]);
        w.x = slot_index(r, j);
        if (N_KEEP == 2u) {
            w.z = bitcast<u32>(w_values[r * p.vpr + j + 1u]);
            w.x = w.x * 8u + slot_index(r, j + 1u);
        }
    }
    return w;
}

@compute @workgroup_size(S_WG)
fn spmm_nm_switch(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let flat = wid.y * nwg.x + wid.x;
    if (flat >= p.tiles) {
        return;
    }
    let row0 = (flat % p.row_tiles) * S_TM;
    let c4_0 = (flat / p.row_tiles) * S_XW;
    let ct = lid % S_CT;
    let rt = lid / S_CT;

    // acc[i * S_TN4 + j]: row rt + i * S_RT, vec4 column ct + j * S_CT.
    var acc: array<vec4<f32>, 16>;
    for (var a = 0u; a < S_RM * S_TN4; a++) {
        acc[a] = vec4<f32>(0.0);
    }
    // xr[t * S_TN4 + j]: X row t of the current group, the thread's columns.
    var xr: array<vec4<f32>, 32>;
    var xn: array<vec4<f32>, 8>;
    var wn: array<vec4<u32>, 4>;
    for (var l = 0u; l < S_XL; l++) {
        xn[l] = switch_x(0u, c4_0, lid + l * S_WG);
    }
    for (var l = 0u; l < S_WL; l++) {
        wn[l] = switch_w(0u, row0, lid + l * S_WG);
    }

    let chunks = (p.vpr / N_KEEP + S_GPC - 1u) / S_GPC;
    for (var chunk = 0u; chunk < chunks; chunk++) {
        for (var l = 0u; l < S_XL; l++) {
            let e = lid + l * S_WG;
            if (e < S_XS_LEN) {
                sxs[e] = xn[l];
            }
        }
        for (var l = 0u; l < S_WL; l++) {
            let e = lid + l * S_WG;
            if (e < S_WS_LEN) {
                sws[e] = wn[l];
            }
        }
        workgroupBarrier();
        if (chunk + 1u < chunks) {
            for (var l = 0u; l < S_XL; l++) {
                xn[l] = switch_x(chunk + 1u, c4_0, lid + l * S_WG);
            }
            for (var l = 0u; l < S_WL; l++) {
                wn[l] = switch_w(chunk + 1u, row0, lid + l * S_WG);
            }
        }

        for (var gl = 0u; gl < S_GPC; gl++) {
            let xb = gl * M_GROUP * S_XW + ct;
            for (var t = 0u; t < M_GROUP; t++) {
                for (var j = 0u; j < S_TN4; j++) {
                    xr[t * S_TN4 + j] = sxs[xb + t * S_XW + j * S_CT];
                }
            }
            for (var i = 0u; i < S_RM; i++) {
                let w = sws[(rt + i * S_RT) * S_GPC + gl];
                let v0 = vec4<f32>(bitcast<f32>(w.y));
                let v1 = vec4<f32>(bitcast<f32>(w.z));
                let ab = i * S_TN4;
                if (N_KEEP == 1u) {
                    if (M_GROUP <= 4u) {
                        switch (w.x) {
                            case 0u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[0u * S_TN4 + j], acc[t]); } }
                            case 1u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[1u * S_TN4 + j], acc[t]); } }
                            case 2u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[2u * S_TN4 + j], acc[t]); } }
                            case 3u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[3u * S_TN4 + j], acc[t]); } }
                            default: {}
                        }
                    } else {
                        switch (w.x) {
                            case 0u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[0u * S_TN4 + j], acc[t]); } }
                            case 1u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[1u * S_TN4 + j], acc[t]); } }
                            case 2u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[2u * S_TN4 + j], acc[t]); } }
                            case 3u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[3u * S_TN4 + j], acc[t]); } }
                            case 4u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[4u * S_TN4 + j], acc[t]); } }
                            case 5u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[5u * S_TN4 + j], acc[t]); } }
                            case 6u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[6u * S_TN4 + j], acc[t]); } }
                            case 7u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v0, xr[7u * S_TN4 + j], acc[t]); } }
                            default: {}
                        }
                    }
                } else {
                    if (M_GROUP <= 4u) {
                        switch (w.x) {
                            case 1u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[1u * S_TN4 + j], fma(v0, xr[0u * S_TN4 + j], acc[t])); } }
                            case 2u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[2u * S_TN4 + j], fma(v0, xr[0u * S_TN4 + j], acc[t])); } }
                            case 3u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[3u * S_TN4 + j], fma(v0, xr[0u * S_TN4 + j], acc[t])); } }
                            case 10u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[2u * S_TN4 + j], fma(v0, xr[1u * S_TN4 + j], acc[t])); } }
                            case 11u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[3u * S_TN4 + j], fma(v0, xr[1u * S_TN4 + j], acc[t])); } }
                            case 19u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[3u * S_TN4 + j], fma(v0, xr[2u * S_TN4 + j], acc[t])); } }
                            default: {}
                        }
                    } else {
                        switch (w.x) {
                            case 1u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[1u * S_TN4 + j], fma(v0, xr[0u * S_TN4 + j], acc[t])); } }
                            case 2u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[2u * S_TN4 + j], fma(v0, xr[0u * S_TN4 + j], acc[t])); } }
                            case 3u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[3u * S_TN4 + j], fma(v0, xr[0u * S_TN4 + j], acc[t])); } }
                            case 4u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[4u * S_TN4 + j], fma(v0, xr[0u * S_TN4 + j], acc[t])); } }
                            case 5u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[5u * S_TN4 + j], fma(v0, xr[0u * S_TN4 + j], acc[t])); } }
                            case 6u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[6u * S_TN4 + j], fma(v0, xr[0u * S_TN4 + j], acc[t])); } }
                            case 7u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[7u * S_TN4 + j], fma(v0, xr[0u * S_TN4 + j], acc[t])); } }
                            case 10u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[2u * S_TN4 + j], fma(v0, xr[1u * S_TN4 + j], acc[t])); } }
                            case 11u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[3u * S_TN4 + j], fma(v0, xr[1u * S_TN4 + j], acc[t])); } }
                            case 12u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[4u * S_TN4 + j], fma(v0, xr[1u * S_TN4 + j], acc[t])); } }
                            case 13u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[5u * S_TN4 + j], fma(v0, xr[1u * S_TN4 + j], acc[t])); } }
                            case 14u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[6u * S_TN4 + j], fma(v0, xr[1u * S_TN4 + j], acc[t])); } }
                            case 15u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[7u * S_TN4 + j], fma(v0, xr[1u * S_TN4 + j], acc[t])); } }
                            case 19u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[3u * S_TN4 + j], fma(v0, xr[2u * S_TN4 + j], acc[t])); } }
                            case 20u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[4u * S_TN4 + j], fma(v0, xr[2u * S_TN4 + j], acc[t])); } }
                            case 21u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[5u * S_TN4 + j], fma(v0, xr[2u * S_TN4 + j], acc[t])); } }
                            case 22u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[6u * S_TN4 + j], fma(v0, xr[2u * S_TN4 + j], acc[t])); } }
                            case 23u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[7u * S_TN4 + j], fma(v0, xr[2u * S_TN4 + j], acc[t])); } }
                            case 28u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[4u * S_TN4 + j], fma(v0, xr[3u * S_TN4 + j], acc[t])); } }
                            case 29u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[5u * S_TN4 + j], fma(v0, xr[3u * S_TN4 + j], acc[t])); } }
                            case 30u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[6u * S_TN4 + j], fma(v0, xr[3u * S_TN4 + j], acc[t])); } }
                            case 31u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[7u * S_TN4 + j], fma(v0, xr[3u * S_TN4 + j], acc[t])); } }
                            case 37u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[5u * S_TN4 + j], fma(v0, xr[4u * S_TN4 + j], acc[t])); } }
                            case 38u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[6u * S_TN4 + j], fma(v0, xr[4u * S_TN4 + j], acc[t])); } }
                            case 39u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[7u * S_TN4 + j], fma(v0, xr[4u * S_TN4 + j], acc[t])); } }
                            case 46u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[6u * S_TN4 + j], fma(v0, xr[5u * S_TN4 + j], acc[t])); } }
                            case 47u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[7u * S_TN4 + j], fma(v0, xr[5u * S_TN4 + j], acc[t])); } }
                            case 55u: { for (var j = 0u; j < S_TN4; j++) { let t = ab + j; acc[t] = fma(v1, xr[7u * S_TN4 + j], fma(v0, xr[6u * S_TN4 + j], acc[t])); } }
                            default: {}
                        }
                    }
                }
            }
        }
        workgroupBarrier();
    }

    for (var j = 0u; j < S_TN4; j++) {
        let c4 = c4_0 + ct + j * S_CT;
        if (c4 < p.n4) {
            for (var i = 0u; i < S_RM; i++) {
                let r = row0 + rt + i * S_RT;
                if (r < p.m_rows) {
                    y[r * p.n4 + c4] = epilogue(acc[i * S_TN4 + j], r);
                }
            }
        }
    }
}

@compute @workgroup_size(R_WG)
fn spmm_nm_rows(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let flat = wid.y * nwg.x + wid.x;
    if (flat >= p.tiles) {
        return;
    }
    let lane = rows_lane(flat, lid);
    let ks = lane.ks;
    let r = lane.row;
    let c4 = lane.c4;
    let live = lane.live;

    var acc = vec4<f32>(0.0);
    if (live) {
        let base = r * p.vpr;
        for (var j = ks; j < p.vpr; j += R_KS) {
            let k = (j / N_KEEP) * M_GROUP + slot_index(r, j);
            // Slots past K hold 0 but would read past X: skip them.
            if (k < p.k) {
                acc = fma(vec4<f32>(w_values[base + j]), x[k * p.n4 + c4], acc);
            }
        }
    }
    acc = rows_sum(acc, lid, ks);
    if (live && ks == 0u) {
        y[r * p.n4 + c4] = epilogue(acc, r);
    }
}
