// wgsparse: 2:4 sparse x dense matrix multiply on NVIDIA sparse tensor cores
// (Ampere and newer), compiled at run time with NVRTC. No headers: f16/bf16 are
// carried as raw 16-bit patterns and converted with PTX.
//
// Y (M x N, row-major, leading dimension ldc) = A (M x K, 2:4 along K) * X (K x N,
// row-major, leading dimension ldb), f32 accumulation, f16/bf16 output.
//
// Compressed A (see src/cuda/pack.rs, which builds the same arrays on the CPU):
// - Kp = K rounded up to 64, Mp = M rounded up to 16; padding is zeros.
// - values: Mp x Kp/2, row-major: the two kept values of each 4-column chunk, in
//   column order.
// - meta: for every 16-row tile `mt` and 32-column tile `kt`, 16 u32 words at
//   ((mt * Kp/32 + kt) * 16 + w). Word w is the metadata register that lane
//   (group g = w / 2, thread-in-group w % 2) hands to mma.sp with selector 0, so
//   a lane loads its register with one aligned read. Which rows and chunks a word
//   describes is the PTX ISA's m16n8k32 metadata layout, written once in
//   `meta_slot` below and in pack.rs; each chunk contributes a nibble
//   (first kept index in bits 0-1, second in bits 2-3, first < second).

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;

// ---------------------------------------------------------------- layout
// Where the nibble of (row r of a 16-row tile, chunk c of a 32-column tile)
// lives: word index (0..15) and bit offset. META_LAYOUT is set by the host.
#ifndef META_LAYOUT
#define META_LAYOUT 0
#endif
// Block rows per rasterisation group (consecutive blocks walk down a group's
// block rows before moving right, so a wave shares few X column strips).
#ifndef RASTER_GROUP
#define RASTER_GROUP 8
#endif
__device__ __forceinline__ void meta_slot(int r, int c, int* word, int* bit) {
#if META_LAYOUT == 0
    // Thread pair of each quad: T0 holds chunks 0-3 (columns 0-15), T1 chunks
    // 4-7 (columns 16-31); low half row g, high half row g+8.
    *word = (r & 7) * 2 + (c >> 2);
    *bit = (r >> 3) * 16 + (c & 3) * 4;
#else
    // T0 holds the whole row g, T1 the whole row g+8.
    *word = (r & 7) * 2 + (r >> 3);
    *bit = c * 4;
#endif
}

