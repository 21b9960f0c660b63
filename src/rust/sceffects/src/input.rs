//! Binding of feature input: borrows a double matrix or a dgCMatrix's slots from R as
//! sceffects-core `input::Features`.

use crate::{fail, RResult};
use extendr_api::prelude::*;
use sceffects_core::input::{count_problem, integer_count_problem, CscView, Features};

/// The slots of a dgCMatrix, held so that views can borrow them.
pub(crate) struct CscSlots {
    dim: Vec<i32>,
    p: Robj,
    i: Robj,
    x: Robj,
}

impl CscSlots {
    pub(crate) fn of(x: &Robj) -> RResult<Self> {
        let dim = x
            .get_attrib("Dim")
            .and_then(|d| d.as_integer_slice().map(|d| d.to_vec()))
            .ok_or_else(|| fail("not a dgCMatrix"))?;
        let slot = |name: &str| {
            x.get_attrib(name)
                .ok_or_else(|| fail(format!("dgCMatrix without slot {name}")))
        };
        Ok(CscSlots {
            dim,
            p: slot("p")?,
            i: slot("i")?,
            x: slot("x")?,
        })
    }

    pub(crate) fn view(&self) -> RResult<CscView<'_>> {
        CscView::new(
            self.dim[0] as usize,
            self.dim[1] as usize,
            self.p
                .as_integer_slice()
                .ok_or_else(|| fail("slot p is not integer"))?,
            self.i
                .as_integer_slice()
                .ok_or_else(|| fail("slot i is not integer"))?,
            self.x
                .as_real_slice()
                .ok_or_else(|| fail("slot x is not double"))?,
        )
        .map_err(fail)
    }
}

/// The slots of `x` when it is a dgCMatrix.
pub(crate) fn sparse_slots(x: &Robj) -> RResult<Option<CscSlots>> {
    if x.inherits("dgCMatrix") {
        CscSlots::of(x).map(Some)
    } else {
        Ok(None)
    }
}

/// Features (rows) of a double matrix or of a dgCMatrix whose slots are `slots`.
pub(crate) fn features_of<'a>(x: &'a Robj, slots: &'a Option<CscSlots>) -> RResult<Features<'a>> {
    if let Some(s) = slots {
        return Ok(Features::Sparse(s.view()?));
    }
    let nrow = x
        .get_attrib("dim")
        .and_then(|d| d.as_integer_slice().map(|d| d[0] as usize))
        .ok_or_else(|| fail("features must be a matrix or dgCMatrix"))?;
    let data = x
        .as_real_slice()
        .ok_or_else(|| fail("features must be a double matrix"))?;
    Ok(Features::Dense { data, nrow })
}

/// Dense block of rows `start..end` (0-based, end exclusive) of a dgCMatrix.
#[extendr]
fn rs_csc_row_block(x: Robj, start: i32, end: i32) -> RResult<RMatrix<f64>> {
    let slots = CscSlots::of(&x)?;
    let view = slots.view()?;
    let (s, e) = (start as usize, end as usize);
    if start < 0 || e > view.nrow || s > e {
        return Err(fail("row block out of range"));
    }
    let values = view.row_block(s, e);
    Ok(RMatrix::new_matrix(e - s, view.ncol, |r, c| {
        values[c * (e - s) + r]
    }))
}

/// What keeps `values` (a double or integer vector or matrix) from being counts: 0 nothing,
/// 1 a missing value, 2 a negative one, 3 a fraction (see `check_count_values()`).
#[extendr]
fn rs_count_problem(values: Robj) -> RResult<i32> {
    let problem = if let Some(v) = values.as_real_slice() {
        count_problem(v)
    } else if let Some(v) = values.as_integer_slice() {
        integer_count_problem(v)
    } else {
        return Err(fail("counts must be double or integer"));
    };
    Ok(problem.map_or(0, |p| p as i32))
}

extendr_module! {
    mod input;
    fn rs_csc_row_block;
    fn rs_count_problem;
}
