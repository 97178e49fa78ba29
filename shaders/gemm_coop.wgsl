// Dense GEMM  Y[M, N] = act(W[M, K] * X[K, N] + bias[M]) on cooperative
// matrices (tensor cores): f16 storage, 16x16x16 f16 tiles, f32 accumulation.
// Native only (wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX, plus shader-f16 and
// subgroups); browsers never get this kernel, gemm_f16.wgsl is the fallback.
//
// Storage: W, X and Y are f16, row-major, rows padded to a multiple of 8 halves
// (GpuMatrixF16), bound as vec4<f16>, so every global load and store moves 8
// bytes (adjacent lanes take adjacent vec4s). W's padding columns are zero. bias
// is f32 (M floats). Workgroup memory holds vec4<f16> too; coopLoadT then takes
// its stride in vec4s (SPIR-V counts the stride in elements of the pointee).
//
// Schedule: a workgroup of WM x WN subgroups owns a BM x BN tile of Y
// (BM = WM * TM * 16, BN = WN * TN * 16); each subgroup owns TM x TN
// accumulator tiles (a TM*16 x TN*16 block of Y). The K loop stages a BM x BK
// slice of W and a BK x BN slice of X in workgroup memory (f16, rows padded by
// 8 halves against bank conflicts), double buffered: the global loads of stage
// s + 1 are issued into registers before the tiles of stage s are multiplied,
// and stored into the other buffer at the top of the next iteration, so one
// barrier per stage suffices. Loads past M, K or the row stride read zeros.
//
// Epilogue: each accumulator tile is stored (f32) to the subgroup's 16x16
// scratch in workgroup memory; lanes then add the bias, apply the activation,
// round to f16 once and write 4 columns (8 bytes) at a time, guarded by M and
// the row stride of Y.
//
// Cooperative operations run in uniform control flow only: every loop bound is
// an override or a uniform. naga 30's SPIR-V backend needs the pointer index
// and the stride of coopLoad/coopStore bound to a `let` first.

enable f16;
enable wgpu_cooperative_matrix;

override SG: u32 = 32u;       // subgroup size (the adapter's fixed size)
override WM: u32 = 2u;        // subgroups along M
override WN: u32 = 2u;        // subgroups along N
override TM: u32 = 4u;        // accumulator tiles per subgroup along M
override TN: u32 = 4u;        // along N; TM * TN <= 16
override BK: u32 = 32u;       // K per stage, multiple of 16
override NT: u32 = 128u;      // WM * WN * SG
override SA: u32 = 10u;       // vec4<f16>s per staged W row: (BK + 8) / 4
override SB: u32 = 34u;       // vec4<f16>s per staged X row: (BN + 8) / 4
override A_LEN: u32 = 2560u;  // 2 * BM * SA
override B_LEN: u32 = 2176u;  // 2 * BK * SB
override C_LEN: u32 = 1024u;  // WM * WN * 256
override LA: u32 = 8u;        // vec4 loads of W per thread per stage: BM * BK / 4 / NT, <= 16
override LB: u32 = 8u;        // of X: BK * BN / 4 / NT, <= 16
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;       // 0 none, 1 ReLU, 2 ReLU6

