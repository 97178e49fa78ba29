// The cooperative-matrix (tensor core) product shared by gemm_coop,
// spmm_bsr_coop and spmm_nm_coop: 16x16x16 f16 tiles, f32 accumulation, f16
// storage of X and Y. Native only (wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX,
// plus shader-f16 and subgroups). A snippet: a family file imports it
// (`// import coop_core`, gpu::wgsl) and provides what says how W is read:
//
//   struct Params { m, k, x_stride4, ... }, `p`, `x`, `y: array<vec4<f16>>`,
//   `bias: array<f32>` (X and Y are GpuMatrixF16 bound as vec4<f16>);
//   ARegs                 the registers of one stage of W (a type);
//   tile_rows(y_tile)     the Rows of workgroup row y_tile: first row of Y,
//                         its first stage (BSR: first block), stage count;
//   load_stage(rows, s, valid, t, n04, bn4, &ra, &rb)
//                         global loads of stage s into registers (zeros
//                         where not `valid`), X through load_x;
//   store_stage(buf, s, t, bn4, &ra, &rb)
//                         registers of stage s -> workgroup buffer `buf`
//                         (W as a dense f16 tile, rows padded to SA), X
//                         through store_x.
//
// Schedule: a workgroup of WM x WN subgroups owns a BM x BN tile of Y
// (BM = WM * TM * 16, BN = WN * TN * 16); each subgroup owns TM x TN
// accumulator tiles (a TM*16 x TN*16 block of Y). The K loop stages a BM x BK
// slice of W and a BK x BN slice of X in workgroup memory (f16, rows padded by
// 8 halves against bank conflicts), double buffered: the global loads of stage
// s + DEPTH are issued into registers before the tiles of stage s are
// multiplied (two register sets), and a stage's registers are stored into
// buffer s % 2 at the top of its iteration, so one barrier per stage
// suffices. Loads past M, K or the row stride read zeros. Workgroup memory
// holds vec4<f16>; coopLoadT then takes its stride in vec4s (SPIR-V counts
// the stride in elements of the pointee).
//
// Epilogue: each accumulator tile is stored (f32) to the subgroup's 16x16
// scratch in workgroup memory; lanes then add the bias, apply the activation,
// round to f16 once and write 4 columns (8 bytes) at a time, guarded by M and
// the row stride of Y.
//
// Accumulator and operand tiles are named variables, unrolled by hand up to
// 4x4 and cut to TM x TN by branches on override constants (`&`, not `&&`,
// which naga lowers to non-uniform control flow): measured on the H100 (driver
// 580.159.04), arrays of cooperative matrices indexed in loops ran at ~30
// TFLOP/s whatever the tiling, as if kept out of registers. For the same
// reason the multiply of a stage is written out twice (buffer 0, buffer
// BUFS - 1) rather than called with pointers to sixteen accumulators.
//
// Cooperative operations run in uniform control flow only: every loop bound is
// an override or a uniform, every branch around them an override constant.
// naga 30's SPIR-V backend needs the pointer index and the stride of
// coopLoad/coopStore bound to a `let` first.

enable f16;
enable wgpu_cooperative_matrix;

// import epilogue

override SG: u32 = 32u;       // subgroup size (the adapter's fixed size)
override WM: u32 = 2u;        // subgroups along M
override WN: u32 = 2u;        // subgroups along N
override TM: u32 = 4u;        // accumulator tiles per subgroup along M
override TN: u32 = 4u;        // along N; TM * TN <= 16
override BK: u32 = 32u;       // K per stage, multiple of 16 (BSR: the block size)
override NT: u32 = 128u;      // WM * WN * SG
override SA: u32 = 10u;       // vec4<f16>s per staged W row: (BK + 8) / 4
override SB: u32 = 34u;       // vec4<f16>s per staged X row: (BN + 8) / 4
override A_LEN: u32 = 2560u;  // BUFS * BM * SA
override B_LEN: u32 = 2176u;  // BUFS * BK * SB
override C_LEN: u32 = 1024u;  // WM * WN * 256
override LA: u32 = 8u;        // W loads per thread per stage (the family says which; <= 16)
override DEPTH: u32 = 1u;     // stages between a global load and its use: 1 or 2
override BUFS: u32 = 2u;      // workgroup buffers: 2, or 1 (a barrier more per stage, twice the stage in the same memory)
override LB: u32 = 8u;        // vec4 loads of X per thread per stage: BK * BN / 4 / NT, <= 16

