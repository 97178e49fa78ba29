//! 2:4 compression for the sparse tensor cores, on the CPU: the reference for the
//! GPU compression kernel and the definition of the storage layout the CUDA SpMM
//! reads (`src/cuda/sparse24.cu`). Pure Rust: built and tested without CUDA.
//!
//! Layout of a compressed `rows x cols` matrix A (2:4 along the columns = K):
//! - `kp = cols` rounded up to 64, `mp = rows` rounded up to 16; padding is zeros.
//! - `values`: `mp x kp/2` row-major 16-bit values, the two kept values of every
//!   chunk of 4 columns in column order.
//! - `meta`: for every 16-row tile `mt` and 32-column tile `kt`, 16 u32 words at
//!   `(mt * kp/32 + kt) * 16 + w`. Word `w` is the metadata register of lane
//!   `4 * (w / 2) + w % 2` of an `mma.sp.m16n8k32` with sparsity selector 0; each
//!   (row, chunk) of the tile owns a nibble of one word (first kept index in bits
//!   0-1, second in bits 2-3, first < second), placed by [`MetaLayout::slot`].
//!
//! The tie rule is the crate's ([`crate::prune`]): keep the 2 largest `|w|` of each
//! chunk, ties to the lower column; magnitudes compare as bit patterns.

use crate::error::{Error, Result};

/// 16-bit element type of the tensor-core path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    F16,
    Bf16,
}

impl Half {
    pub fn name(self) -> &'static str {
        match self {
            Half::F16 => "f16",
            Half::Bf16 => "bf16",
        }
    }
    pub fn from_f32(self, v: f32) -> u16 {
        match self {
            Half::F16 => half::f16::from_f32(v).to_bits(),
            Half::Bf16 => half::bf16::from_f32(v).to_bits(),
        }
    }
    pub fn to_f32(self, b: u16) -> f32 {
        match self {
            Half::F16 => half::f16::from_bits(b).to_f32(),
            Half::Bf16 => half::bf16::from_bits(b).to_f32(),
        }
    }
    fn is_finite(self, b: u16) -> bool {
        match self {
            Half::F16 => b & 0x7c00 != 0x7c00,
            Half::Bf16 => b & 0x7f80 != 0x7f80,
        }
    }
}

/// Which rows and chunks of a 16x32 tile each of the 16 metadata words of
/// `mma.sp.m16n8k32` (16-bit types, selector 0) describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaLayout {
    /// Word `2g + s`: chunks `4s..4s+3` (columns `16s..16s+15`) of row `g` in the
    /// low half and of row `g + 8` in the high half.
    SplitColumns = 0,
    /// Word `2g + s`: all 8 chunks of row `g + 8s`.
    RowPerThread = 1,
}

/// The layout the hardware uses (checked on the H100 by `wgsparse bench --backend
/// cuda`, which runs one `mma.sp` on registers packed both ways before timing).
pub const META_LAYOUT: MetaLayout = MetaLayout::SplitColumns;

impl MetaLayout {
    /// Word (0..16) and bit offset of the nibble of (row `r` 0..16, chunk `c` 0..8).
    pub fn slot(self, r: usize, c: usize) -> (usize, u32) {
        match self {
            MetaLayout::SplitColumns => ((r & 7) * 2 + (c >> 2), ((r >> 3) * 16 + (c & 3) * 4) as u32),
            MetaLayout::RowPerThread => ((r & 7) * 2 + (r >> 3), (c * 4) as u32),
        }
    }
}

/// A 2:4-compressed matrix in the tensor-core layout (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Compressed24 {
    pub rows: usize,
    pub cols: usize,
    pub mp: usize,
    pub kp: usize,
    pub dtype: Half,
    pub layout: MetaLayout,
    pub values: Vec<u16>,
    pub meta: Vec<u32>,
}

/// Padded sizes `(mp, kp)` of a `rows x cols` matrix.
pub fn padded(rows: usize, cols: usize) -> (usize, usize) {
    (rows.div_ceil(16) * 16, cols.div_ceil(64) * 64)
}

