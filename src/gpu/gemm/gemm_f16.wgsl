// Dense GEMM  Y[M, N] = act(W[M, K] * X[K, N] + bias[M]) with f16 storage and
// f32 accumulation (needs the shader-f16 feature). The f16 twin of gemm.wgsl:
// same tiling, same override constants, same thread layout; only the global
// arrays change.
//
// Storage: W, X and Y are f16, row-major, rows padded to a multiple of 8 halves
// (GpuMatrixF16 stride, so every row is whole vec4<f16>s and starts 16-byte
// aligned), bound as vec4<f16> arrays. W's padding columns are zero. bias is
// f32 (M floats, the buffer the f32 kernels take): it is added to the f32
// accumulator before the single rounding to f16.
//
// Precision: tiles are staged in workgroup memory as f32 (converted once, when
// a prefetched register tile is stored), so the inner loop is the f32 kernel's
// fma over f32 and every product and sum is f32; the prefetch registers hold
// f16 (half the registers of the f32 kernel). Y is rounded to f16 once, after
// bias and activation; values beyond the f16 range become +-inf.

enable f16;

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override TM: u32 = 4u;     // rows per thread, multiple of 4, <= 8
override TN: u32 = 4u;     // columns per thread, multiple of 4, <= 8
override WG_X: u32 = 16u;  // BN / TN
override WG_Y: u32 = 16u;  // BM / TM
override WS_LEN: u32 = 256u; // BK * BM / 4
override XS_LEN: u32 = 256u; // BK * BN / 4
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;    // 0 none, 1 ReLU, 2 ReLU6
// Split-K: workgroup z of SPLIT takes its share of the K tiles and, when
// SPLIT > 1, writes its f32 partial sums (no bias, no activation) to `part`
// [SPLIT][M][x_stride4]; gemm_f16_reduce then sums them in f32, applies the
// epilogue and rounds once. For products with few output tiles and a long K
// (EfficientNet-Lite0's 1x1 projections: 192x1152 by 49 pixels), where a
// handful of workgroups would walk all of K one stage at a time.
override SPLIT: u32 = 1u;

struct Params {
    m: u32,
    k: u32,
    w_stride4: u32,  // vec4<f16>s per W row
    x_stride4: u32,  // vec4<f16>s per X row = per Y row
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f16>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<vec4<f32>>;

var<workgroup> ws: array<vec4<f32>, WS_LEN>;
var<workgroup> xs: array<vec4<f32>, XS_LEN>;

const MAX_LOADS: u32 = 8u; // vec4 loads per thread per tile, for W and for X

fn act(v: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return max(v, vec4<f32>(0.0));
    } else if (ACT == 2u) {
        return clamp(v, vec4<f32>(0.0), vec4<f32>(6.0));
    }
    return v;
}

