// Block-sparse SpMM  Y[M, N] = act(W_bsr[M, K] * X[K, N] + bias[M]), f32.
//
// W is BSR with BR x BC blocks (row-major inside a block, edge blocks padded
// with zeros; see src/sparse/bsr.rs). X and Y are row-major with rows padded
// to vec4 (GpuMatrix stride) and bound as vec4 arrays.
//
// Each workgroup owns ONE block row (BR rows of Y) and BN4 = WG_X * TN4 vec4
// columns of Y, and walks only the non-zero blocks of its block row. For each
// block it stages the block transposed in workgroup memory (ws[k][row/4], vec4
// over 4 consecutive rows, rows >= BR zero) and the matching BC rows of X in
// chunks of KC rows (xs[k][col4]). Thread (tx, ty) owns rows 4*ty + 0..3 and
// vec4 columns tx + j*WG_X (j < TN4): neighbouring threads read neighbouring
// vec4s of X, and the 4 weights of a k come in one broadcast vec4 load.
//
// Load balance: workgroup row wid.y takes block row row_order[wid.y], the
// block rows sorted by decreasing block count (src/gpu/formats.rs), so the
// longest rows start first and short or empty rows fill the tail of the grid.
// An empty block row still writes its tile (act(bias) or 0).

override BR: u32 = 16u;
override BC: u32 = 16u;
override KC: u32 = 8u;      // X rows staged per chunk, <= BC
override WG_X: u32 = 32u;
override WG_Y: u32 = 4u;    // ceil(BR / 4)
override TN4: u32 = 2u;     // vec4 columns per thread, <= 4
override WS_LEN: u32 = 64u; // BC * WG_Y
override XS_LEN: u32 = 512u; // KC * WG_X * TN4
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;

struct Params {
    m: u32,
    k: u32,
    x_stride4: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> values: array<f32>;
@group(0) @binding(4) var<storage, read> row_order: array<u32>;
@group(0) @binding(5) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;

var<workgroup> ws: array<vec4<f32>, WS_LEN>;
var<workgroup> xs: array<vec4<f32>, XS_LEN>;

fn act(v: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return max(v, vec4<f32>(0.0));
    } else if (ACT == 2u) {
        return clamp(v, vec4<f32>(0.0), vec4<f32>(6.0));
    }
    return v;
}

@compute @workgroup_size(WG_X, WG_Y)
fn spmm_bsr(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let t = ty * WG_X + tx;
    let nthreads = WG_X * WG_Y;
    let bn4 = WG_X * TN4;
    let n04 = wid.x * bn4;
    let brow = row_order[wid.y];
    let first = row_ptr[brow];
    let last = row_ptr[brow + 1u];
    let bsize = BR * BC;

    var acc: array<vec4<f32>, 16>; // acc[e * 4 + j]: row 4*ty + e, vec4 column j
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var b = first; b < last; b++) {
        let kbase = col_idx[b] * BC;
        let vbase = b * bsize;
        // Stage the block transposed: ws[c * WG_Y + r / 4][r % 4] = W[r][c].
        for (var i = t; i < BC * WG_Y * 4u; i += nthreads) {
            let r = i / BC;
            let c = i % BC;
            var v = 0.0;
            if (r < BR) {
                v = values[vbase + r * BC + c];
            }
            ws[c * WG_Y + r / 4u][r % 4u] = v;
        }
        for (var kc0 = 0u; kc0 < BC; kc0 += KC) {
            // Stage KC rows of X (zero past K, past the block, past the row).
            for (var i = t; i < KC * bn4; i += nthreads) {
                let kr = i / bn4;
                let c = n04 + i % bn4;
                let kg = kbase + kc0 + kr;
                var v = vec4<f32>(0.0);
                if (kc0 + kr < BC && kg < p.k && c < p.x_stride4) {
                    v = x[kg * p.x_stride4 + c];
                }
                xs[i] = v;
            }
            workgroupBarrier();
            let kn = min(KC, BC - kc0);
            for (var kr = 0u; kr < kn; kr++) {
                let a = ws[(kc0 + kr) * WG_Y + ty];
                for (var j = 0u; j < TN4; j++) {
                    let bv = xs[kr * bn4 + tx + j * WG_X];
                    acc[j] = fma(vec4<f32>(a.x), bv, acc[j]);
                    acc[4u + j] = fma(vec4<f32>(a.y), bv, acc[4u + j]);
                    acc[8u + j] = fma(vec4<f32>(a.z), bv, acc[8u + j]);
                    acc[12u + j] = fma(vec4<f32>(a.w), bv, acc[12u + j]);
                }
            }
            workgroupBarrier();
        }
    }

    for (var e = 0u; e < 4u; e++) {
        let rl = 4u * ty + e;
        let row = brow * BR + rl;
        if (rl < BR && row < p.m) {
            var bv = 0.0;
            if (HAS_BIAS) {
                bv = bias[row];
            }
            for (var j = 0u; j < TN4; j++) {
                let c = n04 + tx + j * WG_X;
                if (c < p.x_stride4) {
                    y[row * p.x_stride4 + c] = act(acc[e * 4u + j] + vec4<f32>(bv));
                }
            }
        }
    }
}
