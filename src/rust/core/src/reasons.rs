//! Why a row has no result: the text of every status code, in code order, for each kind
//! of fit. The R side reads this one table instead of keeping copies tied to enum order.

use crate::{assoc, clustered, lmm, nb};

/// `(kind, texts)`: `texts[code]` is the reason of status `code` (`None` for a result).
pub fn reason_table() -> Vec<(&'static str, Vec<Option<&'static str>>)> {
    vec![
        (
            "assoc",
            assoc::Reason::ALL.iter().map(|r| r.text()).collect(),
        ),
        (
            "did",
            clustered::Status::ALL.iter().map(|s| s.text()).collect(),
        ),
        ("lmm", lmm::Status::ALL.iter().map(|s| s.text()).collect()),
        ("nb", nb::Status::ALL.iter().map(|s| s.text()).collect()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_positions_in_the_table() {
        assert!(assoc::Reason::ALL
            .iter()
            .enumerate()
            .all(|(k, r)| *r as usize == k));
        assert!(clustered::Status::ALL
            .iter()
            .enumerate()
            .all(|(k, s)| *s as usize == k));
        assert!(lmm::Status::ALL
            .iter()
            .enumerate()
            .all(|(k, s)| *s as usize == k));
        assert!(nb::Status::ALL
            .iter()
            .enumerate()
            .all(|(k, s)| *s as usize == k));
        for (_, texts) in reason_table() {
            assert!(texts[0].is_none() && texts[1..].iter().all(|t| t.is_some()));
        }
    }
}