@compute @workgroup_size(WG_X, WG_Y)
fn gemm_f16(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let t = ty * WG_X + tx;
    let nthreads = WG_X * WG_Y;
    let m0 = wid.y * BM;
    let n04 = wid.x * (BN / 4u);
    let bk4 = BK / 4u;
    let bn4 = BN / 4u;
    let bm4 = BM / 4u;
    let w_loads = (BM * bk4) / nthreads;
    let x_loads = (BK * bn4) / nthreads;

    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    var wreg: array<vec4<f16>, MAX_LOADS>;
    var xreg: array<vec4<f16>, MAX_LOADS>;

    // This workgroup's K tiles: [kt0, kt1) of split wid.z (possibly empty).
    let ktiles_all = (p.k + BK - 1u) / BK;
    let per_split = (ktiles_all + SPLIT - 1u) / SPLIT;
    let kt0 = min(wid.z * per_split, ktiles_all);
    let kt1 = min(kt0 + per_split, ktiles_all);
    // Prefetch tile kt0.
    let kfirst = kt0 * BK;
    for (var l = 0u; l < w_loads; l++) {
        let idx = t + l * nthreads;
        let row = m0 + idx / bk4;
        let kv = kfirst / 4u + idx % bk4;
        var v = vec4<f16>(0.0);
        if (row < p.m && kv < p.w_stride4) {
            v = w[row * p.w_stride4 + kv];
        }
        wreg[l] = v;
    }
    for (var l = 0u; l < x_loads; l++) {
        let idx = t + l * nthreads;
        let kr = kfirst + idx / bn4;
        let c = n04 + idx % bn4;
        var v = vec4<f16>(0.0);
        if (kr < p.k && c < p.x_stride4) {
            v = x[kr * p.x_stride4 + c];
        }
        xreg[l] = v;
    }

    for (var kt = kt0; kt < kt1; kt++) {
        // Registers (f16) -> workgroup memory (f32; W transposed into Ws[k][m/4]).
        for (var l = 0u; l < w_loads; l++) {
            let idx = t + l * nthreads;
            let row = idx / bk4;
            let kv = idx % bk4;
            let v = vec4<f32>(wreg[l]);
            let base = kv * 4u * bm4 + row / 4u;
            let comp = row % 4u;
            ws[base][comp] = v.x;
            ws[base + bm4][comp] = v.y;
            ws[base + 2u * bm4][comp] = v.z;
            ws[base + 3u * bm4][comp] = v.w;
        }
        for (var l = 0u; l < x_loads; l++) {
            xs[t + l * nthreads] = vec4<f32>(xreg[l]);
        }
        workgroupBarrier();

        // Prefetch the next tile while this one is multiplied.
        if (kt + 1u < kt1) {
            let k0 = (kt + 1u) * BK;
            for (var l = 0u; l < w_loads; l++) {
                let idx = t + l * nthreads;
                let row = m0 + idx / bk4;
                let kv = k0 / 4u + idx % bk4;
                var v = vec4<f16>(0.0);
                if (row < p.m && kv < p.w_stride4) {
                    v = w[row * p.w_stride4 + kv];
                }
                wreg[l] = v;
            }
            for (var l = 0u; l < x_loads; l++) {
                let idx = t + l * nthreads;
                let kr = k0 + idx / bn4;
                let c = n04 + idx % bn4;
                var v = vec4<f16>(0.0);
                if (kr < p.k && c < p.x_stride4) {
                    v = x[kr * p.x_stride4 + c];
                }
                xreg[l] = v;
            }
        }

        let tm4 = TM / 4u;
        let tn4 = TN / 4u;
        for (var k = 0u; k < BK; k++) {
            var a: array<vec4<f32>, 2>;
            var b: array<vec4<f32>, 2>;
            for (var i = 0u; i < tm4; i++) {
                a[i] = ws[k * bm4 + ty + i * WG_Y];
            }
            for (var j = 0u; j < tn4; j++) {
                b[j] = xs[k * bn4 + tx + j * WG_X];
            }
            for (var i = 0u; i < tm4; i++) {
                for (var j = 0u; j < tn4; j++) {
                    let base = (i * 4u) * 2u + j;
                    acc[base] = fma(vec4<f32>(a[i].x), b[j], acc[base]);
                    acc[base + 2u] = fma(vec4<f32>(a[i].y), b[j], acc[base + 2u]);
                    acc[base + 4u] = fma(vec4<f32>(a[i].z), b[j], acc[base + 4u]);
                    acc[base + 6u] = fma(vec4<f32>(a[i].w), b[j], acc[base + 6u]);
                }
            }
        }
        workgroupBarrier();
    }

    // Epilogue in f32, one rounding to f16: acc[(i*4 + e)*2 + j] is row
    // 4*(ty + i*WG_Y) + e, vec4 column tx + j*WG_X. With split-K, the f32
    // partial sums instead.
    for (var i = 0u; i < TM / 4u; i++) {
        for (var e = 0u; e < 4u; e++) {
            let row = m0 + 4u * (ty + i * WG_Y) + e;
            if (SPLIT > 1u && row < p.m) {
                for (var j = 0u; j < TN / 4u; j++) {
                    let c = n04 + tx + j * WG_X;
                    if (c < p.x_stride4) {
                        part[(wid.z * p.m + row) * p.x_stride4 + c] = acc[(i * 4u + e) * 2u + j];
                    }
                }
            } else if (row < p.m) {
                var bv = 0.0;
                if (HAS_BIAS) {
                    bv = bias[row];
                }
                for (var j = 0u; j < TN / 4u; j++) {
                    let c = n04 + tx + j * WG_X;
                    if (c < p.x_stride4) {
                        y[row * p.x_stride4 + c] = vec4<f16>(act(acc[(i * 4u + e) * 2u + j] + vec4<f32>(bv)));
                    }
                }
            }
        }
    }
}

