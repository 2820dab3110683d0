//! The sample programs that `GET /cache/fill` loads (the original service's 212312–212314).

use std::collections::BTreeMap;

use plugin_engine::CoreRecord;

const SAMPLE_CORE_DATA: &str = include_str!("../samples/core-data.json");

/// The sample programs by id, fields in name order.
pub fn programs() -> Vec<(String, CoreRecord)> {
    let parsed: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(SAMPLE_CORE_DATA).unwrap_or_default();
    parsed
        .into_iter()
        .map(|(id, fields)| (id, fields.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_three_sample_programs_are_embedded() {
        let ids: Vec<String> = super::programs().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["212312", "212313", "212314"]);
    }
}