// ---------------------------------------------------------------- PTX helpers
__device__ __forceinline__ u32 smem_u32(const void* p) {
    return (u32)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldmatrix_x4(u32* r, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32* r, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

template <bool BF16> struct Mma;
template <> struct Mma<false> {
    static __device__ __forceinline__ void sp(float* c, const u32* a, const u32* b, u32 e) {
        asm volatile(
            "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
    }
    static __device__ __forceinline__ u32 pack(float lo, float hi) {
        u32 r;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    static __device__ __forceinline__ bool finite(u16 v) { return (v & 0x7c00u) != 0x7c00u; }
};
template <> struct Mma<true> {
    static __device__ __forceinline__ void sp(float* c, const u32* a, const u32* b, u32 e) {
        asm volatile(
            "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
    }
    static __device__ __forceinline__ u32 pack(float lo, float hi) {
        u32 r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    static __device__ __forceinline__ bool finite(u16 v) { return (v & 0x7f80u) != 0x7f80u; }
};

// ---------------------------------------------------------------- SpMM
// Block tile BM x BN, K step BK (BK/2 compressed columns), WM x WN warps, each
// owning a (BM/WM) x (BN/WN) tile of m16n8 accumulators, STAGES-deep cp.async
// pipeline. Shared tiles are XOR-swizzled on 16-byte chunks so that every
// ldmatrix phase hits 8 distinct bank groups.
template <int BM, int BN, int BK, int WM, int WN, int STAGES, bool BF16>
__device__ __forceinline__ void spmm24_body(const u16* __restrict__ A, const u32* __restrict__ E,
                                            const u16* __restrict__ X, u16* __restrict__ Y, int M, int N, int K,
                                            int Mp, int Kp, int ldb, int ldc) {
    constexpr int THREADS = WM * WN * 32;
    constexpr int WTM = BM / WM, WTN = BN / WN;
    constexpr int MT = WTM / 16, NT = WTN / 8;
    constexpr int KS = BK / 32;                          // mma.sp steps per stage
    constexpr int ACH = BK / 16;                         // 16-byte chunks per compressed A row
    constexpr int A_STAGE = BM * (BK / 2);               // u16
    constexpr int B_STAGE = BK * BN;                     // u16
    constexpr int E_STAGE = (BM / 16) * KS * 16;         // u32
    constexpr int BCH = BN / 8;                          // 16-byte chunks per X row
    static_assert(BK == 64 || BK == 128, "K step");
    static_assert(BN >= 64, "the X swizzle needs at least 8 chunks per row");
    static_assert(MT >= 1 && NT >= 1, "warp tile");
    static_assert(STAGES >= 2, "pipeline depth");

    extern __shared__ __align__(128) unsigned char smem[];
    u16* sA = (u16*)smem;
    u16* sB = sA + STAGES * A_STAGE;
    u32* sE = (u32*)(sB + STAGES * B_STAGE);

    // 64-byte A rows (BK 64): swizzle by row pairs; 128-byte rows: by row.
    auto a_swz = [](int r, int ch) { return ACH == 4 ? (ch ^ ((r >> 1) & 3)) : (ch ^ (r & 7)); };

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WN, wn = warp % WN;
    // Grouped rasterisation: consecutive blocks cover 8 block rows of one block
    // column strip, so the X strip they share stays in L2.
    const int gx = gridDim.x, gy = gridDim.y;
    const int bid = blockIdx.y * gx + blockIdx.x;
    constexpr int GROUP = RASTER_GROUP;
    const int per_group = GROUP * gx;
    const int group = bid / per_group;
    const int first_m = group * GROUP;
    const int rows_in_group = min(gy - first_m, GROUP);
    const int bm = (first_m + (bid % per_group) % rows_in_group) * BM;
    const int bn = ((bid % per_group) / rows_in_group) * BN;
    const int ktiles = (Kp + BK - 1) / BK, kh = Kp / 2, kt32 = Kp / 32, mtiles = Mp / 16;

    auto load_stage = [&](int stage, int kt) {
        u16* dA = sA + stage * A_STAGE;
#pragma unroll
        for (int c = tid; c < BM * ACH; c += THREADS) {
            const int r = c / ACH, ch = c % ACH, gr = bm + r, col = kt * (BK / 2) + ch * 8;
            const bool ok = gr < Mp && col < kh;
            const u16* src = ok ? A + (size_t)gr * kh + col : A;
            cp_async16(smem_u32(dA + r * (BK / 2) + a_swz(r, ch) * 8), src, ok ? 16 : 0);
        }
        u16* dB = sB + stage * B_STAGE;
#pragma unroll
        for (int c = tid; c < BK * BCH; c += THREADS) {
            const int r = c / BCH, ch = c % BCH;
            const int gk = kt * BK + r, gn = bn + ch * 8;
            const bool ok = gk < K && gn < N;
            const u16* src = ok ? X + (size_t)gk * ldb + gn : X;
            cp_async16(smem_u32(dB + r * BN + ((ch ^ (r & 7)) * 8)), src, ok ? 16 : 0);
        }
        u32* dE = sE + stage * E_STAGE;
        for (int c = tid; c < (BM / 16) * KS * 4; c += THREADS) {
            const int mt = c / (KS * 4), rest = c % (KS * 4), gmt = bm / 16 + mt, k32 = kt * KS + (rest >> 2);
            const bool ok = gmt < mtiles && k32 < kt32;
            const u32* src = ok ? E + ((size_t)gmt * kt32 + k32) * 16 + (rest & 3) * 4 : E;
            cp_async16(smem_u32(dE + mt * (KS * 16) + rest * 4), src, ok ? 16 : 0);
        }
    };

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.f;

    u32 af[MT][4], bf[NT][4], ef[MT];
    auto load_frags = [&](int stage, int ks) {
        const u16* tA = sA + stage * A_STAGE;
        const u16* tB = sB + stage * B_STAGE;
        const u32* tE = sE + stage * E_STAGE;
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            const int row = wm * WTM + i * 16 + (lane & 15);
            const int ch = ks * 2 + (lane >> 4);
            ldmatrix_x4(af[i], smem_u32(tA + row * (BK / 2) + a_swz(row, ch) * 8));
            ef[i] = tE[(wm * (WTM / 16) + i) * (KS * 16) + ks * 16 + (lane >> 2) * 2 + (lane & 1)];
        }
        const int krow = ks * 32 + lane;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            const int ch = (wn * WTN + j * 8) >> 3;
            ldmatrix_x4_trans(bf[j], smem_u32(tB + krow * BN + ((ch ^ (krow & 7)) * 8)));
        }
    };

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) load_stage(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < ktiles; ++kt) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int nk = kt + STAGES - 1;
        if (nk < ktiles) load_stage(nk % STAGES, nk);
        cp_async_commit();
        const int st = kt % STAGES;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            load_frags(st, ks);
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int j = 0; j < NT; ++j) Mma<BF16>::sp(acc[i][j], af[i], bf[j], ef[i]);
        }
    }
    cp_async_wait<0>();

#pragma unroll
    for (int i = 0; i < MT; ++i) {
        const int r0 = bm + wm * WTM + i * 16 + (lane >> 2);
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            const int col = bn + wn * WTN + j * 8 + (lane & 3) * 2;
            if (col >= N) continue;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = r0 + h * 8;
                if (r >= M) continue;
                const u32 v = Mma<BF16>::pack(acc[i][j][2 * h], acc[i][j][2 * h + 1]);
                u16* dst = Y + (size_t)r * ldc + col;
                if (col + 1 < N) {
                    *(u32*)dst = v;
                } else {
                    *dst = (u16)(v & 0xffffu);
                }
            }
        }
    }
}

