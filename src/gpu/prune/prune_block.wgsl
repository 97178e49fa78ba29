// Block magnitude pruning: block scores, the values of the kept blocks, and the
// longest-first schedule of block rows. The selection of the blocks to keep
// (exact k-th smallest score, ties pruning the later block) and the BSR
// row_ptr / col_idx run in prune_select.wgsl over the score matrix.
//
// W: row-major f32 bit patterns (read as u32), rows padded to `stride` words.
// Block grid: gr x gc blocks of br x bc (edge blocks padded with zeros).
//
// block_scores: thread i owns block (i / gc, i % gc) and accumulates its score
//   sequentially in row-major order inside the block, skipping the padding,
//   as the CPU does (L2: s = v.mul_add(v, s); L1: s = s + |v|). WGSL's fma
//   may round twice (lavapipe's does) and f32 arithmetic may flush
//   subnormals, so each thread first evaluates the hardware fma (L2) or add
//   (L1) on PROBES probe pairs from the uniform whose correctly rounded
//   results the host computed (they separate fused from unfused rounding and
//   catch subnormal flushing); only if all match does it accumulate in
//   hardware. Otherwise each step is computed in integer arithmetic (exact
//   v * v in 48 bits, exact sum, one round to nearest even, subnormals and
//   overflow included). Either way the scores are bit-identical to the CPU's.
//   Writes scores[b * sstride + c] (f32 bits; the score matrix has rows padded
//   to sstride words like a GpuMatrix). Flags non-finite weights in
//   status[0] = max(, 0xffffffff - flat index).
// block_values: thread e owns values[e] (block e / bs, element e % bs,
//   row-major inside the block), consecutive threads write consecutive words:
//   the weight, or 0 outside the matrix.
// block_row_order: thread b owns block row b and computes its rank in the
//   order "more blocks first, then lower index" by comparing its count with
//   every block row's count (staged 256 at a time in workgroup memory), then
//   writes row_order[rank] = b. O(gr^2 / 256) per workgroup, no atomics,
//   stable, equal to the host's longest_first().

struct BlockParams {
    rows: u32,
    cols: u32,
    stride: u32,
    br: u32,
    bc: u32,
    gr: u32,      // block rows
    gc: u32,      // block columns
    sstride: u32, // words per row of the score matrix
    nblocks: u32, // gr * gc
    bs: u32,      // br * bc
    total: u32,   // kept blocks * bs
    zero: u32,    // 0, unknown to the compiler: keeps the probes in vector registers
    force_integer: u32, // 1: never use the hardware path (tests)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    // (v, s, fma(v, v, s), s + |v|) as f32 bits, correctly rounded by the host.
    probes: array<vec4<u32>, 12>,
}

// 0 = L2 (sum of squares), 1 = L1 (sum of absolute values).
override NORM: u32 = 0u;

const WG: u32 = 256u;
const PROBES: u32 = 12u;

fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// ---------------------------------------------------------------- exact scores
// Unsigned 64-bit integers as vec2<u32>(low word, high word); a non-negative
// number as m * 2^e (Ext).

struct Ext {
    m: vec2<u32>,
    e: i32,
}

struct Shifted {
    v: vec2<u32>,
    lost: bool, // a 1 bit was shifted out
}

fn is_zero64(a: vec2<u32>) -> bool {
    return (a.x | a.y) == 0u;
}

// Position of the highest set bit of a non-zero a.
fn msb64(a: vec2<u32>) -> u32 {
    if (a.y != 0u) {
        return 32u + firstLeadingBit(a.y);
    }
    return firstLeadingBit(a.x);
}

// a << n for n < 64 (WGSL shifts take the amount modulo 32: split by hand).
fn shl64(a: vec2<u32>, n: u32) -> vec2<u32> {
    if (n == 0u) {
        return a;
    }
    if (n >= 32u) {
        return vec2<u32>(0u, a.x << (n - 32u));
    }
    return vec2<u32>(a.x << n, (a.y << n) | (a.x >> (32u - n)));
}

