// Block-sparse SpMM  Y[M, N] = act(W_bsr[M, K] * X[K, N] + bias[M]) on
// cooperative matrices (tensor cores) for square blocks of 16 or 32 (any
// multiple of 16 whose tiles fit): f16 storage, 16x16x16 f16 tiles, f32
// accumulation. Native only (EXPERIMENTAL_COOPERATIVE_MATRIX + shader-f16 +
// subgroups); spmm_bsr_f16.wgsl is the fallback everywhere else.
//
// The schedule of gemm_coop.wgsl with the K loop running over the non-zero
// blocks of one block row: a workgroup owns block row row_order[wid.y] (block
// rows longest first, so heavy rows start early and short ones fill the tail)
// and BN columns of Y; BM = BK = the block size (WM * TM * 16). Stage s stages
// block row_ptr[row] + s (b x b f16, contiguous, row-major) and the b x BN
// slice of X at rows col_idx * b, both with vec4<f16> loads, double buffered
// exactly as the dense kernel. X rows past K read zeros (a block on the edge
// of K is zero-padded, and so are block rows past M, which are not written).
//
// Storage: values are the f16 blocks of GpuBsrF16 (b * b halves each, so
// every block starts on a whole vec4), bound as vec4<f16>; row_ptr, col_idx
// and row_order are the u32 arrays of the BSR; X and Y are GpuMatrixF16 (rows
// padded to 8 halves) bound as vec4<f16>. Workgroup memory and coopLoadT
// strides are in vec4<f16>s, as in gemm_coop.wgsl. Accumulators are named
// variables cut to TM x TN by override-constant branches, as there.

enable f16;
enable wgpu_cooperative_matrix;

override SG: u32 = 32u;       // subgroup size (the adapter's fixed size)
override WM: u32 = 2u;        // subgroups along M
override WN: u32 = 2u;        // subgroups along N
override TM: u32 = 4u;        // accumulator tiles per subgroup along M
override TN: u32 = 4u;        // along N; TM * TN <= 16
override BK: u32 = 32u;       // the block size = BM
override NT: u32 = 128u;      // WM * WN * SG
override SA: u32 = 10u;       // vec4<f16>s per staged W row: (BK + 8) / 4
override SB: u32 = 34u;       // vec4<f16>s per staged X row: (BN + 8) / 4
override A_LEN: u32 = 2560u;  // BUFS * BM * SA
override B_LEN: u32 = 2176u;  // BUFS * BK * SB
override C_LEN: u32 = 1024u;  // WM * WN * 256
override LA: u32 = 8u;        // vec4 loads of a block per thread per stage: ceil(BM * BK / 4 / NT), <= 16
override DEPTH: u32 = 1u;     // stages between a global load and its use: 1 or 2
override BUFS: u32 = 2u;      // workgroup buffers: 2, or 1 (a barrier more per stage, twice the stage in the same memory)
override LB: u32 = 8u;        // of X: BK * BN / 4 / NT, <= 16
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;       // 0 none, 1 ReLU, 2 ReLU6

struct Params {
    m: u32,
    k: u32,
    x_stride4: u32,  // vec4<f16>s per X row = per Y row
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> values: array<vec4<f16>>;
@group(0) @binding(4) var<storage, read> row_order: array<u32>;
@group(0) @binding(5) var<storage, read> x: array<vec4<f16>>;
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f16>>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;

var<workgroup> a_s: array<vec4<f16>, A_LEN>;
var<workgroup> b_s: array<vec4<f16>, B_LEN>;
var<workgroup> c_s: array<f32, C_LEN>;

fn act(v: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return max(v, vec4<f32>(0.0));
    } else if (ACT == 2u) {
        return clamp(v, vec4<f32>(0.0), vec4<f32>(6.0));
    }
    return v;
}