#define SPMM24(name, BM, BN, BK, WM, WN, ST, BF, MINB)                                                             \
    extern "C" __global__ void __launch_bounds__(WM * WN * 32, MINB)                                               \
        name(const u16* A, const u32* E, const u16* X, u16* Y, int M, int N, int K, int Mp, int Kp, int ldb,     \
             int ldc) {                                                                                            \
        spmm24_body<BM, BN, BK, WM, WN, ST, BF>(A, E, X, Y, M, N, K, Mp, Kp, ldb, ldc);                            \
    }
#define SPMM24_BOTH(tile, BM, BN, BK, WM, WN, ST, MINB)                 \
    SPMM24(spmm24_f16_##tile, BM, BN, BK, WM, WN, ST, false, MINB)      \
    SPMM24(spmm24_bf16_##tile, BM, BN, BK, WM, WN, ST, true, MINB)

// Tile configurations (the host knows the same table: TILES in src/cuda/runtime.rs).
// Name: BMxBNxBK, warps WMxWN, sS stages, bB resident blocks asked of the compiler.
SPMM24_BOTH(256x128x128w4x2s3, 256, 128, 128, 4, 2, 3, 1)
SPMM24_BOTH(128x256x128w2x4s2, 128, 256, 128, 2, 4, 2, 1)
SPMM24_BOTH(256x128x64w4x2, 256, 128, 64, 4, 2, 4, 1)
SPMM24_BOTH(128x128x64w2x2, 128, 128, 64, 2, 2, 4, 1)
SPMM24_BOTH(128x64x64w2x2b3, 128, 64, 64, 2, 2, 4, 3)
SPMM24_BOTH(64x64x64w2x2, 64, 64, 64, 2, 2, 4, 1)

// ---------------------------------------------------------------- compression
// Magnitude 2:4 on the GPU with the CPU reference's tie rule: in every chunk of
// 4 columns keep the 2 largest |w|, ties to the lower column. Magnitudes compare
// as the bit patterns of |w| (exact for finite values). One thread per row and
// 16 columns (4 chunks): it writes 8 values and one 16-bit half of a metadata
// word. Non-finite input sets *bad.
template <bool BF16>
__device__ __forceinline__ void compress24_body(const u16* __restrict__ D, u16* __restrict__ V,
                                                u16* __restrict__ E16, int M, int K, int ldd, int Mp, int Kp,
                                                int* bad) {
    const int q = blockIdx.x * blockDim.x + threadIdx.x;  // 16-column quad
    const int r = blockIdx.y;
    const int quads = Kp / 16;
    if (q >= quads || r >= Mp) return;
    u32 half = 0;
    bool finite = true;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        const int k0 = q * 16 + c * 4;
        u16 v[4];
        u32 key[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int k = k0 + j;
            v[j] = (r < M && k < K) ? D[(size_t)r * ldd + k] : (u16)0;
            finite = finite && Mma<BF16>::finite(v[j]);
            key[j] = v[j] & 0x7fffu;
        }
        int kept[2], n = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int above = 0;  // elements more important than j
#pragma unroll
            for (int i = 0; i < 4; ++i)
                above += (key[i] > key[j] || (key[i] == key[j] && i < j)) ? 1 : 0;
            if (above < 2 && n < 2) kept[n++] = j;
        }
        const size_t o = (size_t)r * (Kp / 2) + (q * 4 + c) * 2;
        V[o] = v[kept[0]];
        V[o + 1] = v[kept[1]];
        half |= (u32)(kept[0] | (kept[1] << 2)) << (c * 4);
    }
    if (!finite) atomicOr(bad, 1);
    // The quad's 4 chunks sit at chunks (q & 1) * 4 .. +3 of 32-column tile q / 2.
    const int rt = r & 15, mt = r >> 4, kt = q >> 1;
    int word, bit;
    meta_slot(rt, (q & 1) * 4, &word, &bit);
    E16[(((size_t)mt * (Kp / 32) + kt) * 16 + word) * 2 + (bit >> 4)] = (u16)half;
}

extern "C" __global__ void compress24_f16(const u16* D, u16* V, u16* E16, int M, int K, int ldd, int Mp, int Kp,
                                          int* bad) {
    compress24_body<false>(D, V, E16, M, K, ldd, Mp, Kp, bad);
}
extern "C" __global__ void compress24_bf16(const u16* D, u16* V, u16* E16, int M, int K, int ldd, int Mp, int Kp,
                                           int* bad) {
    compress24_body<true>(D, V, E16, M, K, ldd, Mp, Kp, bad);
}