// a >> n for any n, with whether non-zero bits fell off.
fn shr64(a: vec2<u32>, n: u32) -> Shifted {
    if (n == 0u) {
        return Shifted(a, false);
    }
    if (n >= 64u) {
        return Shifted(vec2<u32>(0u), !is_zero64(a));
    }
    if (n >= 32u) {
        let k = n - 32u;
        let lost = a.x != 0u || (a.y & ((1u << k) - 1u)) != 0u;
        return Shifted(vec2<u32>(a.y >> k, 0u), lost);
    }
    let lost = (a.x & ((1u << n) - 1u)) != 0u;
    return Shifted(vec2<u32>((a.x >> n) | (a.y << (32u - n)), a.y >> n), lost);
}

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

// The exact 64-bit product of two u32.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (p00 & 0xffffu) | (mid << 16u);
    let hi = a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(lo, hi);
}

// |x| of f32 bits as m * 2^e (subnormals included).
fn unpack(bits: u32) -> Ext {
    let f = bits & 0x7fffffu;
    let be = (bits >> 23u) & 0xffu;
    if (be == 0u) {
        return Ext(vec2<u32>(f, 0u), -149);
    }
    return Ext(vec2<u32>(f | 0x800000u, 0u), i32(be) - 150);
}

// Shifts a non-zero m so its highest bit is bit 62.
fn normalize(x: Ext) -> Ext {
    let up = 62u - msb64(x.m);
    return Ext(shl64(x.m, up), x.e - i32(up));
}

// f32 bits of x + y (both >= 0, both < 2^63 * 2^e), rounded once to nearest
// even: the semantics of fma(v, v, s) and of s + |v| for s >= 0.
fn add_round(x: Ext, y: Ext) -> u32 {
    let xz = is_zero64(x.m);
    let yz = is_zero64(y.m);
    if (xz && yz) {
        return 0u;
    }
    var a = x;
    if (xz) {
        a = y;
    }
    a = normalize(a);
    var sum = a.m;
    var lost = false;
    if (!xz && !yz) {
        var b = normalize(y);
        if (b.e > a.e) {
            let t = a;
            a = b;
            b = t;
        }
        let sh = shr64(b.m, u32(a.e - b.e));
        lost = sh.lost;
        sum = add64(a.m, sh.v); // < 2^64: both terms < 2^63
    }
    // Keep 24 significant bits, fewer in the subnormal range (ulp 2^-149).
    let lsb = max(i32(msb64(sum)) - 23, -149 - a.e); // >= 39
    let r = shr64(sum, u32(lsb - 1));
    let q = shr64(r.v, 1u).v.x;
    let round_up = (r.v.x & 1u) == 1u && (lost || r.lost || (q & 1u) == 1u);
    let biased = lsb + a.e + 149; // exponent field - 1 (0 for subnormals)
    if (biased > 254) {
        return 0x7f800000u;
    }
    // A carry out of the significand moves into the exponent field by itself.
    return min((u32(biased) << 23u) + q + select(0u, 1u, round_up), 0x7f800000u);
}

@group(0) @binding(0) var<uniform> sp: BlockParams;

// Whether this device's f32 fma (L2) / add (L1) round exactly like the host.
fn hardware_exact(salt: u32) -> bool {
    var ok = sp.force_integer == 0u;
    for (var i = 0u; i < PROBES; i++) {
        let p = sp.probes[i];
        let vb = p.x | (salt & sp.zero);
        let sb = p.y | (salt & sp.zero);
        if (NORM == 0u) {
            let v = bitcast<f32>(vb);
            ok = ok && bitcast<u32>(fma(v, v, bitcast<f32>(sb))) == p.z;
        } else {
            ok = ok && bitcast<u32>(bitcast<f32>(sb) + bitcast<f32>(vb & 0x7fffffffu)) == p.w;
        }
    }
    return ok;
}
@group(0) @binding(1) var<storage, read> s_w: array<u32>;
@group(0) @binding(2) var<storage, read_write> s_scores: array<u32>;
@group(0) @binding(3) var<storage, read_write> s_status: array<atomic<u32>>;