/// The two kept positions (ascending) of a chunk of 4 by the tie rule.
fn keep2(bits: [u16; 4]) -> (usize, usize) {
    let key = bits.map(|b| b & 0x7fff);
    let mut kept = [0usize; 2];
    let mut n = 0;
    for j in 0..4 {
        let above = (0..4)
            .filter(|&i| key[i] > key[j] || (key[i] == key[j] && i < j))
            .count();
        if above < 2 && n < 2 {
            kept[n] = j;
            n += 1;
        }
    }
    (kept[0], kept[1])
}

impl Compressed24 {
    /// Magnitude-2:4 compression of a dense row-major `rows x cols` matrix of
    /// 16-bit values (`ld` elements per row).
    pub fn compress(
        dense: &[u16],
        rows: usize,
        cols: usize,
        ld: usize,
        dtype: Half,
        layout: MetaLayout,
    ) -> Result<Self> {
        if rows == 0 || cols == 0 {
            return Err(Error::shape(format!(
                "2:4 compression of an empty {rows}x{cols} matrix"
            )));
        }
        if ld < cols || dense.len() < (rows - 1) * ld + cols {
            return Err(Error::shape(format!(
                "2:4 compression: {rows}x{cols} with leading dimension {ld} needs {} values, got {}",
                (rows - 1) * ld + cols,
                dense.len()
            )));
        }
        if let Some(i) = dense.iter().position(|&b| !dtype.is_finite(b)) {
            return Err(Error::NonFinite {
                what: "2:4 compression input",
                index: i,
                value: dtype.to_f32(dense[i]),
            });
        }
        let (mp, kp) = padded(rows, cols);
        let mut values = vec![0u16; mp * kp / 2];
        let mut meta = vec![0u32; mp / 16 * kp / 32 * 16];
        for r in 0..mp {
            for ch in 0..kp / 4 {
                let mut bits = [0u16; 4];
                for (j, b) in bits.iter_mut().enumerate() {
                    let k = ch * 4 + j;
                    if r < rows && k < cols {
                        *b = dense[r * ld + k];
                    }
                }
                let (i0, i1) = keep2(bits);
                values[r * kp / 2 + ch * 2] = bits[i0];
                values[r * kp / 2 + ch * 2 + 1] = bits[i1];
                let (w, bit) = layout.slot(r % 16, ch % 8);
                meta[((r / 16) * (kp / 32) + ch / 8) * 16 + w] |= ((i0 | (i1 << 2)) as u32) << bit;
            }
        }
        Ok(Compressed24 {
            rows,
            cols,
            mp,
            kp,
            dtype,
            layout,
            values,
            meta,
        })
    }

    /// Column of A that compressed column `cc` of row `r` holds, from the metadata.
    pub fn column_of(&self, r: usize, cc: usize) -> usize {
        let ch = cc / 2;
        let (w, bit) = self.layout.slot(r % 16, ch % 8);
        let nib = (self.meta[((r / 16) * (self.kp / 32) + ch / 8) * 16 + w] >> bit) & 0xf;
        let idx = if cc.is_multiple_of(2) { nib & 3 } else { nib >> 2 };
        ch * 4 + idx as usize
    }

    /// The masked dense matrix (`rows x cols`, f32) that the compressed form stands for.
    pub fn decompress(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        for r in 0..self.rows {
            for cc in 0..self.kp / 2 {
                let k = self.column_of(r, cc);
                let v = self.values[r * self.kp / 2 + cc];
                if k < self.cols {
                    out[r * self.cols + k] += self.dtype.to_f32(v);
                } else {
                    debug_assert_eq!(v & 0x7fff, 0, "padding holds zeros");
                }
            }
        }
        out
    }
}