var<workgroup> a_s: array<vec4<f16>, A_LEN>;
var<workgroup> b_s: array<vec4<f16>, B_LEN>;
var<workgroup> c_s: array<f32, C_LEN>;

// Workgroup row `y_tile`'s rows of Y and stages (see the header).
struct Rows {
    m0: u32,     // first row of Y
    first: u32,  // first stage (BSR: its first block; else 0)
    nk: u32,     // stages
}

// Global loads of the X rows k0.. of a stage (vec4 columns from n04) into
// registers; zeros past K and the row stride, and for a stage that is not
// `valid` (the padding stage of an odd stage count).
fn load_x(k0: u32, valid: bool, t: u32, n04: u32, bn4: u32, rb: ptr<function, array<vec4<f16>, 16>>) {
    for (var l = 0u; l < LB; l++) {
        let idx = t + l * NT;
        let kr = k0 + idx / bn4;
        let c = n04 + idx % bn4;
        var v = vec4<f16>(0.0);
        if (valid && kr < p.k && c < p.x_stride4) {
            v = x[kr * p.x_stride4 + c];
        }
        (*rb)[l] = v;
    }
}

// X registers -> workgroup buffer `buf` (rows padded to SB).
fn store_x(buf: u32, t: u32, bn4: u32, rb: ptr<function, array<vec4<f16>, 16>>) {
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
fn coop_product(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) t: u32,
                @builtin(subgroup_id) sg: u32,
                @builtin(subgroup_invocation_id) lane: u32) {
    let bm = WM * TM * 16u;
    let bn = WN * TN * 16u;
    let rows = tile_rows(wid.y);
    let m0 = rows.m0;
    let n0 = wid.x * bn;
    let wm = sg / WN;
    let wn = sg % WN;
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

    let nk = rows.nk;
    // Two register sets and BUFS workgroup buffers. Stage s is staged from set
    // s % 2 into buffer s % BUFS (with one buffer, a barrier first lets every
    // subgroup finish the previous stage); DEPTH 1 issues the global loads of stage s + 1
    // during stage s, DEPTH 2 those of stage s + 2 (twice the latency hidden).
    var ra0: ARegs;
    var rb0: array<vec4<f16>, 16>;
    var ra1: ARegs;
    var rb1: array<vec4<f16>, 16>;
    // Stages run in pairs (set 0 / buffer 0, then set 1 / buffer 1) with no
    // branch around the second: naga calls a branch on the loop counter
    // non-uniform. An odd stage count gets one all-zero padding stage.
    let nk2 = nk + (nk & 1u);
    load_stage(rows, 0u, nk > 0u, t, n0 / 4u, bn4, &ra0, &rb0);
    if (DEPTH > 1u) {
        load_stage(rows, 1u, nk > 1u, t, n0 / 4u, bn4, &ra1, &rb1);
    }

    let sa = SA;
    let sb = SB;
    for (var s = 0u; s < nk2; s += 2u) {
        if (BUFS == 1u) {
            workgroupBarrier();
        }
        store_stage(0u, s, t, bn4, &ra0, &rb0);
        workgroupBarrier();
        if (DEPTH > 1u) {
            load_stage(rows, s + 2u, s + 2u < nk, t, n0 / 4u, bn4, &ra0, &rb0);
        } else {
            load_stage(rows, s + 1u, s + 1u < nk, t, n0 / 4u, bn4, &ra1, &rb1);
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
        store_stage(BUFS - 1u, s + 1u, t, bn4, &ra1, &rb1);
        workgroupBarrier();
        if (DEPTH > 1u) {
            load_stage(rows, s + 3u, s + 3u < nk, t, n0 / 4u, bn4, &ra1, &rb1);
        } else {
            load_stage(rows, s + 2u, s + 2u < nk, t, n0 / 4u, bn4, &ra0, &rb0);
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
