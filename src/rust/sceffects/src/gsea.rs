//! Binding of preranked gene-set enrichment (sceffects-core `gsea`).

use extendr_api::prelude::*;

/// Placeholder until the GSEA binding lands.
#[extendr]
fn rs_gsea_probe() -> i32 {
    1
}

extendr_module! {
    mod gsea;
    fn rs_gsea_probe;
}