// Global loads of stage `blk` (a block and its X slice) into registers; zeros
// for a stage that is not `valid` (the padding stage of an odd block count).
fn load_stage(blk: u32, valid: bool, t: u32, c40: u32, bn4: u32, bsize4: u32,
              ra: ptr<function, array<vec4<f16>, 16>>, rb: ptr<function, array<vec4<f16>, 16>>) {
    let vbase = blk * bsize4;
    for (var l = 0u; l < LA; l++) {
        let idx = t + l * NT;
        var v = vec4<f16>(0.0);
        if (valid && idx < bsize4) {
            v = values[vbase + idx];
        }
        (*ra)[l] = v;
    }
    var k0 = 0u;
    if (valid) {
        k0 = col_idx[blk] * BK;
    }
    for (var l = 0u; l < LB; l++) {
        let idx = t + l * NT;
        let kr = k0 + idx / bn4;
        let c = c40 + idx % bn4;
        var v = vec4<f16>(0.0);
        if (valid && kr < p.k && c < p.x_stride4) {
            v = x[kr * p.x_stride4 + c];
        }
        (*rb)[l] = v;
    }
}

// Registers -> workgroup buffer `buf` (the W tile / block rows padded to SA,
// the X rows to SB).
fn store_stage(buf: u32, t: u32, bm: u32, bk4: u32, bn4: u32, bsize4: u32,
               ra: ptr<function, array<vec4<f16>, 16>>, rb: ptr<function, array<vec4<f16>, 16>>) {
    for (var l = 0u; l < LA; l++) {
        let idx = t + l * NT;
        if (idx < bsize4) {
            a_s[buf * bm * SA + (idx / bk4) * SA + idx % bk4] = (*ra)[l];
        }
    }
    for (var l = 0u; l < LB; l++) {
        let idx = t + l * NT;
        b_s[buf * BK * SB + (idx / bn4) * SB + idx % bn4] = (*rb)[l];
    }
}

