//! The GPU path from day one: a device is created and a real kernel runs.
//! These tests FAIL (never skip) when no adapter exists: CI installs lavapipe.

use wgsparse::gpu::{elementwise, Context, GpuBuffer};

fn ctx() -> Context {
    match Context::new_blocking() {
        Ok(c) => c,
        Err(e) => panic!("GPU tests need an adapter (CI installs mesa-vulkan-drivers): {e}"),
    }
}

#[test]
fn fill_writes_every_word_of_an_odd_sized_buffer() {
    let ctx = ctx();
    let len = 1_000_003usize; // not a multiple of the workgroup
    let buf = GpuBuffer::from_slice(&ctx, &vec![0u32; len], "smoke").unwrap();
    elementwise::fill_f32(&ctx, &buf, 1.5).unwrap();
    let got: Vec<f32> = buf.read_blocking(&ctx).unwrap();
    assert_eq!(got.len(), len);
    if let Some(i) = got.iter().position(|&v| v != 1.5) {
        panic!("index {i}: actual {}, expected 1.5", got[i]);
    }
    // The pipeline was compiled once and is reused.
    elementwise::fill_f32(&ctx, &buf, 2.0).unwrap();
    assert_eq!(ctx.cached_pipelines(), 1);
    let got: Vec<f32> = buf.read_blocking(&ctx).unwrap();
    assert!(got.iter().all(|&v| v == 2.0));
}

#[test]
fn buffers_over_the_device_limit_are_clear_errors() {
    let ctx = ctx();
    let too_big = ctx.limits().max_storage_buffer_binding_size + 4;
    match GpuBuffer::new(&ctx, too_big, "huge") {
        Err(wgsparse::Error::Limit(msg)) => assert!(msg.contains("max_"), "{msg}"),
        other => panic!("expected a limit error, got {other:?}"),
    }
}

#[test]
fn add_accumulates_into_the_destination() {
    let ctx = ctx();
    let a: Vec<f32> = (0..1001).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..1001).map(|i| 0.5 - i as f32 * 2.0).collect();
    let da = GpuBuffer::from_slice(&ctx, &a, "a").unwrap();
    let db = GpuBuffer::from_slice(&ctx, &b, "b").unwrap();
    let d = elementwise::prepare_add(&ctx, &da, &db).unwrap();
    ctx.submit(&[&d]);
    let got: Vec<f32> = da.read_blocking(&ctx).unwrap();
    for i in 0..a.len() {
        assert_eq!(got[i], a[i] + b[i], "index {i}");
    }
    let short = GpuBuffer::from_slice(&ctx, &b[..10], "short").unwrap();
    assert!(elementwise::prepare_add(&ctx, &da, &short).is_err());
}
