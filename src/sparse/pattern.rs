use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The shape of sparsity a matrix is pruned to.
///
/// Parses from and prints as `dense`, `unstructured`, `block:8x8` and `2:4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    Dense,
    Unstructured,
    /// Whole `rows x cols` blocks are kept or pruned.
    Block {
        rows: usize,
        cols: usize,
    },
    /// `n` kept values in every group of `m` consecutive values along K.
    NM {
        n: usize,
        m: usize,
    },
}

/// Largest block side accepted; larger blocks are no longer "blocks" for a kernel.
pub const MAX_BLOCK: usize = 64;

impl Pattern {
    /// Checks the pattern's parameters.
    pub fn validate(self) -> Result<Self> {
        match self {
            Pattern::Block { rows, cols } => {
                if !(1..=MAX_BLOCK).contains(&rows) || !(1..=MAX_BLOCK).contains(&cols) {
                    return Err(Error::InvalidBlock { rows, cols });
                }
            }
            Pattern::NM { n, m } => {
                if n == 0 || n > m || !(2..=16).contains(&m) {
                    return Err(Error::InvalidNm { n, m });
                }
            }
            Pattern::Dense | Pattern::Unstructured => {}
        }
        Ok(self)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that width and alignment flags work in tables.
        f.pad(&match self {
            Pattern::Dense => "dense".to_string(),
            Pattern::Unstructured => "unstructured".to_string(),
            Pattern::Block { rows, cols } => format!("block:{rows}x{cols}"),
            Pattern::NM { n, m } => format!("{n}:{m}"),
        })
    }
}

impl FromStr for Pattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        let bad = || Error::ParsePattern(s.to_string());
        let num = |x: &str| x.trim().parse::<usize>().map_err(|_| bad());
        let p = if t == "dense" {
            Pattern::Dense
        } else if t == "unstructured" || t == "csr" {
            Pattern::Unstructured
        } else if let Some(rest) = t.strip_prefix("block:") {
            let (r, c) = rest.split_once('x').ok_or_else(bad)?;
            Pattern::Block {
                rows: num(r)?,
                cols: num(c)?,
            }
        } else if let Some((n, m)) = t.split_once(':') {
            Pattern::NM { n: num(n)?, m: num(m)? }
        } else {
            return Err(bad());
        };
        p.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for s in [
            "dense",
            "unstructured",
            "block:8x8",
            "block:16x4",
            "2:4",
            "1:4",
            "4:8",
            "3:16",
        ] {
            let p: Pattern = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        assert_eq!(
            "  Block:4X4 ".parse::<Pattern>().unwrap(),
            Pattern::Block { rows: 4, cols: 4 }
        );
    }

    #[test]
    fn rejects_bad_patterns() {
        for s in [
            "",
            "sparse",
            "block:",
            "block:8",
            "block:0x8",
            "block:8x65",
            "0:4",
            "5:4",
            "2:1",
            "2:17",
            "a:b",
            "2:4:8",
        ] {
            assert!(s.parse::<Pattern>().is_err(), "{s} parsed");
        }
        assert!(matches!("3:2".parse::<Pattern>(), Err(Error::InvalidNm { n: 3, m: 2 })));
    }
}
