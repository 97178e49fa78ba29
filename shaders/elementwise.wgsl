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
// as fill; binding 2 is the addend.
@group(0) @binding(2) var<storage, read> src: array<f32>;

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i < fp.len) {
        dst[i] = bitcast<u32>(bitcast<f32>(dst[i]) + src[i]);
    }
}
