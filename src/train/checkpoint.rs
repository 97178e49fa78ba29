//! Resumable fine-tuning checkpoints: one safetensors file with every
//! parameter, both Adam moments and the masks (f32), and in its metadata the
//! step, the PRNG state, the mask levels, the recipe (checked on resume) and
//! the metrics history.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::gpu::{read_many, Context};

use super::trainer::{StepMetrics, TrainConfig, Trainer};

/// Metadata key naming the file kind.
pub const KIND: &str = "wgsparse.checkpoint";
pub const KIND_VALUE: &str = "lite0-finetune-v1";

/// The recipe fields a resumed run must share with the checkpoint.
fn recipe(cfg: &TrainConfig) -> String {
    format!(
        "pattern={} sparsity={} layer_sparsity={:?} gradual={} gradual_end={} prune_every={} steps={} batch={} resolution={} lr={} warmup={} weight_decay={} temperature={} feature_weight={} seed={}",
        cfg.pattern,
        cfg.sparsity,
        cfg.layer_sparsity,
        cfg.gradual,
        cfg.gradual_end,
        cfg.prune_interval(),
        cfg.steps,
        cfg.batch,
        cfg.resolution,
        cfg.lr,
        cfg.warmup,
        cfg.weight_decay,
        cfg.temperature,
        cfg.feature_weight,
        cfg.seed
    )
}

fn history_json(h: &[StepMetrics]) -> String {
    let v: Vec<serde_json::Value> = h
        .iter()
        .map(|m| serde_json::json!([m.step, m.kd, m.feature, m.agreement]))
        .collect();
    serde_json::Value::Array(v).to_string()
}

fn history_from(s: &str) -> Result<Vec<StepMetrics>> {
    let v: serde_json::Value =
        serde_json::from_str(s).map_err(|e| Error::Weights(format!("checkpoint history: {e}")))?;
    let arr = v
        .as_array()
        .ok_or_else(|| Error::Weights("checkpoint history is not a list".into()))?;
    arr.iter()
        .map(|e| {
            let f = |i: usize| e.get(i).and_then(|x| x.as_f64());
            match (f(0), f(1), f(2), f(3)) {
                (Some(s), Some(kd), Some(feature), Some(agreement)) => Ok(StepMetrics {
                    step: s as usize,
                    kd,
                    feature,
                    agreement,
                }),
                _ => Err(Error::Weights("checkpoint history entry is malformed".into())),
            }
        })
        .collect()
}

/// Serialises the trainer's state and the metrics histories.
pub async fn save(ctx: &Context, t: &Trainer, history: &[StepMetrics], heldout: &[StepMetrics]) -> Result<Vec<u8>> {
    let named = t.state_buffers();
    let bufs: Vec<_> = named.iter().map(|(_, b)| *b).collect();
    let data = read_many(ctx, &bufs).await?;
    let bytes: Vec<Vec<u8>> = data
        .iter()
        .map(|w| bytemuck::cast_slice::<u32, u8>(w).to_vec())
        .collect();
    let views = named
        .iter()
        .zip(&bytes)
        .map(|((name, _), b)| {
            TensorView::new(Dtype::F32, vec![b.len() / 4], b)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Weights(format!("tensor '{name}': {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = HashMap::new();
    meta.insert(KIND.to_string(), KIND_VALUE.to_string());
    meta.insert("wgsparse.train.step".into(), t.step().to_string());
    meta.insert("wgsparse.train.recipe".into(), recipe(t.config()));
    meta.insert(
        "wgsparse.train.rng".into(),
        t.rng_state()
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    meta.insert(
        "wgsparse.train.mask_levels".into(),
        t.mask_levels()
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    meta.insert("wgsparse.train.history".into(), history_json(history));
    meta.insert("wgsparse.train.heldout".into(), history_json(heldout));
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Weights(format!("cannot serialise: {e}")))
}

/// Restores a checkpoint into a trainer built with the same recipe; returns
/// the metrics histories (training batches, held-out evaluations). A file of another kind, another recipe or another
/// model is an [`Error::Weights`] / [`Error::Invalid`].
pub fn restore(ctx: &Context, t: &mut Trainer, bytes: &[u8]) -> Result<(Vec<StepMetrics>, Vec<StepMetrics>)> {
    let (_, md) = SafeTensors::read_metadata(bytes).map_err(|e| Error::Weights(format!("not a checkpoint: {e}")))?;
    let meta = md.metadata().clone().unwrap_or_default();
    if meta.get(KIND).map(String::as_str) != Some(KIND_VALUE) {
        return Err(Error::Weights(format!(
            "not a wgsparse fine-tuning checkpoint (metadata {KIND} = {:?}, expected {KIND_VALUE:?})",
            meta.get(KIND)
        )));
    }
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| Error::Weights(format!("checkpoint metadata lacks {k}")))
    };
    let saved = get("wgsparse.train.recipe")?;
    let now = recipe(t.config());
    if saved != &now {
        return Err(Error::Invalid(format!(
            "the checkpoint was made with another recipe:\n  checkpoint: {saved}\n  this run:   {now}"
        )));
    }
    let step: usize = get("wgsparse.train.step")?
        .parse()
        .map_err(|e| Error::Weights(format!("checkpoint step: {e}")))?;
    if step > t.config().steps {
        return Err(Error::Weights(format!(
            "checkpoint step {step} is past the recipe's {} steps",
            t.config().steps
        )));
    }
    let rng: Vec<u64> = get("wgsparse.train.rng")?
        .split(',')
        .map(|x| x.parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Weights(format!("checkpoint rng: {e}")))?;
    let rng: [u64; 4] = rng
        .try_into()
        .map_err(|_| Error::Weights("checkpoint rng needs 4 words".into()))?;
    let levels_s = get("wgsparse.train.mask_levels")?;
    let levels: Vec<f64> = if levels_s.is_empty() {
        Vec::new()
    } else {
        levels_s
            .split(',')
            .map(|x| x.parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Weights(format!("checkpoint mask levels: {e}")))?
    };
    let history = history_from(get("wgsparse.train.history")?)?;
    let heldout = history_from(get("wgsparse.train.heldout")?)?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Weights(format!("not a checkpoint: {e}")))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::Weights(format!("checkpoint tensor '{name}' is not f32")));
        }
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name, v);
    }
    t.restore(ctx, &tensors, step, rng, levels)?;
    Ok((history, heldout))
}
