//! Vectorised all-vs-all association tests between the features (rows) of two blocks.
//!
//! Every test works on one block pair at a time: the caller splits the feature sets into
//! blocks, so memory is bounded by the block size whatever the number of pairs. Counts and
//! rank sums come from matrix products (faer); p-values are computed per pair in parallel.

pub mod chisq;
pub mod cor;
pub mod fisher;
pub mod kruskal;
pub mod mwu;
pub mod pairs;

use faer::Mat;

/// A block of features in R's layout: column-major, features in rows, samples in columns.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a> {
    pub data: &'a [f64],
    pub n_features: usize,
    pub n_samples: usize,
}

impl<'a> Block<'a> {
    pub fn new(data: &'a [f64], n_features: usize, n_samples: usize) -> Result<Self, String> {
        if data.len() != n_features * n_samples {
            return Err(format!(
                "block has {} values, expected {} features x {} samples",
                data.len(),
                n_features,
                n_samples
            ));
        }
        Ok(Block {
            data,
            n_features,
            n_samples,
        })
    }

    /// The values of one feature across samples.
    pub fn feature(&self, f: usize) -> Vec<f64> {
        (0..self.n_samples)
            .map(|s| self.data[s * self.n_features + f])
            .collect()
    }

    /// Whether each feature has a missing value, in one pass over the data in memory order
    /// (a feature's values are strided).
    pub fn missing_features(&self) -> Vec<bool> {
        let mut missing = vec![false; self.n_features];
        if self.n_features > 0 {
            for sample in self.data.chunks_exact(self.n_features) {
                missing
                    .iter_mut()
                    .zip(sample)
                    .for_each(|(m, v)| *m |= v.is_nan());
            }
        }
        missing
    }

    /// Samples x features matrix whose column f is `transform(feature f)`.
    pub fn sample_major(&self, mut transform: impl FnMut(usize, &mut [f64])) -> Mat<f64> {
        let mut m = Mat::<f64>::zeros(self.n_samples, self.n_features);
        let mut buf = vec![0.0; self.n_samples];
        for f in 0..self.n_features {
            for (s, v) in buf.iter_mut().enumerate() {
                *v = self.data[s * self.n_features + f];
            }
            transform(f, &mut buf);
            m.col_mut(f).iter_mut().zip(&buf).for_each(|(d, v)| *d = *v);
        }
        m
    }
}

/// Why a pair has no result (text in [`crate::reasons`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    Ok = 0,
    TooFewObservations = 1,
    ZeroVariance = 2,
    EmptyGroup = 3,
    OneGroup = 4,
    OneLevel = 5,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::Ok,
        Reason::TooFewObservations,
        Reason::ZeroVariance,
        Reason::EmptyGroup,
        Reason::OneGroup,
        Reason::OneLevel,
    ];

    pub fn text(self) -> Option<&'static str> {
        match self {
            Reason::Ok => None,
            Reason::TooFewObservations => Some("fewer than 3 complete observations"),
            Reason::ZeroVariance => Some("zero variance"),
            Reason::EmptyGroup => Some("an empty group"),
            Reason::OneGroup => Some("fewer than 2 groups"),
            Reason::OneLevel => Some("fewer than 2 levels"),
        }
    }
}

/// Sum of all entries of the product of two blocks: the bare matrix product that a
/// correlation screen is benchmarked against (same layout conversion, same product).
pub fn product_checksum(x: &Block, y: &Block) -> f64 {
    let xs = x.sample_major(|_, _| {});
    let ys = y.sample_major(|_, _| {});
    cross_product(&xs, &ys)
        .col_iter()
        .map(|c| c.iter().sum::<f64>())
        .sum()
}

/// One-hot columns of every level of every feature (codes 0, 1, ...; NaN missing).
pub(crate) fn one_hot(block: &Block, n_levels: &[usize]) -> (Mat<f64>, Vec<usize>) {
    let offsets: Vec<usize> = n_levels
        .iter()
        .scan(0, |acc, &l| {
            let o = *acc;
            *acc += l;
            Some(o)
        })
        .collect();
    let mut m = Mat::<f64>::zeros(block.n_samples, n_levels.iter().sum());
    for f in 0..block.n_features {
        for s in 0..block.n_samples {
            let code = block.data[s * block.n_features + f];
            if !code.is_nan() {
                m[(s, offsets[f] + code as usize)] = 1.0;
            }
        }
    }
    (m, offsets)
}

/// `x^T y` for samples x features matrices, on the current rayon pool.
pub(crate) fn cross_product(x: &Mat<f64>, y: &Mat<f64>) -> Mat<f64> {
    let mut out = Mat::<f64>::zeros(x.ncols(), y.ncols());
    let par = faer::Par::rayon(rayon::current_num_threads());
    faer::linalg::matmul::matmul(
        out.as_mut(),
        faer::Accum::Replace,
        x.transpose(),
        y.as_ref(),
        1.0,
        par,
    );
    out
}
