// N:M magnitude pruning in one pass, writing the packed N:M format directly.
//
// Input W: row-major f32 bit patterns (read as u32, so -0.0 and denormals are
// copied bit-exact), rows padded to `stride` words; columns >= cols ignored.
// Keys come from `w` (binding 1); the values written come from `wv` (binding
// 5), a matrix of the same layout: W itself for magnitude pruning, or W while
// `w` holds a score matrix (e.g. |W| scaled by input-channel norms).
// Output (the layout of NmMatrix, src/sparse/nm.rs):
//   values[(r * groups + g) * N + s]: slot s of group g of row r (f32 bits);
//   indices: BITS-bit in-group indices, PER_WORD = 32 / BITS per word, each row
//   starting on a word boundary (wpr words per row); slot j = g * N + s of row r
//   lives in word r * wpr + j / PER_WORD at bit (j % PER_WORD) * BITS.
//
// Work split: the index words of all rows form one array of total_words; each
// workgroup owns tile_words consecutive words (tile_words * PER_WORD <= 2048
// slots, so the whole tile's slot indices fit in workgroup memory) and every
// group (row, g) with at least one slot in them. Thread t takes groups
// G0 + t, G0 + t + 256, ... (flat group index G = r * groups + g; adjacent
// threads read adjacent groups, coalesced). Per group it ranks the M keys
// (|w| bits; rank = number of more important elements: larger key, or equal
// key and lower column), keeps rank < N, fills the remaining slots with the
// unused positions in increasing order (value 0), writes the values of the
// groups whose first slot lies in the tile (each group has exactly one writer)
// and the slot indices of the tile into workgroup memory. After a barrier,
// thread t packs word w0 + t.
// Non-finite weights set status[0] = max(status[0], 0xffffffff - flat index).

struct NmParams {
    rows: u32,
    cols: u32,
    stride: u32,
    groups: u32,      // ceil(cols / M)
    wpr: u32,         // index words per row
    total_words: u32, // rows * wpr
    tile_words: u32,  // words per workgroup
    bits: u32,        // ceil(log2 M)
    per_word: u32,    // 32 / bits
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override N: u32 = 2u;
override M: u32 = 4u;

const WG: u32 = 256u;
const TILE_SLOTS: u32 = 2048u;

@group(0) @binding(0) var<uniform> p: NmParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> values: array<u32>;
@group(0) @binding(3) var<storage, read_write> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> wv: array<u32>;

var<workgroup> slots: array<u32, 2048>;

@compute @workgroup_size(256)
fn prune_nm(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let w0 = (wid.y * nwg.x + wid.x) * p.tile_words;
    if (w0 >= p.total_words) {
        return;
    }
    let w1 = min(w0 + p.tile_words, p.total_words);
    for (var i = lid; i < TILE_SLOTS; i += WG) {
        slots[i] = 0u;
    }
    workgroupBarrier();

    // Groups touching the tile: from the group of its first slot to the group
    // of its last slot (slots past groups * N in a row's last word are empty).
    let r0 = w0 / p.wpr;
    let g0 = r0 * p.groups + ((w0 - r0 * p.wpr) * p.per_word) / N;
    let r1 = (w1 - 1u) / p.wpr;
    let j_end = min(((w1 - 1u) - r1 * p.wpr + 1u) * p.per_word, p.groups * N);
    let g1 = r1 * p.groups + (j_end - 1u) / N;

    for (var gi = g0 + lid; gi <= g1; gi += WG) {
        let r = gi / p.groups;
        let g = gi - r * p.groups;
        let c0 = g * M;
        let len = min(M, p.cols - c0);
        let base = r * p.stride + c0;
        var raw = array<u32, 16>();
        var key: array<u32, 16>;
        for (var i = 0u; i < M; i++) {
            var b = 0u;
            if (i < len) {
                b = w[base + i];
                if ((b & 0x7f800000u) == 0x7f800000u) {
                    atomicMax(&status[0], 0xffffffffu - (r * p.cols + c0 + i));
                }
                raw[i] = wv[base + i];
            }
            key[i] = b & 0x7fffffffu;
        }
        var kept = 0u;
        for (var i = 0u; i < M; i++) {
            var rank = 0u;
            for (var j = 0u; j < M; j++) {
                let more = key[j] > key[i] || (key[j] == key[i] && j < i);
                rank += u32(j < len && more);
            }
            if (i < len && rank < N) {
                kept |= 1u << i;
            }
        }
        var fill = N - countOneBits(kept);
        let j0 = g * N;
        let first_word = r * p.wpr + j0 / p.per_word;
        let owner = first_word >= w0 && first_word < w1;
        var s = 0u;
        for (var i = 0u; i < M; i++) {
            let is_kept = ((kept >> i) & 1u) != 0u;
            var take = is_kept;
            if (!is_kept && fill > 0u) {
                take = true;
                fill -= 1u;
            }
            if (take) {
                let j = j0 + s;
                let word = r * p.wpr + j / p.per_word;
                if (word >= w0 && word < w1) {
                    slots[(word - w0) * p.per_word + j % p.per_word] = i;
                }
                if (owner) {
                    values[gi * N + s] = select(0u, raw[i], is_kept);
                }
                s += 1u;
            }
        }
    }
    workgroupBarrier();

    for (var t = lid; t < w1 - w0; t += WG) {
        var word = 0u;
        for (var q = 0u; q < p.per_word; q++) {
            word |= slots[t * p.per_word + q] << (q * p.bits);
        }
        indices[w0 + t] = word;
    }
}
