//! ImageNet-1k class names and top-k with softmax probabilities.

/// The 1000 ImageNet class names in the standard index order, one per line.
/// Source: `_IMAGENET_CATEGORIES` in `torchvision/models/_meta.py` of the
/// torchvision 0.29.2 wheel on PyPI (BSD-3-Clause), written out as
/// `data/imagenet_classes.txt`.
pub const IMAGENET_CLASSES_TXT: &str = include_str!("../../data/imagenet_classes.txt");

/// The class names, index = class id.
pub fn class_names() -> Vec<&'static str> {
    IMAGENET_CLASSES_TXT.lines().collect()
}

/// The name of class `id`, if it exists.
pub fn class_name(id: usize) -> Option<&'static str> {
    IMAGENET_CLASSES_TXT.lines().nth(id)
}

/// The WordNet ids (`n01440764`, ...) of the 1000 classes, same order.
/// Source: `timm/data/_info/imagenet_synsets.txt` of the timm 1.0.15 wheel on
/// PyPI (Apache-2.0), written out as `data/imagenet_synsets.txt`.
pub const IMAGENET_SYNSETS_TXT: &str = include_str!("../../data/imagenet_synsets.txt");

/// The class of an ImageNet-style file name (`n01440764_123.JPEG` or
/// `n01440764/...`): its leading WordNet id, if it is one of the 1000.
pub fn class_of_file_name(name: &str) -> Option<usize> {
    let id: String = name.chars().take(9).collect();
    if id.len() != 9 || !id.starts_with('n') || !id[1..].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    IMAGENET_SYNSETS_TXT.lines().position(|l| l.trim() == id)
}

/// One entry of a top-k list.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub class: usize,
    /// The ImageNet name, or `class N` beyond the list.
    pub name: String,
    /// Softmax probability over all logits.
    pub prob: f32,
    pub logit: f32,
}

/// Softmax over all logits (numerically stable).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// The `k` largest logits, best first, with probabilities and names. NaN logits
/// sort last.
pub fn top_k(logits: &[f32], k: usize) -> Vec<Prediction> {
    let probs = softmax(logits);
    let names = class_names();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (logits[a], logits[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(&b),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.total_cmp(&x).then(a.cmp(&b)),
        }
    });
    idx.into_iter()
        .take(k)
        .map(|c| Prediction {
            class: c,
            name: names.get(c).map_or_else(|| format!("class {c}"), |n| n.to_string()),
            prob: probs[c],
            logit: logits[c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn synsets_map_file_names_to_classes() {
        assert_eq!(super::IMAGENET_SYNSETS_TXT.lines().count(), 1000);
        assert_eq!(super::class_of_file_name("n01440764_10026.JPEG"), Some(0));
        assert_eq!(super::class_of_file_name("n02123045_1.png"), Some(281));
        assert_eq!(super::class_of_file_name("chelsea.png"), None);
        assert_eq!(super::class_of_file_name("n99999999_1.png"), None);
    }

    use super::*;

    #[test]
    fn the_list_has_1000_distinct_names_in_the_standard_order() {
        let n = class_names();
        assert_eq!(n.len(), 1000);
        assert_eq!(n.iter().collect::<std::collections::HashSet<_>>().len(), 1000);
        assert_eq!(n[0], "tench");
        assert_eq!(n[281], "tabby");
        assert_eq!(n[285], "Egyptian cat");
        assert_eq!(n[504], "coffee mug");
        assert_eq!(n[967], "espresso");
        assert_eq!(n[999], "toilet tissue");
    }

    #[test]
    fn top_k_orders_and_normalises() {
        let t = top_k(&[1.0, 3.0, 2.0, f32::NAN], 3);
        assert_eq!(t.iter().map(|p| p.class).collect::<Vec<_>>(), vec![1, 2, 0]);
        let p = softmax(&[0.0, 0.0]);
        assert!((p[0] - 0.5).abs() < 1e-7);
    }
}