struct Params {
    m: u32,
    k: u32,
    w_stride4: u32,  // vec4<f16>s per W row
    x_stride4: u32,  // per X row = per Y row
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f16>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

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

@compute @workgroup_size(NT)
fn gemm_coop(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) t: u32,
             @builtin(subgroup_id) sg: u32,
             @builtin(subgroup_invocation_id) lane: u32) {
    let bm = WM * TM * 16u;
    let bn = WN * TN * 16u;
    let m0 = wid.y * bm;
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
    var acc: array<coop_mat16x16<f32, C>, 16>;
    for (var i = 0u; i < TM * TN; i++) {
        acc[i] = coopLoadT<coop_mat16x16<f32, C>>(&c_s[cb], s16);
    }

    var ra: array<vec4<f16>, 16>;
    var rb: array<vec4<f16>, 16>;
    let nk = (p.k + BK - 1u) / BK;

    // Stage 0 into registers.
    for (var l = 0u; l < LA; l++) {
        let idx = t + l * NT;
        let row = m0 + idx / bk4;
        let kv = idx % bk4;
        var v = vec4<f16>(0.0);
        if (row < p.m && kv < p.w_stride4) {
            v = w[row * p.w_stride4 + kv];
        }
        ra[l] = v;
    }
    for (var l = 0u; l < LB; l++) {
        let idx = t + l * NT;
        let kr = idx / bn4;
        let c = n0 / 4u + idx % bn4;
        var v = vec4<f16>(0.0);
        if (kr < p.k && c < p.x_stride4) {
            v = x[kr * p.x_stride4 + c];
        }
        rb[l] = v;
    }

    let sa = SA;
    let sb = SB;
    for (var s = 0u; s < nk; s++) {
        let buf = s & 1u;
        // Registers -> workgroup buffer `buf`.
        for (var l = 0u; l < LA; l++) {
            let idx = t + l * NT;
            a_s[buf * bm * SA + (idx / bk4) * SA + idx % bk4] = ra[l];
        }
        for (var l = 0u; l < LB; l++) {
            let idx = t + l * NT;
            b_s[buf * BK * SB + (idx / bn4) * SB + idx % bn4] = rb[l];
        }
        workgroupBarrier();

        // Issue the global loads of the next stage.
        if (s + 1u < nk) {
            let k0 = (s + 1u) * BK;
            for (var l = 0u; l < LA; l++) {
                let idx = t + l * NT;
                let row = m0 + idx / bk4;
                let kv = k0 / 4u + idx % bk4;
                var v = vec4<f16>(0.0);
                if (row < p.m && kv < p.w_stride4) {
                    v = w[row * p.w_stride4 + kv];
                }
                ra[l] = v;
            }
            for (var l = 0u; l < LB; l++) {
                let idx = t + l * NT;
                let kr = k0 + idx / bn4;
                let c = n0 / 4u + idx % bn4;
                var v = vec4<f16>(0.0);
                if (kr < p.k && c < p.x_stride4) {
                    v = x[kr * p.x_stride4 + c];
                }
                rb[l] = v;
            }
        }

        // Multiply the staged tiles.
        let abase = buf * bm * SA + wm * TM * 16u * SA;
        let bbase = buf * BK * SB + wn * TN * 4u;
        for (var kk = 0u; kk < BK / 16u; kk++) {
            var af: array<coop_mat16x16<f16, A>, 4>;
            var bf: array<coop_mat16x16<f16, B>, 4>;
            for (var i = 0u; i < TM; i++) {
                let o = abase + i * 16u * SA + kk * 4u;
                af[i] = coopLoadT<coop_mat16x16<f16, A>>(&a_s[o], sa);
            }
            for (var j = 0u; j < TN; j++) {
                let o = bbase + kk * 16u * SB + j * 4u;
                bf[j] = coopLoadT<coop_mat16x16<f16, B>>(&b_s[o], sb);
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] = coopMultiplyAdd(af[i], bf[j], acc[i * TN + j]);
                }
            }
        }
    }

    // Epilogue, one accumulator tile at a time through the subgroup's scratch.
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
            coopStoreT(acc[i * TN + j], &c_s[cb], s16);
            workgroupBarrier();
            for (var e = lane; e < 64u; e += SG) {
                let r = e / 4u;
                let q = e % 4u;
                let row = m0 + (wm * TM + i) * 16u + r;
                let c4 = (n0 + (wn * TN + j) * 16u) / 4u + q;
                if (row < p.m && c4 < p.x_stride4) {
                    var bv = 0.0;
                    if (HAS_BIAS) {
                        bv = bias[row];
                    }
                    let o = cb + r * 16u + q * 4u;
                    let v = vec4<f32>(c_s[o], c_s[o + 1u], c_s[o + 2u], c_s[o + 3u]) + vec4<f32>(bv);
                    y[row * p.x_stride4 + c4] = vec4<f16>(act(v));
                }
            }
            workgroupBarrier();
        }
    }
}
