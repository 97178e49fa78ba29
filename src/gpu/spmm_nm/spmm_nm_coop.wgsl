// N:M SpMM  Y[M, N] = act(W_nm[M, K] * X[K, N] + bias[M]) on cooperative
// matrices (tensor cores) for the half-density patterns 2:4 and 1:2: f16
// storage, 16x16x16 f16 tiles, f32 accumulation. Native only (wgpu's
// EXPERIMENTAL_COOPERATIVE_MATRIX, plus shader-f16 and subgroups);
// spmm_nm_f16.wgsl (shader cores, same format) is the fallback elsewhere.
//
// The tensor cores of wgpu's cooperative matrices have no sparse MMA, and a
// 2:4 row chooses its columns alone, so the rows of a 16-row tile share no
// K rows of X to gather: this kernel is gemm_coop.wgsl with W read compressed
// and expanded to a dense f16 tile (zeros inserted) while it is staged in
// workgroup memory; the MMAs, X staging, double buffering and epilogue are
// exactly the dense kernel's. What it saves is W's global traffic: 20 bytes
// per 16 columns of a row instead of 32.
//
// W storage (GpuNmF16, K in chunks of 16 columns, the last zero-padded):
// `values`, bound as vec4<u32>: one vec4 (8 halves) per row and chunk, the kept
// values of the chunk in column order, component q holding the two of the
// column quad q (4q..4q+3) as a pair of f16; `masks`: 16 bits per row and
// chunk (bit c = column c of the chunk is kept), two chunks per u32 word (the
// even chunk in the low half), `p.mwpr` words per row. Every quad of a valid
// chunk has exactly two bits set; a zero mask (padding) expands to zeros.
// A pair is unpacked with unpack2x16float (exact for f16): naga 30 mistypes
// bitcast<vec2<f16>>(u32) (the call fails validation; lavapipe read garbage).
// X and Y are GpuMatrixF16 bound as vec4<f16>, as in gemm_coop.wgsl.
//
// A W "unit" is one row's 16-column chunk of a stage: 16 + 4 bytes loaded, 4
// vec4<f16> stored into the staged tile. A stage has BM * BK / 16 units, LA per
// thread (rounded up, the last ones guarded).
//
// The schedule, X staging and epilogue are common/coop_core.wgsl's (imported;
// entry point `coop_product`); the W format (Params, bindings) is
// nm16_format.wgsl's, shared with the shader-core spmm_nm_f16.wgsl.

enable f16;
enable wgpu_cooperative_matrix;

// import coop_core
// import nm16_format

// A stage's W registers: per unit its values and its mask word.
struct ARegs {
    v: array<vec4<u32>, 4>,
    m: array<u32, 4>,
}

fn tile_rows(y_tile: u32) -> Rows {
    let bm = WM * TM * 16u;
    return Rows(y_tile * bm, 0u, (p.k + BK - 1u) / BK);
}

// One column quad: its two kept values `pair` (column order) placed by the
// quad's 4 mask bits `nib` (exactly two set, or none: zeros).
fn expand_quad(pair: vec2<f16>, nib: u32) -> vec4<f16> {
    let b = (vec4<u32>(nib) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
    let on = b != vec4<u32>(0u);
    // The value of a kept column is the first of the pair unless a kept column precedes it.
    let lo = vec4<f16>(pair.x, select(pair.x, pair.y, on.x), select(pair.x, pair.y, on.x | on.y), pair.y);
    return select(vec4<f16>(0.0), lo, on);
}

// Registers -> workgroup buffer `buf`: the W units of stage s (K offset
// s * BK) expanded into dense rows (padded to SA), the X rows (padded to SB).
fn store_stage(buf: u32, s: u32, t: u32, bn4: u32, ra: ptr<function, ARegs>, rb: ptr<function, array<vec4<f16>, 16>>) {
    let k0 = s * BK;
    let bm = WM * TM * 16u;
    let bkc = BK / 16u;
    for (var l = 0u; l < LA; l++) {
        let u = t + l * NT;
        if (u < bm * bkc) {
            let cl = u % bkc;
            let sh = ((k0 / 16u + cl) & 1u) * 16u;
            let mask = (*ra).m[l] >> sh;
            let v = (*ra).v[l];
            let o = buf * bm * SA + (u / bkc) * SA + cl * 4u;
            a_s[o] = expand_quad(vec2<f16>(unpack2x16float(v.x)), mask & 15u);
            a_s[o + 1u] = expand_quad(vec2<f16>(unpack2x16float(v.y)), (mask >> 4u) & 15u);
            a_s[o + 2u] = expand_quad(vec2<f16>(unpack2x16float(v.z)), (mask >> 8u) & 15u);
            a_s[o + 3u] = expand_quad(vec2<f16>(unpack2x16float(v.w)), (mask >> 12u) & 15u);
        }
    }
    store_x(buf, t, bn4, rb);
}

// Global loads of stage s (W rows m0.., K offset s * BK; X columns from vec4
// n04) into registers; zeros (mask 0) past M and the last chunk, zeros past K
// and the row stride of X, and for a stage that is not `valid` (the padding
// stage of an odd stage count).
fn load_stage(rows: Rows, s: u32, valid: bool, t: u32, n04: u32, bn4: u32,
              ra: ptr<function, ARegs>, rb: ptr<function, array<vec4<f16>, 16>>) {
    let k0 = s * BK;
    let bm = WM * TM * 16u;
    let bkc = BK / 16u;
    for (var l = 0u; l < LA; l++) {
        let u = t + l * NT;
        let row = rows.m0 + u / bkc;
        let ch = k0 / 16u + u % bkc;
        var v = vec4<u32>(0u);
        var mk = 0u;
        if (valid && u < bm * bkc && row < p.m && ch < p.cpr) {
            v = values[row * p.cpr + ch];
            mk = masks[row * p.mwpr + ch / 2u];
        }
        (*ra).v[l] = v;
        (*ra).m[l] = mk;
    }
    load_x(k0, valid, t, n04, bn4, rb);
}