// ---------------------------------------------------------------- probe
// One mma.sp on per-lane registers given by the host: the check that our
// reading of the PTX ISA's fragment and metadata layouts is the hardware's.
extern "C" __global__ void mma_sp_probe_f16(const u32* a, const u32* b, const u32* e, float* d) {
    const int l = threadIdx.x;
    u32 af[4], bf[4];
    float c[4] = {0.f, 0.f, 0.f, 0.f};
    for (int i = 0; i < 4; ++i) {
        af[i] = a[l * 4 + i];
        bf[i] = b[l * 4 + i];
    }
    Mma<false>::sp(c, af, bf, e[l]);
    for (int i = 0; i < 4; ++i) d[l * 4 + i] = c[i];
}

// ---------------------------------------------------------------- peak rates
// Register-only loops of independent tensor-core instructions (8 accumulator
// chains per warp): the instruction throughput ceiling of this GPU for the
// sparse m16n8k32 and the dense m16n8k16, against which the SpMM is judged.
extern "C" __global__ void peak_mma_sp_f16(float* out, int iters, u32 seed) {
    u32 a[4], b[4];
    for (int i = 0; i < 4; ++i) {
        a[i] = seed * (threadIdx.x + 1 + i);
        b[i] = seed ^ (threadIdx.x * 7 + i);
    }
    const u32 e = 0x44444444u;  // indices (0, 1) in every chunk
    float c[8][4] = {};
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int j = 0; j < 8; ++j) Mma<false>::sp(c[j], a, b, e);
    }
    float s = 0.f;
    for (int j = 0; j < 8; ++j) s += c[j][0] + c[j][1] + c[j][2] + c[j][3];
    if (s == 12345.678f) out[0] = s;  // keeps the loop alive
}