/// Float64 reference of `Y = A X` for the masked A (`rows x cols` f32, as from
/// [`Compressed24::decompress`]) and X (`cols x n`, row-major, `ldx` per row, 16-bit).
pub fn reference(a: &[f32], rows: usize, cols: usize, x: &[u16], n: usize, ldx: usize, dtype: Half) -> Vec<f64> {
    let mut y = vec![0.0f64; rows * n];
    for r in 0..rows {
        for k in 0..cols {
            let av = a[r * cols + k] as f64;
            if av == 0.0 {
                continue;
            }
            let xr = &x[k * ldx..k * ldx + n];
            for (yv, &xb) in y[r * n..(r + 1) * n].iter_mut().zip(xr) {
                *yv += av * dtype.to_f32(xb) as f64;
            }
        }
    }
    y
}

// ------------------------------------------------------------------ fragments
// What each lane of a warp hands to `mma.sp.m16n8k32.row.col` (PTX ISA, "Matrix
// fragments for sparse mma.m16n8k32 with .f16/.bf16"): lane = 4 g + t.
//   A (compressed 16x16): reg i holds row g + 8 (i & 1), columns 2t + 8 (i >> 1) + {0, 1}.
//   B (32x8):             reg j holds rows 8j + 2t + {0, 1}, column g.
//   C/D (16x8 f32):       element i is row g + 8 (i >> 1), column 2t + (i & 1).
// The SpMM loads A with ldmatrix.x4 and B with ldmatrix.x4.trans, which produce
// exactly these registers; the functions below build them from the arrays so
// that the layout can be checked on the CPU ([`emulate_mma_sp`]) and on the GPU
// (the probe kernel).

/// Deterministic xorshift values in [-1, 1) for the probes, the benchmark and the
/// tests (the same seed gives the same matrices on every machine).
#[cfg(any(test, feature = "cuda"))]
pub(crate) fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn pair(lo: u16, hi: u16) -> u32 {
    lo as u32 | (hi as u32) << 16
}

/// A registers of every lane for 16-row tile `mt`, 32-column tile `kt`.
pub fn a_fragments(c: &Compressed24, mt: usize, kt: usize) -> [[u32; 4]; 32] {
    let mut regs = [[0u32; 4]; 32];
    for (lane, reg) in regs.iter_mut().enumerate() {
        let (g, t) = (lane / 4, lane % 4);
        for (i, v) in reg.iter_mut().enumerate() {
            let r = mt * 16 + g + 8 * (i & 1);
            let cc = kt * 16 + 2 * t + 8 * (i >> 1);
            let base = r * c.kp / 2 + cc;
            *v = pair(c.values[base], c.values[base + 1]);
        }
    }
    regs
}

/// Metadata register of every lane (lanes with `t >= 2` are not read with selector 0).
pub fn meta_fragments(c: &Compressed24, mt: usize, kt: usize) -> [u32; 32] {
    let mut e = [0u32; 32];
    for (lane, v) in e.iter_mut().enumerate() {
        *v = c.meta[(mt * (c.kp / 32) + kt) * 16 + (lane / 4) * 2 + (lane & 1)];
    }
    e
}

/// B registers of every lane for the 32x8 tile of X at rows `k0..`, columns `n0..`
/// (rows past `rows_x` read as zeros).
pub fn b_fragments(x: &[u16], ldx: usize, rows_x: usize, k0: usize, n0: usize) -> [[u32; 4]; 32] {
    let at = |k: usize, n: usize| if k < rows_x { x[k * ldx + n] } else { 0 };
    let mut regs = [[0u32; 4]; 32];
    for (lane, reg) in regs.iter_mut().enumerate() {
        let (g, t) = (lane / 4, lane % 4);
        for (j, v) in reg.iter_mut().enumerate() {
            let k = k0 + 8 * j + 2 * t;
            *v = pair(at(k, n0 + g), at(k + 1, n0 + g));
        }
    }
    regs
}