@compute @workgroup_size(256)
fn block_scores(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= sp.nblocks) {
        return;
    }
    let b = i / sp.gc;
    let c = i - b * sp.gc;
    let r0 = b * sp.br;
    let r1 = min(r0 + sp.br, sp.rows);
    let k0 = c * sp.bc;
    let k1 = min(k0 + sp.bc, sp.cols);
    let hw = hardware_exact(i);
    var f = 0.0;  // the score, hardware path
    var s = 0u;   // f32 bits of the score, integer path
    var bad = 0u;
    for (var r = r0; r < r1; r++) {
        let row = r * sp.stride;
        for (var k = k0; k < k1; k++) {
            let bits = s_w[row + k];
            if ((bits & 0x7f800000u) == 0x7f800000u && bad == 0u) {
                bad = 0xffffffffu - (r * sp.cols + k);
            }
            if (hw) {
                if (NORM == 0u) {
                    let v = bitcast<f32>(bits);
                    f = fma(v, v, f);
                } else {
                    f = f + bitcast<f32>(bits & 0x7fffffffu);
                }
            } else if (s < 0x7f800000u) { // an overflowed score stays infinite
                let v = unpack(bits);
                var x = v;
                if (NORM == 0u) {
                    x = Ext(mul_wide(v.m.x, v.m.x), 2 * v.e);
                }
                s = add_round(x, unpack(s));
            }
        }
    }
    if (hw) {
        s = bitcast<u32>(f);
    }
    if (bad != 0u) {
        atomicMax(&s_status[0], bad);
    }
    s_scores[b * sp.sstride + c] = s;
}

@group(0) @binding(0) var<uniform> vp: BlockParams;
@group(0) @binding(1) var<storage, read> v_w: array<u32>;
@group(0) @binding(2) var<storage, read> v_col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> v_block_row: array<u32>;
@group(0) @binding(4) var<storage, read_write> v_values: array<u32>;

@compute @workgroup_size(256)
fn block_values(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = flat_id(wid, nwg, lid);
    if (e >= vp.total) {
        return;
    }
    let blk = e / vp.bs;
    let o = e - blk * vp.bs;
    let rr = o / vp.bc;
    let r = v_block_row[blk] * vp.br + rr;
    let c = v_col_idx[blk] * vp.bc + (o - rr * vp.bc);
    var v = 0u;
    if (r < vp.rows && c < vp.cols) {
        v = v_w[r * vp.stride + c];
    }
    v_values[e] = v;
}

@group(0) @binding(0) var<uniform> op: BlockParams;
@group(0) @binding(1) var<storage, read> o_row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read_write> o_row_order: array<u32>;

var<workgroup> counts: array<u32, 256>;

@compute @workgroup_size(256)
fn block_row_order(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let b = flat_id(wid, nwg, lid);
    if ((wid.y * nwg.x + wid.x) * WG >= op.gr) {
        return;
    }
    var mine = 0u;
    if (b < op.gr) {
        mine = o_row_ptr[b + 1u] - o_row_ptr[b];
    }
    var rank = 0u;
    for (var t0 = 0u; t0 < op.gr; t0 += WG) {
        let j = t0 + lid;
        var cnt = 0u;
        if (j < op.gr) {
            cnt = o_row_ptr[j + 1u] - o_row_ptr[j];
        }
        counts[lid] = cnt;
        workgroupBarrier();
        let lim = min(WG, op.gr - t0);
        for (var q = 0u; q < lim; q++) {
            let cq = counts[q];
            rank += u32(cq > mine || (cq == mine && t0 + q < b));
        }
        workgroupBarrier();
    }
    if (b < op.gr) {
        o_row_order[rank] = b;
    }
}