extern "C" __global__ void peak_mma_f16(float* out, int iters, u32 seed) {
    u32 a[4], b[2];
    for (int i = 0; i < 4; ++i) a[i] = seed * (threadIdx.x + 1 + i);
    for (int i = 0; i < 2; ++i) b[i] = seed ^ (threadIdx.x * 7 + i);
    float c[8][4] = {};
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int j = 0; j < 8; ++j)
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                "{%0,%1,%2,%3};\n"
                : "+f"(c[j][0]), "+f"(c[j][1]), "+f"(c[j][2]), "+f"(c[j][3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
    float s = 0.f;
    for (int j = 0; j < 8; ++j) s += c[j][0] + c[j][1] + c[j][2] + c[j][3];
    if (s == 12345.678f) out[0] = s;
}

// ================================================================ Hopper (sm_90a)
// Sparse warpgroup MMA: wgmma.mma_async.sp m64nNk32, A (compressed) from
// registers in the mma.sp fragment layout (warp w of the warpgroup holds rows
// 16w..16w+15, its metadata likewise), B from shared memory through a matrix
// descriptor, f32 accumulators in registers. Compiled only for compute_90a.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ u64 desc_field(u32 x) { return (u64)((x & 0x3ffffu) >> 4); }
// No-swizzle ("interleaved") descriptor: start address, leading and stride byte offsets.
__device__ __forceinline__ u64 make_desc(u32 addr, u32 lbo, u32 sbo) {
    return desc_field(addr) | (desc_field(lbo) << 16) | (desc_field(sbo) << 32);
}

// A CUtensorMap as the driver builds it (cuTensorMapEncodeTiled), passed by value.
struct __align__(64) TmaDesc {
    u64 v[16];
};
__device__ __forceinline__ void mbar_init(u32 bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(u32 bar, u32 phase) {
    u32 done;
    do {
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(phase)
            : "memory");
    } while (!done);
}
// Probe of the 128-byte-swizzled N-major layout for B (what a TMA box of 64 N
// values x K rows with CU_TENSOR_MAP_SWIZZLE_128B writes): n block nb (64 wide)
// at nb * 32 * 128 bytes, row k at k * 128, 16-byte chunk c at (c ^ (k % 8)).
// One m64n128k32; variant 0: (LBO, SBO) = (n-block stride, 8-row stride),
// variant 1 swapped. d: 128 threads x 64 floats.
__device__ __forceinline__ void wgmma_sp_n128_f16(float* c, const u32* a, u64 desc, u32 e);
extern "C" __global__ void wgmma_sp_probe_sw128(const u32* a, const u32* e, const u16* b, float* d, int variant) {
    // 48 KB so that a wrong reading of the descriptor reads zeros, not past the end.
    __shared__ __align__(1024) u16 sb[24 * 1024];
    const int tid = threadIdx.x;
    for (int i = tid; i < 24 * 1024; i += 128) sb[i] = 0;
    __syncthreads();
    for (int i = tid; i < 32 * 128; i += 128) {
        const int k = i / 128, n = i % 128;
        const int nb = n / 64, c = (n % 64) / 8;
        sb[nb * 32 * 64 + k * 64 + ((c ^ (k & 7)) * 8) + (n & 7)] = b[i];
    }
    __syncthreads();
    const u32 nblock = 32 * 128, rows8 = 1024;
    u64 desc = variant == 0 ? make_desc(smem_u32(sb), nblock, rows8) : make_desc(smem_u32(sb), rows8, nblock);
    desc |= (u64)1 << 62;  // 128-byte swizzle
    u32 af[4];
    for (int i = 0; i < 4; ++i) af[i] = a[tid * 4 + i];
    float c[64];
    for (int i = 0; i < 64; ++i) c[i] = 0.f;
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    wgmma_sp_n128_f16(c, af, desc, e[tid]);
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    for (int i = 0; i < 64; ++i) d[tid * 64 + i] = c[i];
}

// ---- generated by hand-run script: one wrapper per (N, type); operands are the
// accumulators (N/2 per thread), the 4 A registers, B's descriptor, the metadata.
__device__ __forceinline__ void wgmma_sp_n128_f16(float* c, const u32* a, u64 desc, u32 e) {
    asm volatile(
        "wgmma.mma_async.sp.sync.aligned.m64n128k32.f32.f16.f16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
        "{%64,%65,%66,%67}, %68, %69, 0, 1, 1, 1, 1;\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]), "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]), "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]), "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31]), "+f"(c[32]), "+f"(c[33]), "+f"(c[34]), "+f"(c[35]), "+f"(c[36]), "+f"(c[37]), "+f"(c[38]), "+f"(c[39]), "+f"(c[40]), "+f"(c[41]), "+f"(c[42]), "+f"(c[43]), "+f"(c[44]), "+f"(c[45]), "+f"(c[46]), "+f"(c[47]), "+f"(c[48]), "+f"(c[49]), "+f"(c[50]), "+f"(c[51]), "+f"(c[52]), "+f"(c[53]), "+f"(c[54]), "+f"(c[55]), "+f"(c[56]), "+f"(c[57]), "+f"(c[58]), "+f"(c[59]), "+f"(c[60]), "+f"(c[61]), "+f"(c[62]), "+f"(c[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(e)
        : "memory");
}
__device__ __forceinline__ void wgmma_sp_n128_bf16(float* c, const u32* a, u64 desc, u32 e) {
    asm volatile(
        "wgmma.mma_async.sp.sync.aligned.m64n128k32.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
        "{%64,%65,%66,%67}, %68, %69, 0, 1, 1, 1, 1;\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]), "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]), "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]), "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31]), "+f"(c[32]), "+f"(c[33]), "+f"(c[34]), "+f"(c[35]), "+f"(c[36]), "+f"(c[37]), "+f"(c[38]), "+f"(c[39]), "+f"(c[40]), "+f"(c[41]), "+f"(c[42]), "+f"(c[43]), "+f"(c[44]), "+f"(c[45]), "+f"(c[46]), "+f"(c[47]), "+f"(c[48]), "+f"(c[49]), "+f"(c[50]), "+f"(c[51]), "+f"(c[52]), "+f"(c[53]), "+f"(c[54]), "+f"(c[55]), "+f"(c[56]), "+f"(c[57]), "+f"(c[58]), "+f"(c[59]), "+f"(c[60]), "+f"(c[61]), "+f"(c[62]), "+f"(c[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(e)
        : "memory");
}
__device__ __forceinline__ void wgmma_sp_n256_f16(float* c, const u32* a, u64 desc, u32 e) {
    asm volatile(
        "wgmma.mma_async.sp.sync.aligned.m64n256k32.f32.f16.f16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, "
        "{%128,%129,%130,%131}, %132, %133, 0, 1, 1, 1, 1;\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]), "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]), "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]), "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31]), "+f"(c[32]), "+f"(c[33]), "+f"(c[34]), "+f"(c[35]), "+f"(c[36]), "+f"(c[37]), "+f"(c[38]), "+f"(c[39]), "+f"(c[40]), "+f"(c[41]), "+f"(c[42]), "+f"(c[43]), "+f"(c[44]), "+f"(c[45]), "+f"(c[46]), "+f"(c[47]), "+f"(c[48]), "+f"(c[49]), "+f"(c[50]), "+f"(c[51]), "+f"(c[52]), "+f"(c[53]), "+f"(c[54]), "+f"(c[55]), "+f"(c[56]), "+f"(c[57]), "+f"(c[58]), "+f"(c[59]), "+f"(c[60]), "+f"(c[61]), "+f"(c[62]), "+f"(c[63]), "+f"(c[64]), "+f"(c[65]), "+f"(c[66]), "+f"(c[67]), "+f"(c[68]), "+f"(c[69]), "+f"(c[70]), "+f"(c[71]), "+f"(c[72]), "+f"(c[73]), "+f"(c[74]), "+f"(c[75]), "+f"(c[76]), "+f"(c[77]), "+f"(c[78]), "+f"(c[79]), "+f"(c[80]), "+f"(c[81]), "+f"(c[82]), "+f"(c[83]), "+f"(c[84]), "+f"(c[85]), "+f"(c[86]), "+f"(c[87]), "+f"(c[88]), "+f"(c[89]), "+f"(c[90]), "+f"(c[91]), "+f"(c[92]), "+f"(c[93]), "+f"(c[94]), "+f"(c[95]), "+f"(c[96]), "+f"(c[97]), "+f"(c[98]), "+f"(c[99]), "+f"(c[100]), "+f"(c[101]), "+f"(c[102]), "+f"(c[103]), "+f"(c[104]), "+f"(c[105]), "+f"(c[106]), "+f"(c[107]), "+f"(c[108]), "+f"(c[109]), "+f"(c[110]), "+f"(c[111]), "+f"(c[112]), "+f"(c[113]), "+f"(c[114]), "+f"(c[115]), "+f"(c[116]), "+f"(c[117]), "+f"(c[118]), "+f"(c[119]), "+f"(c[120]), "+f"(c[121]), "+f"(c[122]), "+f"(c[123]), "+f"(c[124]), "+f"(c[125]), "+f"(c[126]), "+f"(c[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(e)
        : "memory");
}
__device__ __forceinline__ void wgmma_sp_n256_bf16(float* c, const u32* a, u64 desc, u32 e) {
    asm volatile(
        "wgmma.mma_async.sp.sync.aligned.m64n256k32.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, "
        "{%128,%129,%130,%131}, %132, %133, 0, 1, 1, 1, 1;\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]), "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]), "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]), "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31]), "+f"(c[32]), "+f"(c[33]), "+f"(c[34]), "+f"(c[35]), "+f"(c[36]), "+f"(c[37]), "+f"(c[38]), "+f"(c[39]), "+f"(c[40]), "+f"(c[41]), "+f"(c[42]), "+f"(c[43]), "+f"(c[44]), "+f"(c[45]), "+f"(c[46]), "+f"(c[47]), "+f"(c[48]), "+f"(c[49]), "+f"(c[50]), "+f"(c[51]), "+f"(c[52]), "+f"(c[53]), "+f"(c[54]), "+f"(c[55]), "+f"(c[56]), "+f"(c[57]), "+f"(c[58]), "+f"(c[59]), "+f"(c[60]), "+f"(c[61]), "+f"(c[62]), "+f"(c[63]), "+f"(c[64]), "+f"(c[65]), "+f"(c[66]), "+f"(c[67]), "+f"(c[68]), "+f"(c[69]), "+f"(c[70]), "+f"(c[71]), "+f"(c[72]), "+f"(c[73]), "+f"(c[74]), "+f"(c[75]), "+f"(c[76]), "+f"(c[77]), "+f"(c[78]), "+f"(c[79]), "+f"(c[80]), "+f"(c[81]), "+f"(c[82]), "+f"(c[83]), "+f"(c[84]), "+f"(c[85]), "+f"(c[86]), "+f"(c[87]), "+f"(c[88]), "+f"(c[89]), "+f"(c[90]), "+f"(c[91]), "+f"(c[92]), "+f"(c[93]), "+f"(c[94]), "+f"(c[95]), "+f"(c[96]), "+f"(c[97]), "+f"(c[98]), "+f"(c[99]), "+f"(c[100]), "+f"(c[101]), "+f"(c[102]), "+f"(c[103]), "+f"(c[104]), "+f"(c[105]), "+f"(c[106]), "+f"(c[107]), "+f"(c[108]), "+f"(c[109]), "+f"(c[110]), "+f"(c[111]), "+f"(c[112]), "+f"(c[113]), "+f"(c[114]), "+f"(c[115]), "+f"(c[116]), "+f"(c[117]), "+f"(c[118]), "+f"(c[119]), "+f"(c[120]), "+f"(c[121]), "+f"(c[122]), "+f"(c[123]), "+f"(c[124]), "+f"(c[125]), "+f"(c[126]), "+f"(c[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(e)
        : "memory");
}