// gemm_f16_reduce: Y = act(sum over the SPLIT partials + bias), one thread per
// vec4 of Y (M * x_stride4 of them; the 1-D grid may be folded into 2-D).
@compute @workgroup_size(256)
fn gemm_f16_reduce(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.m * p.x_stride4) {
        return;
    }
    let row = i / p.x_stride4;
    var s = vec4<f32>(0.0);
    for (var z = 0u; z < SPLIT; z++) {
        s += part[z * p.m * p.x_stride4 + i];
    }
    var bv = 0.0;
    if (HAS_BIAS) {
        bv = bias[row];
    }
    y[i] = vec4<f16>(act(s + vec4<f32>(bv)));
}

// ---------------------------------------------------------------------------
// gemm_skinny_f16: the f16 twin of gemm_skinny for narrow X (at most 16
// columns = 4 vec4<f16> per row). Each workgroup owns SK_ROWS rows of Y and all
// its columns, its SK_THREADS threads split K (thread t takes vec4s t,
// t + SK_THREADS, ... of a W row), each accumulates in f32, and the partial
// sums are reduced in f32 in workgroup memory, one column at a time.

override SK_ROWS: u32 = 4u;     // <= 4
override SK_THREADS: u32 = 64u; // power of two
override RED_LEN: u32 = 256u;   // SK_THREADS * SK_ROWS

var<workgroup> red: array<vec4<f32>, RED_LEN>;

@compute @workgroup_size(SK_THREADS)
fn gemm_skinny_f16(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) t: u32) {
    // The grid may be folded into 2-D; whole workgroups past M only guard.
    let row0 = (wid.y * nwg.x + wid.x) * SK_ROWS;
    let cols4 = p.x_stride4;
    var acc: array<vec4<f32>, 16>; // acc[r * 4 + c]
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var k4 = t; k4 < p.w_stride4; k4 += SK_THREADS) {
        var wv: array<vec4<f32>, 4>;
        for (var r = 0u; r < SK_ROWS; r++) {
            var v = vec4<f16>(0.0);
            if (row0 + r < p.m) {
                v = w[(row0 + r) * p.w_stride4 + k4];
            }
            wv[r] = vec4<f32>(v);
        }
        for (var e = 0u; e < 4u; e++) {
            let k = 4u * k4 + e;
            if (k < p.k) {
                for (var c = 0u; c < cols4; c++) {
                    let xv = vec4<f32>(x[k * cols4 + c]);
                    for (var r = 0u; r < SK_ROWS; r++) {
                        acc[r * 4u + c] = fma(vec4<f32>(wv[r][e]), xv, acc[r * 4u + c]);
                    }
                }
            }
        }
    }
    for (var c = 0u; c < cols4; c++) {
        for (var r = 0u; r < SK_ROWS; r++) {
            red[r * SK_THREADS + t] = acc[r * 4u + c];
        }
        workgroupBarrier();
        for (var s = SK_THREADS / 2u; s > 0u; s /= 2u) {
            if (t < s) {
                for (var r = 0u; r < SK_ROWS; r++) {
                    red[r * SK_THREADS + t] += red[r * SK_THREADS + t + s];
                }
            }
            workgroupBarrier();
        }
        if (t < SK_ROWS && row0 + t < p.m) {
            var bv = 0.0;
            if (HAS_BIAS) {
                bv = bias[row0 + t];
            }
            y[(row0 + t) * cols4 + c] = vec4<f16>(act(red[t * SK_THREADS] + vec4<f32>(bv)));
        }
        workgroupBarrier();
    }
}
