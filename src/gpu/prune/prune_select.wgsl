// Exact magnitude selection and CSR compaction (unstructured, global and the
// block-score selection of block pruning).
//
// Input: one or more "sources", each a row-major matrix of f32 bit patterns
// (read as u32 so -0.0 and denormals pass through bit-exact), rows padded to
// `stride` words (stride % 4 == 0), read as vec4<u32>: vec4 q holds the words
// 4q..4q+3, row r = 4q / stride, column c = 4q % stride + lane; lanes with
// c >= cols are padding and ignored. The key of a weight is its bit pattern
// with the sign cleared, which orders |w| exactly. Flat order (the tie order)
// is row-major over the valid elements, sources one after the other.
//
// Goal: prune the k least important elements (smallest key; among equal keys
// the LATER one is less important) = keep key > T, and of the elements with
// key == T keep only the first keep_eq in flat order.
//
// 1. radix_histogram (PASS 0, 1, 2): digits of 11, 10, 10 bits (key bits
//    30..20, 19..10, 9..0; bit 31 is always 0). Each workgroup owns
//    256 * HIST_ITEMS consecutive vec4s of one source (thread t takes every
//    256th vec4, coalesced), builds a 2048-bin histogram of the digit of the
//    keys whose higher digits match the prefix chosen so far, in workgroup
//    memory, then adds its non-zero bins to the global histogram.
// 2. radix_scan (PASS 0, 1, 2): one workgroup; thread t owns bins
//    [t * B, (t + 1) * B) with B = bins / 256; a workgroup scan finds the bin
//    holding the krem-th smallest candidate and writes (prefix, krem) for the
//    next pass. After PASS 2, prefix = T, krem = how many elements equal to T
//    are pruned, and keep_eq = count(T) - krem.
// 3. select_count: each workgroup owns one chunk of CHUNK = 256 * ITEMS vec4s
//    of a source (thread t takes every 256th vec4) and counts its keys == T
//    and > T, reduced by a workgroup scan (and flags non-finite values when
//    CHECK_FINITE).
// 4. select_chunk_scan: one workgroup (thread t owns SCAN_PER consecutive
//    chunks of each round) scans the chunk counts of all sources in order:
//    eq_before[c] (elements == T in earlier chunks) and kept_before[c] (kept
//    elements in earlier chunks; kept[c] = gt[c] +
//    clamp(keep_eq - eq_before[c], 0, eq[c])).
// 5. select_scatter: each workgroup owns the same chunk; thread t owns ITEMS
//    consecutive vec4s (so its elements are consecutive in flat order). Two
//    workgroup scans give each element its rank among the equal ones and its
//    output position; kept elements write col_idx and either their value bits
//    or (WRITE_ROW = 1, block pruning) their row. A vec4 that starts a row
//    writes row_ptr[row]; the source's last chunk writes row_ptr[rows] and the
//    source's kept count into status[1 + SOURCE].
//
// Grids may be folded into 2-D (x * y >= groups); the flat workgroup index is
// wid.y * nwg.x + wid.x and is bounds-checked.
//
// state (u32): [0, 1] prefix/krem after PASS 0, [2, 3] after PASS 1,
// [4] = T, [5] = pruned among equals, [6] = keep_eq. With k = 0 the host
// writes T = 0, keep_eq = 0xffffffff once and no radix pass runs.
//
// status (u32, atomic): [0] = 0xffffffff - (first non-finite flat index), 0 if
// none; [1 + s] = kept count of source s (global pruning).