/// What `mma.sp.m16n8k32` computes from lane registers, under metadata layout
/// `layout` (f32 accumulation from zero): the 16x8 result, row-major.
pub fn emulate_mma_sp(
    a: &[[u32; 4]; 32],
    b: &[[u32; 4]; 32],
    e: &[u32; 32],
    layout: MetaLayout,
    dtype: Half,
) -> [[f32; 8]; 16] {
    let half = |r: u32, h: usize| dtype.to_f32((r >> (16 * h)) as u16);
    // Dense B (32x8) from the B registers.
    let mut bd = [[0.0f32; 8]; 32];
    for (lane, reg) in b.iter().enumerate() {
        let (g, t) = (lane / 4, lane % 4);
        for (j, &v) in reg.iter().enumerate() {
            for h in 0..2 {
                bd[8 * j + 2 * t + h][g] = half(v, h);
            }
        }
    }
    let mut d = [[0.0f32; 8]; 16];
    for (lane, reg) in a.iter().enumerate() {
        let (g, t) = (lane / 4, lane % 4);
        for (i, &v) in reg.iter().enumerate() {
            let r = g + 8 * (i & 1);
            for h in 0..2 {
                let cc = 2 * t + 8 * (i >> 1) + h;
                let ch = cc / 2;
                let (w, bit) = layout.slot(r, ch);
                let nib = (e[4 * (w / 2) + w % 2] >> bit) & 0xf;
                let k = ch * 4 + if cc.is_multiple_of(2) { nib & 3 } else { nib >> 2 } as usize;
                let av = half(v, h);
                for (n, dv) in d[r].iter_mut().enumerate() {
                    *dv += av * bd[k][n];
                }
            }
        }
    }
    d
}

