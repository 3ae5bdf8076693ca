//! The `forbidden` outcome of CONTRACT.md §10: the identity gate asked with
//! the claim of the body's one parse, before the store is read, so the answer
//! is the same whether or not the token it names exists.

use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::rfc3339;
use mmt_shared::wire::{ErrorCode, MessageKind};

use super::{Inbound, Outcome};
use crate::rules::decode::Claim;
use crate::rules::identity::{Forbidden, Mode};

/// `None` when `inbound` may be served; else the `forbidden` outcome.
pub(super) fn check(mode: &Mode, inbound: &Inbound<'_>, claim: &Claim) -> Option<Outcome> {
    // An empty clientId names no client: bad input, refused as such for a
    // user the file knows.
    let claimed = claim.client_id.as_deref().filter(|c| !c.is_empty());
    let why = mode.check(inbound.user_id, claimed).err()?;
    Some(refusal(inbound, claimed, claim, why))
}

/// The error reply, a `request.rejected` event, and for a state-changing
/// message a dead letter (nothing is lost: it can be replayed once the file
/// is fixed).
fn refusal(inbound: &Inbound<'_>, claimed: Option<&str>, claim: &Claim, why: Forbidden) -> Outcome {
    let mut event = Event::new(EventKind::RequestRejected, rfc3339(inbound.received_at));
    event.client_id = claimed.map(str::to_owned);
    event.code = Some(ErrorCode::Forbidden);
    event.queue = Some(inbound.kind.routing_key().to_owned());
    event.message_id = inbound.message_id.map(str::to_owned);
    event.broker_user = inbound.user_id.map(str::to_owned);
    if inbound.kind == MessageKind::TokenResolve {
        event.operation = claim.operation;
    }
    Outcome::Refused {
        code: ErrorCode::Forbidden,
        reason: why.message().to_owned(),
        event: Box::new(event),
        dead_letter: inbound.kind.mutates(),
    }
}

#[cfg(test)]
mod tests {
    use mmt_shared::wire::{Operation, TokenResolve};

    use super::*;
    use crate::rules::decode::parse;
    use crate::rules::identity::Gate;
    use crate::rules::identity::tests::strict;

    fn inbound<'a>(kind: MessageKind, body: &'a [u8], user: Option<&'a str>) -> Inbound<'a> {
        Inbound {
            kind,
            body,
            message_id: Some("m-1"),
            timestamp: None,
            received_at: 0,
            user_id: user,
        }
    }

    /// The gate's answer for `inbound`, its body parsed as the service
    /// parses it.
    fn gate(mode: &Mode, inbound: &Inbound<'_>) -> Option<Outcome> {
        check(mode, inbound, &parse::<TokenResolve>(inbound.body).claim)
    }

    #[test]
    fn the_claim_is_the_bodys_string_client_id() {
        let claim = |body: &[u8]| parse::<TokenResolve>(body).claim;
        let valid = claim(br#"{"tokenId":"t","clientId":"acme","operation":"write"}"#);
        assert_eq!(valid.client_id.as_deref(), Some("acme"));
        assert_eq!(valid.operation, Some(Operation::Write));
        assert_eq!(claim(br#"{"clientId":7}"#).client_id, None);
        let unknown_op = claim(br#"{"clientId":"acme","operation":"delete"}"#);
        assert_eq!(
            unknown_op.client_id.as_deref(),
            Some("acme"),
            "an unknown operation does not hide the claim"
        );
        assert_eq!(unknown_op.operation, None);
        assert_eq!(claim(b"not json"), Claim::default());
        assert_eq!(claim(br#"["acme"]"#), Claim::default());
    }

    #[test]
    fn a_body_that_names_two_clients_is_never_served() {
        let body = br#"{"clientId":"globex","clientId":"acme","tokenId":"t","operation":"read"}"#;
        assert!(
            parse::<TokenResolve>(body).message.is_err(),
            "a duplicate field is bad input"
        );
        let user_of_the_first = inbound(MessageKind::TokenResolve, body, Some("globex-app"));
        assert!(gate(&strict(), &user_of_the_first).is_some());
    }

    #[test]
    fn forbidden_is_the_same_whatever_token_is_named() {
        let mode = strict();
        let reply = |token: &str| {
            let body = format!(r#"{{"clientId":"acme","tokenId":"{token}","operation":"read"}}"#);
            match gate(
                &mode,
                &inbound(
                    MessageKind::TokenResolve,
                    body.as_bytes(),
                    Some("globex-app"),
                ),
            ) {
                Some(Outcome::Refused {
                    code,
                    reason,
                    event,
                    dead_letter,
                }) => {
                    assert!(!dead_letter, "a read is not dead-lettered");
                    assert_eq!(event.token_id, None);
                    assert_eq!(event.broker_user.as_deref(), Some("globex-app"));
                    assert_eq!(event.operation, Some(Operation::Read));
                    Outcome::error_reply(code, &reason)
                }
                _ => panic!("expected forbidden"),
            }
        };
        assert_eq!(reply("tok_existing"), reply("tok_never_minted"));
    }

    #[test]
    fn a_refused_state_change_is_dead_lettered() {
        let body = br#"{"clientId":"acme","tokenId":"t"}"#;
        assert!(matches!(
            gate(
                &strict(),
                &inbound(MessageKind::ConnectionRemoved, body, None)
            ),
            Some(Outcome::Refused {
                dead_letter: true,
                ..
            })
        ));
    }

    #[test]
    fn an_empty_client_id_is_left_to_validation_for_a_known_user() {
        let body = br#"{"clientId":"","tokenId":"t","operation":"read"}"#;
        let known = inbound(MessageKind::TokenResolve, body, Some("acme-backend"));
        assert!(gate(&strict(), &known).is_none());
        let unknown = inbound(MessageKind::TokenResolve, body, Some("guest"));
        assert!(gate(&strict(), &unknown).is_some());
    }

    #[test]
    fn a_replaced_mode_applies_to_the_next_check() {
        let gate_holder = Gate::default();
        let body = br#"{"clientId":"acme","endUserId":"u"}"#;
        let msg = inbound(MessageKind::LinkAccessTokens, body, None);
        assert!(gate(&gate_holder.current(), &msg).is_none());
        gate_holder.replace(strict());
        assert!(gate(&gate_holder.current(), &msg).is_some());
    }
}