struct SelParams {
    rows: u32,
    cols: u32,
    stride: u32,
    len4: u32,         // rows * stride / 4 vec4s
    chunk0: u32,       // first chunk of this source in the chunk arrays
    nchunks: u32,      // chunks of this source
    offset: u32,       // flat index of this source's first element
    k: u32,            // elements to prune in all sources together
    total_chunks: u32, // chunks of all sources
    source: u32,       // position of this source
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;
// vec4s per thread in select_count / select_scatter (a chunk is 4096 elements).
const ITEMS: u32 = 4u;
const CHUNK: u32 = 1024u; // WG * ITEMS
const HIST_BINS: u32 = 2048u;
// Chunks per thread in select_chunk_scan.
const SCAN_PER: u32 = 8u;
const ST_T: u32 = 4u;
const ST_KEEP_EQ: u32 = 6u;

// Radix pass (0, 1, 2) of radix_histogram / radix_scan.
override PASS: u32 = 0u;
// vec4s per thread in radix_histogram.
override HIST_ITEMS: u32 = 16u;
// select_count: 1 = flag NaN/inf (weights), 0 = don't (block scores).
override CHECK_FINITE: u32 = 1u;
// select_scatter: 1 = write the row of each kept element instead of its value.
override WRITE_ROW: u32 = 0u;

var<workgroup> wg_hist: array<atomic<u32>, 2048>;
var<workgroup> scan_sh: array<u32, 256>;

fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// Exclusive scan of one value per invocation over the workgroup; returns
// (exclusive prefix, workgroup total). Must be called in uniform control flow.
fn wg_scan(lid: u32, v: u32) -> vec2<u32> {
    scan_sh[lid] = v;
    workgroupBarrier();
    for (var off = 1u; off < WG; off = off << 1u) {
        var t = 0u;
        if (lid >= off) {
            t = scan_sh[lid - off];
        }
        workgroupBarrier();
        scan_sh[lid] = scan_sh[lid] + t;
        workgroupBarrier();
    }
    let incl = scan_sh[lid];
    let total = scan_sh[WG - 1u];
    workgroupBarrier();
    return vec2<u32>(incl - v, total);
}

fn digit_shift() -> u32 {
    return 20u - 10u * PASS;
}

// ---------------------------------------------------------------- histogram

@group(0) @binding(0) var<uniform> hp: SelParams;
@group(0) @binding(1) var<storage, read> h_src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> h_state: array<u32>;
@group(0) @binding(3) var<storage, read_write> h_hist: array<atomic<u32>>;

@compute @workgroup_size(256)
fn radix_histogram(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let per = WG * HIST_ITEMS;
    let q0 = flat_group(wid, nwg) * per;
    if (q0 >= hp.len4) {
        return;
    }
    for (var i = lid; i < HIST_BINS; i += WG) {
        atomicStore(&wg_hist[i], 0u);
    }
    workgroupBarrier();
    let shift = digit_shift();
    // Keys must match the prefix above this digit (PASS 0: everything).
    var want = 0u;
    var hi_shift = 31u;
    if (PASS > 0u) {
        want = h_state[2u * (PASS - 1u)] >> (shift + 10u);
        hi_shift = shift + 10u;
    }
    let dmask = select(0x3ffu, 0x7ffu, PASS == 0u);
    let q1 = min(q0 + per, hp.len4);
    // Runs of one digit (one dominant magnitude, zeros of pruned weights) are
    // added with one atomic, so a single hot bin does not serialize the pass.
    var run_digit = 0u;
    var run = 0u;
    for (var q = q0 + lid; q < q1; q += WG) {
        let v = h_src[q] & vec4<u32>(0x7fffffffu);
        let c = (4u * q) % hp.stride;
        for (var l = 0u; l < 4u; l++) {
            let key = v[l];
            if (c + l < hp.cols && (key >> hi_shift) == want) {
                let d = (key >> shift) & dmask;
                if (d != run_digit && run != 0u) {
                    atomicAdd(&wg_hist[run_digit], run);
                    run = 0u;
                }
                run_digit = d;
                run += 1u;
            }
        }
    }
    if (run != 0u) {
        atomicAdd(&wg_hist[run_digit], run);
    }
    workgroupBarrier();
    let bins = dmask + 1u;
    for (var i = lid; i < bins; i += WG) {
        let h = atomicLoad(&wg_hist[i]);
        if (h != 0u) {
            atomicAdd(&h_hist[PASS * HIST_BINS + i], h);
        }
    }
}

// ---------------------------------------------------------------- bin select

@group(0) @binding(0) var<uniform> rp: SelParams;
@group(0) @binding(1) var<storage, read> r_hist: array<u32>;
@group(0) @binding(2) var<storage, read_write> r_state: array<u32>;

@compute @workgroup_size(256)
fn radix_scan(@builtin(local_invocation_index) lid: u32) {
    let bins = select(1024u, 2048u, PASS == 0u);
    let per = bins / WG;
    var prefix = 0u;
    var krem = rp.k;
    if (PASS > 0u) {
        prefix = r_state[2u * (PASS - 1u)];
        krem = r_state[2u * (PASS - 1u) + 1u];
    }
    let b0 = lid * per;
    let base = PASS * HIST_BINS;
    var sum = 0u;
    for (var i = 0u; i < per; i++) {
        sum += r_hist[base + b0 + i];
    }
    let s = wg_scan(lid, sum);
    // Exactly one thread's range holds the krem-th candidate (1 <= krem <= candidates).
    if (s.x < krem && krem <= s.x + sum) {
        var cum = s.x;
        for (var i = 0u; i < per; i++) {
            let h = r_hist[base + b0 + i];
            if (cum + h >= krem) {
                let p = prefix | ((b0 + i) << digit_shift());
                let kr = krem - cum;
                r_state[2u * PASS] = p;
                r_state[2u * PASS + 1u] = kr;
                if (PASS == 2u) {
                    r_state[ST_KEEP_EQ] = h - kr;
                }
                break;
            }
            cum += h;
        }
    }
}

// ---------------------------------------------------------------- chunk counts

@group(0) @binding(0) var<uniform> cp: SelParams;
@group(0) @binding(1) var<storage, read> c_src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> c_state: array<u32>;
@group(0) @binding(3) var<storage, read_write> c_counts: array<u32>;
@group(0) @binding(4) var<storage, read_write> c_status: array<atomic<u32>>;

@compute @workgroup_size(256)
fn select_count(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let chunk = flat_group(wid, nwg);
    if (chunk >= cp.nchunks) {
        return;
    }
    let t = c_state[ST_T];
    let q0 = chunk * CHUNK;
    let q1 = min(q0 + CHUNK, cp.len4);
    var eq = 0u;
    var gt = 0u;
    for (var q = q0 + lid; q < q1; q += WG) {
        let bits = c_src[q];
        let v = bits & vec4<u32>(0x7fffffffu);
        let c = (4u * q) % cp.stride;
        for (var l = 0u; l < 4u; l++) {
            if (c + l < cp.cols) {
                eq += u32(v[l] == t);
                gt += u32(v[l] > t);
                if (CHECK_FINITE != 0u && (v[l] & 0x7f800000u) == 0x7f800000u) {
                    let r = (4u * q) / cp.stride;
                    let flat = cp.offset + r * cp.cols + c + l;
                    atomicMax(&c_status[0], 0xffffffffu - flat);
                }
            }
        }
    }
    // A chunk has at most 4096 elements: both counts fit in 16 bits.
    let total = wg_scan(lid, eq | (gt << 16u)).y;
    if (lid == 0u) {
        let at = 2u * (cp.chunk0 + chunk);
        c_counts[at] = total & 0xffffu;
        c_counts[at + 1u] = total >> 16u;
    }
}

// ---------------------------------------------------------------- chunk scan

@group(0) @binding(0) var<uniform> sp: SelParams;
@group(0) @binding(1) var<storage, read> s_counts: array<u32>;
@group(0) @binding(2) var<storage, read> s_state: array<u32>;
@group(0) @binding(3) var<storage, read_write> s_base: array<u32>;

@compute @workgroup_size(256)
fn select_chunk_scan(@builtin(local_invocation_index) lid: u32) {
    let keep_eq = s_state[ST_KEEP_EQ];
    var carry_eq = 0u;
    var carry_kept = 0u;
    // Thread lid owns SCAN_PER consecutive chunks of each round of WG * SCAN_PER.
    for (var c0 = 0u; c0 < sp.total_chunks; c0 += WG * SCAN_PER) {
        let first = c0 + lid * SCAN_PER;
        var eqs: array<u32, 8>;
        var gts: array<u32, 8>;
        var eq_sum = 0u;
        for (var j = 0u; j < SCAN_PER; j++) {
            let c = first + j;
            if (c < sp.total_chunks) {
                eqs[j] = s_counts[2u * c];
                gts[j] = s_counts[2u * c + 1u];
            }
            eq_sum += eqs[j];
        }
        let e = wg_scan(lid, eq_sum);
        var eq_before = carry_eq + e.x;
        var eq_at: array<u32, 8>;
        var kept: array<u32, 8>;
        var kept_sum = 0u;
        for (var j = 0u; j < SCAN_PER; j++) {
            eq_at[j] = eq_before;
            var k = gts[j];
            if (keep_eq > eq_before) {
                k += min(keep_eq - eq_before, eqs[j]);
            }
            kept[j] = k;
            kept_sum += k;
            eq_before += eqs[j];
        }
        let kk = wg_scan(lid, kept_sum);
        var kept_before = carry_kept + kk.x;
        for (var j = 0u; j < SCAN_PER; j++) {
            let c = first + j;
            if (c < sp.total_chunks) {
                s_base[2u * c] = eq_at[j];
                s_base[2u * c + 1u] = kept_before;
            }
            kept_before += kept[j];
        }
        carry_eq += e.y;
        carry_kept += kk.y;
    }
}

// ---------------------------------------------------------------- scatter

@group(0) @binding(0) var<uniform> xp: SelParams;
@group(0) @binding(1) var<storage, read> x_src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x_state: array<u32>;
@group(0) @binding(3) var<storage, read> x_base: array<u32>;
@group(0) @binding(4) var<storage, read_write> x_row_ptr: array<u32>;
@group(0) @binding(5) var<storage, read_write> x_col_idx: array<u32>;
@group(0) @binding(6) var<storage, read_write> x_aux: array<u32>;
@group(0) @binding(7) var<storage, read_write> x_status: array<u32>;
// The values written to x_aux (same layout as x_src): the source itself for
// magnitude pruning, the weights when x_src holds scores.
@group(0) @binding(8) var<storage, read> x_vals: array<vec4<u32>>;

@compute @workgroup_size(256)
fn select_scatter(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let chunk = flat_group(wid, nwg);
    if (chunk >= xp.nchunks) {
        return;
    }
    let t = x_state[ST_T];
    let keep_eq = x_state[ST_KEEP_EQ];
    let q0 = chunk * CHUNK + lid * ITEMS;
    var items: array<vec4<u32>, 4>;
    var valid: array<u32, 4>; // lanes in use (0..4) of each vec4
    var eq = 0u;
    for (var i = 0u; i < ITEMS; i++) {
        let q = q0 + i;
        var n = 0u;
        if (q < xp.len4) {
            items[i] = x_src[q];
            n = min(4u, xp.cols - min(xp.cols, (4u * q) % xp.stride));
        }
        valid[i] = n;
        let v = items[i] & vec4<u32>(0x7fffffffu);
        for (var l = 0u; l < n; l++) {
            eq += u32(v[l] == t);
        }
    }
    let e = wg_scan(lid, eq);
    let g = xp.chunk0 + chunk;
    var eq_rank = x_base[2u * g] + e.x;
    // Kept flags, 16 bits (ITEMS * 4 elements) in flat order.
    var keep = 0u;
    for (var i = 0u; i < ITEMS; i++) {
        let v = items[i] & vec4<u32>(0x7fffffffu);
        for (var l = 0u; l < valid[i]; l++) {
            var kept = v[l] > t;
            if (v[l] == t) {
                kept = eq_rank < keep_eq;
                eq_rank += 1u;
            }
            keep |= u32(kept) << (4u * i + l);
        }
    }
    let k = wg_scan(lid, countOneBits(keep));
    let src_base = x_base[2u * xp.chunk0 + 1u];
    let chunk_out = x_base[2u * g + 1u] - src_base;
    var out = chunk_out + k.x;
    for (var i = 0u; i < ITEMS; i++) {
        let q = q0 + i;
        if (valid[i] == 0u) {
            continue;
        }
        let p = 4u * q;
        let r = p / xp.stride;
        let c = p - r * xp.stride;
        if (c == 0u) {
            x_row_ptr[r] = out;
        }
        for (var l = 0u; l < valid[i]; l++) {
            if ((keep & (1u << (4u * i + l))) != 0u) {
                x_col_idx[out] = c + l;
                if (WRITE_ROW != 0u) {
                    x_aux[out] = r;
                } else {
                    x_aux[out] = x_vals[q][l];
                }
                out += 1u;
            }
        }
    }
    if (chunk == xp.nchunks - 1u && lid == 0u) {
        let total = chunk_out + k.y;
        x_row_ptr[xp.rows] = total;
        x_status[1u + xp.source] = total;
    }
}