// Adds the bias, applies the activation and writes one 16x16 accumulator tile
// (rows from `row0`, vec4 columns from `c40`) through the subgroup's scratch
// at `cb`; lanes write 4 columns each, guarded by M and the row stride.
fn store_tile(acc: coop_mat16x16<f32, C>, row0: u32, c40: u32, cb: u32, lane: u32) {
    let s16 = 16u;
    let at = cb;
    coopStoreT(acc, &c_s[at], s16);
    workgroupBarrier();
    for (var e = lane; e < 64u; e += SG) {
        let row = row0 + e / 4u;
        let c4 = c40 + e % 4u;
        if (row < p.m && c4 < p.x_stride4) {
            var bv = 0.0;
            if (HAS_BIAS) {
                bv = bias[row];
            }
            let o = cb + e * 4u;
            let v = vec4<f32>(c_s[o], c_s[o + 1u], c_s[o + 2u], c_s[o + 3u]) + vec4<f32>(bv);
            y[row * p.x_stride4 + c4] = vec4<f16>(act(v));
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(NT)
fn spmm_bsr_coop(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) t: u32,
             @builtin(subgroup_id) sg: u32,
             @builtin(subgroup_invocation_id) lane: u32) {
    let bm = WM * TM * 16u;
    let bn = WN * TN * 16u;
    let brow = row_order[wid.y];
    let m0 = brow * bm;
    let first = row_ptr[brow];
    let bsize4 = bm * BK / 4u;
    let n0 = wid.x * bn;
    let wm = sg / WN;
    let wn = sg % WN;
    let bk4 = BK / 4u;
    let bn4 = bn / 4u;

    // Zero accumulators, loaded from a zeroed scratch.
    for (var i = t; i < C_LEN; i += NT) {
        c_s[i] = 0.0;
    }
    workgroupBarrier();
    let cb = sg * 256u;
    let s16 = 16u;
    // Accumulators as named variables (not an array): up to 4x4, those past
    // TM x TN are dead code once the overrides are folded.
    let zero = coopLoadT<coop_mat16x16<f32, C>>(&c_s[cb], s16);
    var c00 = zero; var c01 = zero; var c02 = zero; var c03 = zero;
    var c10 = zero; var c11 = zero; var c12 = zero; var c13 = zero;
    var c20 = zero; var c21 = zero; var c22 = zero; var c23 = zero;
    var c30 = zero; var c31 = zero; var c32 = zero; var c33 = zero;

    let nk = row_ptr[brow + 1u] - first;
    // Two register sets and BUFS workgroup buffers. Stage s is staged from set
    // s % 2 into buffer s % BUFS (with one buffer, a barrier first lets every
    // subgroup finish the previous stage); DEPTH 1 issues the global loads of stage s + 1
    // during stage s, DEPTH 2 those of stage s + 2 (twice the latency hidden).
    var ra0: array<vec4<f16>, 16>;
    var rb0: array<vec4<f16>, 16>;
    var ra1: array<vec4<f16>, 16>;
    var rb1: array<vec4<f16>, 16>;
    // Stages run in pairs (set 0 / buffer 0, then set 1 / buffer 1) with no
    // branch around the second: naga calls a branch on the loop counter
    // non-uniform. An odd stage count gets one all-zero padding stage.
    let nk2 = nk + (nk & 1u);
    load_stage(first + 0u, nk > 0u, t, n0 / 4u, bn4, bsize4, &ra0, &rb0);
    if (DEPTH > 1u) {
        load_stage(first + 1u, nk > 1u, t, n0 / 4u, bn4, bsize4, &ra1, &rb1);
    }

    let sa = SA;
    let sb = SB;
    for (var s = 0u; s < nk2; s += 2u) {
        if (BUFS == 1u) {
            workgroupBarrier();
        }
        store_stage(0u, t, bm, bk4, bn4, bsize4, &ra0, &rb0);
        workgroupBarrier();
        if (DEPTH > 1u) {
            load_stage(first + s + 2u, s + 2u < nk, t, n0 / 4u, bn4, bsize4, &ra0, &rb0);
        } else {
            load_stage(first + s + 1u, s + 1u < nk, t, n0 / 4u, bn4, bsize4, &ra1, &rb1);
        }
        // Multiply the tiles staged in buffer 0.
        {
            let abase = 0u * bm * SA + wm * TM * 16u * SA;
            let bbase = 0u * BK * SB + wn * TN * 4u;
            for (var kk = 0u; kk < BK / 16u; kk++) {
                let ao = abase + kk * 4u;
                let bo = bbase + kk * 16u * SB;
                let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[ao], sa);
                let b0 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[bo], sb);
                var a1 = a0; var a2 = a0; var a3 = a0;
                var b1 = b0; var b2 = b0; var b3 = b0;
                if (TM > 1u) {
                    let o = ao + 16u * SA;
                    a1 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[o], sa);
                }
                if (TM > 2u) {
                    let o = ao + 32u * SA;
                    a2 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[o], sa);
                }
                if (TM > 3u) {
                    let o = ao + 48u * SA;
                    a3 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[o], sa);
                }
                if (TN > 1u) {
                    let o = bo + 4u;
                    b1 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[o], sb);
                }
                if (TN > 2u) {
                    let o = bo + 8u;
                    b2 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[o], sb);
                }
                if (TN > 3u) {
                    let o = bo + 12u;
                    b3 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[o], sb);
                }
                c00 = coopMultiplyAdd(a0, b0, c00);
                if (TN > 1u) {
                    c01 = coopMultiplyAdd(a0, b1, c01);
                }
                if (TN > 2u) {
                    c02 = coopMultiplyAdd(a0, b2, c02);
                }
                if (TN > 3u) {
                    c03 = coopMultiplyAdd(a0, b3, c03);
                }
                if (TM > 1u) {
                    c10 = coopMultiplyAdd(a1, b0, c10);
                }
                if ((TM > 1u) & (TN > 1u)) {
                    c11 = coopMultiplyAdd(a1, b1, c11);
                }
                if ((TM > 1u) & (TN > 2u)) {
                    c12 = coopMultiplyAdd(a1, b2, c12);
                }
                if ((TM > 1u) & (TN > 3u)) {
                    c13 = coopMultiplyAdd(a1, b3, c13);
                }
                if (TM > 2u) {
                    c20 = coopMultiplyAdd(a2, b0, c20);
                }
                if ((TM > 2u) & (TN > 1u)) {
                    c21 = coopMultiplyAdd(a2, b1, c21);
                }
                if ((TM > 2u) & (TN > 2u)) {
                    c22 = coopMultiplyAdd(a2, b2, c22);
                }
                if ((TM > 2u) & (TN > 3u)) {
                    c23 = coopMultiplyAdd(a2, b3, c23);
                }
                if (TM > 3u) {
                    c30 = coopMultiplyAdd(a3, b0, c30);
                }
                if ((TM > 3u) & (TN > 1u)) {
                    c31 = coopMultiplyAdd(a3, b1, c31);
                }
                if ((TM > 3u) & (TN > 2u)) {
                    c32 = coopMultiplyAdd(a3, b2, c32);
                }
                if ((TM > 3u) & (TN > 3u)) {
                    c33 = coopMultiplyAdd(a3, b3, c33);
                }
            }
        }

        if (BUFS == 1u) {
            workgroupBarrier();
        }
        store_stage(BUFS - 1u, t, bm, bk4, bn4, bsize4, &ra1, &rb1);
        workgroupBarrier();
        if (DEPTH > 1u) {
            load_stage(first + s + 3u, s + 3u < nk, t, n0 / 4u, bn4, bsize4, &ra1, &rb1);
        } else {
            load_stage(first + s + 2u, s + 2u < nk, t, n0 / 4u, bn4, bsize4, &ra0, &rb0);
        }
        // Multiply the tiles staged in buffer BUFS - 1.
        {
            let abase = (BUFS - 1u) * bm * SA + wm * TM * 16u * SA;
            let bbase = (BUFS - 1u) * BK * SB + wn * TN * 4u;
            for (var kk = 0u; kk < BK / 16u; kk++) {
                let ao = abase + kk * 4u;
                let bo = bbase + kk * 16u * SB;
                let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[ao], sa);
                let b0 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[bo], sb);
                var a1 = a0; var a2 = a0; var a3 = a0;
                var b1 = b0; var b2 = b0; var b3 = b0;
                if (TM > 1u) {
                    let o = ao + 16u * SA;
                    a1 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[o], sa);
                }
                if (TM > 2u) {
                    let o = ao + 32u * SA;
                    a2 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[o], sa);
                }
                if (TM > 3u) {
                    let o = ao + 48u * SA;
                    a3 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[o], sa);
                }
                if (TN > 1u) {
                    let o = bo + 4u;
                    b1 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[o], sb);
                }
                if (TN > 2u) {
                    let o = bo + 8u;
                    b2 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[o], sb);
                }
                if (TN > 3u) {
                    let o = bo + 12u;
                    b3 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[o], sb);
                }
                c00 = coopMultiplyAdd(a0, b0, c00);
                if (TN > 1u) {
                    c01 = coopMultiplyAdd(a0, b1, c01);
                }
                if (TN > 2u) {
                    c02 = coopMultiplyAdd(a0, b2, c02);
                }
                if (TN > 3u) {
                    c03 = coopMultiplyAdd(a0, b3, c03);
                }
                if (TM > 1u) {
                    c10 = coopMultiplyAdd(a1, b0, c10);
                }
                if ((TM > 1u) & (TN > 1u)) {
                    c11 = coopMultiplyAdd(a1, b1, c11);
                }
                if ((TM > 1u) & (TN > 2u)) {
                    c12 = coopMultiplyAdd(a1, b2, c12);
                }
                if ((TM > 1u) & (TN > 3u)) {
                    c13 = coopMultiplyAdd(a1, b3, c13);
                }
                if (TM > 2u) {
                    c20 = coopMultiplyAdd(a2, b0, c20);
                }
                if ((TM > 2u) & (TN > 1u)) {
                    c21 = coopMultiplyAdd(a2, b1, c21);
                }
                if ((TM > 2u) & (TN > 2u)) {
                    c22 = coopMultiplyAdd(a2, b2, c22);
                }
                if ((TM > 2u) & (TN > 3u)) {
                    c23 = coopMultiplyAdd(a2, b3, c23);
                }
                if (TM > 3u) {
                    c30 = coopMultiplyAdd(a3, b0, c30);
                }
                if ((TM > 3u) & (TN > 1u)) {
                    c31 = coopMultiplyAdd(a3, b1, c31);
                }
                if ((TM > 3u) & (TN > 2u)) {
                    c32 = coopMultiplyAdd(a3, b2, c32);
                }
                if ((TM > 3u) & (TN > 3u)) {
                    c33 = coopMultiplyAdd(a3, b3, c33);
                }
            }
        }
    }

    // Epilogue, one accumulator tile at a time through the subgroup's scratch.
    store_tile(c00, m0 + (wm * TM + 0u) * 16u, (n0 + (wn * TN + 0u) * 16u) / 4u, cb, lane);
    if (TN > 1u) {
        store_tile(c01, m0 + (wm * TM + 0u) * 16u, (n0 + (wn * TN + 1u) * 16u) / 4u, cb, lane);
    }
    if (TN > 2u) {
        store_tile(c02, m0 + (wm * TM + 0u) * 16u, (n0 + (wn * TN + 2u) * 16u) / 4u, cb, lane);
    }
    if (TN > 3u) {
        store_tile(c03, m0 + (wm * TM + 0u) * 16u, (n0 + (wn * TN + 3u) * 16u) / 4u, cb, lane);
    }
    if (TM > 1u) {
        store_tile(c10, m0 + (wm * TM + 1u) * 16u, (n0 + (wn * TN + 0u) * 16u) / 4u, cb, lane);
    }
    if ((TM > 1u) & (TN > 1u)) {
        store_tile(c11, m0 + (wm * TM + 1u) * 16u, (n0 + (wn * TN + 1u) * 16u) / 4u, cb, lane);
    }
    if ((TM > 1u) & (TN > 2u)) {
        store_tile(c12, m0 + (wm * TM + 1u) * 16u, (n0 + (wn * TN + 2u) * 16u) / 4u, cb, lane);
    }
    if ((TM > 1u) & (TN > 3u)) {
        store_tile(c13, m0 + (wm * TM + 1u) * 16u, (n0 + (wn * TN + 3u) * 16u) / 4u, cb, lane);
    }
    if (TM > 2u) {
        store_tile(c20, m0 + (wm * TM + 2u) * 16u, (n0 + (wn * TN + 0u) * 16u) / 4u, cb, lane);
    }
    if ((TM > 2u) & (TN > 1u)) {
        store_tile(c21, m0 + (wm * TM + 2u) * 16u, (n0 + (wn * TN + 1u) * 16u) / 4u, cb, lane);
    }
    if ((TM > 2u) & (TN > 2u)) {
        store_tile(c22, m0 + (wm * TM + 2u) * 16u, (n0 + (wn * TN + 2u) * 16u) / 4u, cb, lane);
    }
    if ((TM > 2u) & (TN > 3u)) {
        store_tile(c23, m0 + (wm * TM + 2u) * 16u, (n0 + (wn * TN + 3u) * 16u) / 4u, cb, lane);
    }
    if (TM > 3u) {
        store_tile(c30, m0 + (wm * TM + 3u) * 16u, (n0 + (wn * TN + 0u) * 16u) / 4u, cb, lane);
    }
    if ((TM > 3u) & (TN > 1u)) {
        store_tile(c31, m0 + (wm * TM + 3u) * 16u, (n0 + (wn * TN + 1u) * 16u) / 4u, cb, lane);
    }
    if ((TM > 3u) & (TN > 2u)) {
        store_tile(c32, m0 + (wm * TM + 3u) * 16u, (n0 + (wn * TN + 2u) * 16u) / 4u, cb, lane);
    }
    if ((TM > 3u) & (TN > 3u)) {
        store_tile(c33, m0 + (wm * TM + 3u) * 16u, (n0 + (wn * TN + 3u) * 16u) / 4u, cb, lane);
    }
}
