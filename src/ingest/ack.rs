//! The acknowledgement frame sent after every text frame:
//! `{"accepted": n, "duplicates": n, "rejected": [{"index", "event_id", "reason", "detail"}]}`.

use serde::Serialize;

use crate::verdict::Rejection;

#[derive(Serialize)]
struct Ack<'a> {
    accepted: u32,
    duplicates: u32,
    rejected: Vec<Rejected<'a>>,
}

#[derive(Serialize)]
struct Rejected<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    reason: &'static str,
    detail: &'a str,
}

/// The ack's JSON; `rejected` must already be in index order.
pub fn encode(accepted: u32, duplicates: u32, rejected: &[Rejection]) -> String {
    let ack = Ack {
        accepted,
        duplicates,
        rejected: rejected
            .iter()
            .map(|r| Rejected {
                index: r.index,
                event_id: r.event_id.as_deref(),
                reason: r.reason.as_str(),
                detail: &r.detail,
            })
            .collect(),
    };
    serde_json::to_string(&ack).expect("an ack always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Reason;

    #[test]
    fn matches_the_contract() {
        let r = vec![Rejection {
            index: 7,
            event_id: Some("e-9".into()),
            reason: Reason::UnknownCall,
            detail: "call.answered for call c-77: never offered".into(),
        }];
        assert_eq!(
            encode(98, 1, &r),
            r#"{"accepted":98,"duplicates":1,"rejected":[{"index":7,"event_id":"e-9","reason":"unknown_call","detail":"call.answered for call c-77: never offered"}]}"#
        );
        assert_eq!(
            encode(1, 0, &[]),
            r#"{"accepted":1,"duplicates":0,"rejected":[]}"#
        );
    }
}
