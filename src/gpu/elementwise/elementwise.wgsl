// Elementwise kernels over flat u32/f32 buffers.
//
// fill: each thread writes one 32-bit word. The 1-D grid of ceil(len / 256)
// workgroups may be folded into 2-D (x * y >= groups) when it exceeds the
// 65535-per-dimension limit; the flat index is rebuilt from both and checked.

struct FillParams {
    len: u32,     // words to write
    value: u32,   // the bit pattern written (f32 or u32)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> fp: FillParams;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i < fp.len) {
        dst[i] = fp.value;
    }
}

// add: dst[i] += src[i] over `len` f32 words (residual connections). Same grid
// as fill; binding 2 is the addend (as raw words, shared with add_f16).
@group(0) @binding(2) var<storage, read> src: array<u32>;

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i < fp.len) {
        dst[i] = bitcast<u32>(bitcast<f32>(dst[i]) + bitcast<f32>(src[i]));
    }
}

// add_f16: the same over f16 activations, two halves per 32-bit word (the
// padding halves are added too; no kernel reads them as values). The sum is taken
// in f32 and rounded to f16 once; needs no shader-f16 (unpack2x16float).
@compute @workgroup_size(256)
fn add_f16(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i < fp.len) {
        dst[i] = pack2x16float(unpack2x16float(dst[i]) + unpack2x16float(src[i]));
    }
}