template <int N, bool BF16> struct Wgmma;
template <> struct Wgmma<128, false> { static __device__ __forceinline__ void sp(float* c, const u32* a, u64 d, u32 e) { wgmma_sp_n128_f16(c, a, d, e); } };
template <> struct Wgmma<128, true> { static __device__ __forceinline__ void sp(float* c, const u32* a, u64 d, u32 e) { wgmma_sp_n128_bf16(c, a, d, e); } };
template <> struct Wgmma<256, false> { static __device__ __forceinline__ void sp(float* c, const u32* a, u64 d, u32 e) { wgmma_sp_n256_f16(c, a, d, e); } };
template <> struct Wgmma<256, true> { static __device__ __forceinline__ void sp(float* c, const u32* a, u64 d, u32 e) { wgmma_sp_n256_bf16(c, a, d, e); } };

// SpMM on sparse warpgroup MMAs. NWG warpgroups, each owning 64 rows of the
// block's BM = 64 NWG rows and all BN columns; K step BK per stage. Thread 0
// loads each stage by TMA on the stage's mbarrier: the compressed A tile (64- or
// 128-byte rows, swizzled by the hardware exactly as the mma.sp kernel's tile, so
// the same ldmatrix reads it) and X as 128-byte-swizzled boxes of 64 columns x BK
// rows, which the descriptor describes N-major with LBO = the column-block stride
// and SBO = 1024 (8 rows). The metadata comes by cp.async. A and the metadata go
// through registers in the mma.sp fragment layout. Rows past M or K and columns
// past N are zero-filled by TMA.
template <int NWG, int BN, int BK, int STAGES, bool BF16>
__device__ __forceinline__ void spmm24_wg_body(const u32* __restrict__ E, u16* __restrict__ Y, int M, int N,
                                               int Mp, int Kp, int ldc, const TmaDesc* xmap, const TmaDesc* amap) {
    constexpr int BM = 64 * NWG;
    constexpr int THREADS = 128 * NWG;
    constexpr int KS = BK / 32;
    constexpr int ACH = BK / 16;
    constexpr int A_STAGE = BM * (BK / 2);
    constexpr int B_STAGE = BK * BN;
    constexpr int E_STAGE = (BM / 16) * KS * 16;
    constexpr int NG = BN / 8;
    constexpr int NACC = BN / 2;
    static_assert(BK == 64 || BK == 128, "K step");

    extern __shared__ __align__(1024) unsigned char smem[];
    u16* sA = (u16*)smem;
    u16* sB = sA + STAGES * A_STAGE;
    u32* sE = (u32*)(sB + STAGES * B_STAGE);
    auto a_swz = [](int r, int ch) { return ACH == 4 ? (ch ^ ((r >> 1) & 3)) : (ch ^ (r & 7)); };
    __shared__ __align__(8) u64 full_bar[STAGES];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wg = warp >> 2, wq = warp & 3;  // warpgroup, warp within it
    if (tid == 0) {
        for (int i = 0; i < STAGES; ++i) mbar_init(smem_u32(&full_bar[i]), 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    const int gx = gridDim.x, gy = gridDim.y;
    const int bid = blockIdx.y * gx + blockIdx.x;
    constexpr int GROUP = RASTER_GROUP;
    const int per_group = GROUP * gx;
    const int first_m = (bid / per_group) * GROUP;
    const int rows_in_group = min(gy - first_m, GROUP);
    const int bm = (first_m + (bid % per_group) % rows_in_group) * BM;
    const int bn = ((bid % per_group) / rows_in_group) * BN;
    const int ktiles = (Kp + BK - 1) / BK, kt32 = Kp / 32, mtiles = Mp / 16;

    auto load_stage = [&](int stage, int kt) {
        u16* dA = sA + stage * A_STAGE;
        u16* dB = sB + stage * B_STAGE;
        if (tid == 0) {
            asm volatile(
                "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes "
                "[%0], [%1, {%2, %3}], [%4];\n" ::"r"(smem_u32(dA)),
                "l"((u64)amap), "r"(kt * (BK / 2)), "r"(bm), "r"(smem_u32(&full_bar[stage]))
                : "memory");
            mbar_expect_tx(smem_u32(&full_bar[stage]), B_STAGE * 2 + A_STAGE * 2);
#pragma unroll
            for (int j = 0; j < BN / 64; ++j)
                asm volatile(
                    "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes "
                    "[%0], [%1, {%2, %3}], [%4];\n" ::"r"(smem_u32(dB + j * BK * 64)),
                    "l"((u64)xmap), "r"(bn + 64 * j), "r"(kt * BK), "r"(smem_u32(&full_bar[stage]))
                    : "memory");
        }
        u32* dE = sE + stage * E_STAGE;
        for (int c = tid; c < (BM / 16) * KS * 4; c += THREADS) {
            const int mt = c / (KS * 4), rest = c % (KS * 4), gmt = bm / 16 + mt, k32 = kt * KS + (rest >> 2);
            const bool ok = gmt < mtiles && k32 < kt32;
            cp_async16(smem_u32(dE + mt * (KS * 16) + rest * 4),
                       ok ? E + ((size_t)gmt * kt32 + k32) * 16 + (rest & 3) * 4 : E, ok ? 16 : 0);
        }
    };

    float acc[NACC];
#pragma unroll
    for (int i = 0; i < NACC; ++i) acc[i] = 0.f;

    // Pipeline: loads run STAGES - 2 stages ahead; one warpgroup MMA group stays
    // in flight while the next stage's A fragments are loaded (two register
    // buffers), so a slot is refilled only after the MMA that read it retired.
    static_assert(STAGES >= 3, "the warpgroup pipeline needs 3 stages");
#pragma unroll
    for (int s = 0; s < STAGES - 2; ++s) {
        if (s < ktiles) load_stage(s, s);
        cp_async_commit();
    }
    const int mrow = wg * 64 + wq * 16;  // this warp's 16 rows within the block
    u32 af[2][KS][4], ef[2][KS];
    auto step = [&](int kt, int buf) {
        cp_async_wait<STAGES - 3>();
        __syncthreads();
        const int nk = kt + STAGES - 2;
        if (nk < ktiles) load_stage(nk % STAGES, nk);
        cp_async_commit();
        const int st = kt % STAGES;
        // The stage's TMA data (A and X) must have landed before A is read.
        mbar_wait(smem_u32(&full_bar[st]), (kt / STAGES) & 1);
        const u16* tA = sA + st * A_STAGE;
        const u32* tE = sE + st * E_STAGE;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            const int row = mrow + (lane & 15);
            ldmatrix_x4(af[buf][ks], smem_u32(tA + row * (BK / 2) + a_swz(row, ks * 2 + (lane >> 4)) * 8));
            ef[buf][ks] = tE[(mrow / 16) * (KS * 16) + ks * 16 + (lane >> 2) * 2 + (lane & 1)];
        }
        const u32 b0 = smem_u32(sB + st * B_STAGE);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            const u64 desc = make_desc(b0 + ks * 32 * 128, BK * 128, 1024) | ((u64)1 << 62);  // 128B swizzle
            Wgmma<BN, BF16>::sp(acc, af[buf][ks], desc, ef[buf][ks]);
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    };
    int kt = 0;
    for (; kt + 1 < ktiles; kt += 2) {
        step(kt, 0);
        step(kt + 1, 1);
    }
    if (kt < ktiles) step(kt, 0);
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    cp_async_wait<0>();

    const int g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int j = 0; j < NG; ++j) {
        const int col = bn + j * 8 + 2 * q;
        if (col >= N) continue;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = bm + mrow + g + 8 * h;
            if (r >= M) continue;
            const u32 v = Mma<BF16>::pack(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
            u16* dst = Y + (size_t)r * ldc + col;
            if (col + 1 < N) {
                *(u32*)dst = v;
            } else {
                *dst = (u16)(v & 0xffffu);
            }
        }
    }
}