/// The 16x8 result as the D registers of every lane hold it.
pub fn d_from_fragments(regs: &[[f32; 4]; 32]) -> [[f32; 8]; 16] {
    let mut d = [[0.0f32; 8]; 16];
    for (lane, reg) in regs.iter().enumerate() {
        let (g, t) = (lane / 4, lane % 4);
        for (i, &v) in reg.iter().enumerate() {
            d[g + 8 * (i >> 1)][2 * t + (i & 1)] = v;
        }
    }
    d
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::sparse::Matrix;

    fn random_half(n: usize, dtype: Half, seed: u64) -> Vec<u16> {
        let mut r = rng(seed);
        (0..n).map(|_| dtype.from_f32(r())).collect()
    }

    #[test]
    fn compression_matches_the_cpu_nm_pruning_and_its_tie_rule() {
        for (rows, cols, seed) in [(5usize, 7usize, 1u64), (17, 70, 2), (33, 130, 3), (16, 64, 4)] {
            for dtype in [Half::F16, Half::Bf16] {
                let mut dense = random_half(rows * cols, dtype, seed);
                // Ties: a few chunks of equal magnitudes with mixed signs.
                for (i, b) in dense.iter_mut().enumerate().take(cols.min(8)) {
                    *b = dtype.from_f32(if i % 2 == 0 { 0.5 } else { -0.5 });
                }
                let c = Compressed24::compress(&dense, rows, cols, cols, dtype, META_LAYOUT).unwrap();
                let w = Matrix::new(rows, cols, dense.iter().map(|&b| dtype.to_f32(b)).collect()).unwrap();
                let pruned = crate::prune::nm(&w, 2, 4).unwrap();
                let masked = c.decompress();
                for r in 0..rows {
                    for k in 0..cols {
                        let want = if pruned.mask.get(r, k) { w.get(r, k) } else { 0.0 };
                        assert_eq!(masked[r * cols + k], want, "{rows}x{cols} {dtype:?} ({r},{k})");
                    }
                }
            }
        }
    }

    #[test]
    fn metadata_nibbles_are_valid_and_ordered() {
        let dense = random_half(40 * 100, Half::F16, 9);
        for layout in [MetaLayout::SplitColumns, MetaLayout::RowPerThread] {
            let c = Compressed24::compress(&dense, 40, 100, 100, Half::F16, layout).unwrap();
            assert_eq!((c.mp, c.kp), (48, 128));
            assert_eq!(c.values.len(), 48 * 64);
            assert_eq!(c.meta.len(), 3 * 4 * 16);
            for w in &c.meta {
                for n in 0..8 {
                    let nib = (w >> (4 * n)) & 0xf;
                    assert!((nib & 3) < (nib >> 2), "nibble {nib:#06b} of word {w:#010x}");
                }
            }
        }
    }

    #[test]
    fn fragments_through_the_mma_semantics_give_the_masked_product() {
        // For both layouts: packing + the ISA's fragment semantics reproduce the
        // product, tile by tile (this pins the packing to the documented semantics;
        // which layout the hardware uses is checked on the GPU by the probe).
        let (rows, cols, n) = (37usize, 90usize, 19usize);
        let dense = random_half(rows * cols, Half::F16, 5);
        let ldx = 24;
        let x = random_half(cols * ldx, Half::F16, 6);
        for layout in [MetaLayout::SplitColumns, MetaLayout::RowPerThread] {
            let c = Compressed24::compress(&dense, rows, cols, cols, Half::F16, layout).unwrap();
            let want = reference(&c.decompress(), rows, cols, &x, n, ldx, Half::F16);
            for mt in 0..c.mp / 16 {
                for n0 in (0..n).step_by(8) {
                    let mut acc = [[0.0f32; 8]; 16];
                    for kt in 0..c.kp / 32 {
                        let a = a_fragments(&c, mt, kt);
                        let e = meta_fragments(&c, mt, kt);
                        // Columns past n: pad X with zeros for the emulation.
                        let mut xp = vec![0u16; c.kp * ldx];
                        xp[..cols * ldx].copy_from_slice(&x);
                        let b = b_fragments(&xp, ldx, cols, kt * 32, n0.min(ldx - 8));
                        let d = emulate_mma_sp(&a, &b, &e, layout, Half::F16);
                        for r in 0..16 {
                            for j in 0..8 {
                                acc[r][j] += d[r][j];
                            }
                        }
                    }
                    let n0 = n0.min(ldx - 8);
                    for r in 0..16 {
                        for j in 0..8 {
                            let (gr, gn) = (mt * 16 + r, n0 + j);
                            if gr < rows && gn < n {
                                let w = want[gr * n + gn];
                                assert!((acc[r][j] as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "{layout:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_two_layouts_differ_so_the_probe_can_tell_them_apart() {
        let dense = random_half(16 * 32, Half::F16, 11);
        let x = random_half(32 * 8, Half::F16, 12);
        let c = Compressed24::compress(&dense, 16, 32, 32, Half::F16, MetaLayout::SplitColumns).unwrap();
        let a = a_fragments(&c, 0, 0);
        let e = meta_fragments(&c, 0, 0);
        let b = b_fragments(&x, 8, 32, 0, 0);
        let right = emulate_mma_sp(&a, &b, &e, MetaLayout::SplitColumns, Half::F16);
        let wrong = emulate_mma_sp(&a, &b, &e, MetaLayout::RowPerThread, Half::F16);
        assert_ne!(right, wrong);
    }

    #[test]
    fn bad_input_is_an_error() {
        let inf = Half::F16.from_f32(f32::INFINITY);
        let mut d = vec![0u16; 4 * 8];
        d[13] = inf;
        let e = Compressed24::compress(&d, 4, 8, 8, Half::F16, META_LAYOUT).unwrap_err();
        assert!(e.to_string().contains("index 13"), "{e}");
        assert!(Compressed24::compress(&d, 4, 8, 7, Half::F16, META_LAYOUT).is_err());
        assert!(Compressed24::compress(&d[..20], 4, 8, 8, Half::F16, META_LAYOUT).is_err());
        assert!(Compressed24::compress(&[], 0, 8, 8, Half::F16, META_LAYOUT).is_err());
        let nan_bf = Half::Bf16.from_f32(f32::NAN);
        assert!(Compressed24::compress(&[nan_bf, 0, 0, 0], 1, 4, 4, Half::Bf16, META_LAYOUT).is_err());
    }
}
