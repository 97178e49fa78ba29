//! GPU timing: timestamp queries around each timed run when the adapter has
//! them, wall clock around a submitted and awaited run otherwise. Every result
//! says which it used.

use crate::error::{Error, Result};

use super::{buffer::map_read, Context, Dispatch};

/// Where a time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingSource {
    /// GPU timestamp queries at the start and end of the compute pass.
    GpuTimestamps,
    /// Host clock around submit + wait (includes submission overhead).
    WallClock,
}

impl std::fmt::Display for TimingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimingSource::GpuTimestamps => "gpu-timestamps",
            TimingSource::WallClock => "wall-clock",
        })
    }
}

/// Times of repeated runs, in milliseconds.
#[derive(Clone, Debug)]
pub struct Timings {
    pub samples_ms: Vec<f64>,
    pub source: TimingSource,
}

impl Timings {
    pub fn median_ms(&self) -> f64 {
        let mut v = self.samples_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
        }
    }
    pub fn min_ms(&self) -> f64 {
        self.samples_ms.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// Least wall time of warm-up before timed runs (native).
#[cfg(not(target_arch = "wasm32"))]
const WARMUP_MIN: std::time::Duration = std::time::Duration::from_millis(200);

/// Most timed runs per call: two timestamps each within wgpu's 4096-query sets.
pub const MAX_RUNS: usize = 2048;

impl Context {
    /// Runs `dispatches` (one compute pass) `warmup` times untimed, then `runs`
    /// times timed, each run in its own pass.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_blocking(&self, dispatches: &[&Dispatch], warmup: usize, runs: usize) -> Result<Timings> {
        pollster::block_on(self.time(dispatches, warmup, runs))
    }

    /// See [`Context::time_blocking`].
    pub async fn time(&self, dispatches: &[&Dispatch], warmup: usize, runs: usize) -> Result<Timings> {
        if runs == 0 || runs > MAX_RUNS {
            return Err(Error::Limit(format!(
                "timed runs must be in 1..={MAX_RUNS}, got {runs}"
            )));
        }
        for _ in 0..warmup {
            self.submit(dispatches);
        }
        #[cfg(not(target_arch = "wasm32"))]
        if warmup > 0 {
            // Keep the GPU busy for at least WARMUP_MIN before timing: after
            // CPU-side work a discrete GPU idles at low clocks, and a fixed
            // count of short warm-up runs does not bring it back up (seen on
            // an H100: the same GEMM at 3.1 ms after other GPU work, 6-7 ms
            // after CPU-side set-up).
            let t = std::time::Instant::now();
            loop {
                self.device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
                if t.elapsed() >= WARMUP_MIN {
                    break;
                }
                for _ in 0..warmup {
                    self.submit(dispatches);
                }
            }
        }
        if self.features().timestamp_query {
            self.time_with_timestamps(dispatches, runs).await
        } else {
            self.time_with_clock(dispatches, runs).await
        }
    }

    async fn time_with_timestamps(&self, dispatches: &[&Dispatch], runs: usize) -> Result<Timings> {
        let n = 2 * runs as u32;
        let qs = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timing"),
            ty: wgpu::QueryType::Timestamp,
            count: n,
        });
        let bytes = 8 * n as u64;
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timing resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timing read"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("timed runs"),
        });
        for r in 0..runs as u32 {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("timed run"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &qs,
                    beginning_of_pass_write_index: Some(2 * r),
                    end_of_pass_write_index: Some(2 * r + 1),
                }),
            });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        enc.resolve_query_set(&qs, 0..n, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
        self.queue.submit([enc.finish()]);
        map_read(self, &read).await?;
        let ticks: Vec<u64> = {
            let view = read
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading timestamps: {e}")))?;
            bytemuck::cast_slice(&view).to_vec()
        };
        read.unmap();
        self.take_errors()?;
        let period = self.queue.get_timestamp_period() as f64;
        // Counters may reset between passes (spec): drop non-positive deltas.
        let samples_ms: Vec<f64> = ticks
            .chunks_exact(2)
            .filter(|t| t[1] > t[0])
            .map(|t| (t[1] - t[0]) as f64 * period * 1e-6)
            .collect();
        if samples_ms.is_empty() {
            return self.time_with_clock(dispatches, runs).await;
        }
        Ok(Timings {
            samples_ms,
            source: TimingSource::GpuTimestamps,
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    async fn time_with_clock(&self, dispatches: &[&Dispatch], runs: usize) -> Result<Timings> {
        let mut samples_ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = std::time::Instant::now();
            self.submit(dispatches);
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
            samples_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        self.take_errors()?;
        Ok(Timings {
            samples_ms,
            source: TimingSource::WallClock,
        })
    }

    #[cfg(target_arch = "wasm32")]
    async fn time_with_clock(&self, _dispatches: &[&Dispatch], _runs: usize) -> Result<Timings> {
        Err(Error::Gpu(
            "this adapter has no timestamp queries and wall-clock timing is not wired up in the browser yet".into(),
        ))
    }
}