// Same parameters as the mma.sp kernels (A and X arrive through their tensor maps).
#define SPMM24_WG(name, NWG, BN, BK, ST, BF)                                                                   \
    extern "C" __global__ void __launch_bounds__(NWG * 128, 1)                                                 \
        name(const u16* A, const u32* E, const u16* X, u16* Y, int M, int N, int K, int Mp, int Kp, int ldb, \
             int ldc, const __grid_constant__ TmaDesc xmap, const __grid_constant__ TmaDesc amap) {            \
        spmm24_wg_body<NWG, BN, BK, ST, BF>(E, Y, M, N, Mp, Kp, ldc, &xmap, &amap);                            \
    }
#define SPMM24_WG_BOTH(tile, NWG, BN, BK, ST)                  \
    SPMM24_WG(spmm24_f16_##tile, NWG, BN, BK, ST, false)       \
    SPMM24_WG(spmm24_bf16_##tile, NWG, BN, BK, ST, true)

// Name: wgmma BMxBNxBK, sS stages (the host table: TILES_SM90 in src/cuda/runtime.rs).
SPMM24_WG_BOTH(wgsa128x256x64s4, 2, 256, 64, 4)
SPMM24_WG_BOTH(wgsa128x256x64s5, 2, 256, 64, 5)
SPMM24_WG_BOTH(wgsa128x128x128s4, 2, 128, 128, 4)

// Ceiling of the sparse warpgroup MMA with B N-major in shared memory (no global
// traffic): each warpgroup issues m64n256k32 back to back on one staged B tile.
extern "C" __global__ void __launch_bounds__(256, 1) peak_wgmma_sp_f16(float* out, int iters, u32 seed) {
    __shared__ __align__(128) u16 sb[32 * 256];
    for (int i = threadIdx.x; i < 32 * 256; i += blockDim.x) sb[i] = (u16)(seed ^ i) & 0x3bff;
    __syncthreads();
    u32 a[4];
    for (int i = 0; i < 4; ++i) a[i] = (seed * (threadIdx.x + 1 + i)) & 0x3bff3bffu;
    const u32 e = 0x44444444u;
    float acc[128];
    for (int i = 0; i < 128; ++i) acc[i] = 0.f;
    const u64 desc = make_desc(smem_u32(sb), 32 * 128, 128);
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int j = 0; j < 4; ++j) wgmma_sp_n256_f16(acc, a, desc, e);
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    float s2 = 0.f;
    for (int i = 0; i < 128; ++i) s2 += acc[i];
    if (s2 == 12345.678f) out[0] = s2;
}
#endif
