//! The Habitat event types, named as they travel as routing keys and `processed_events.event_type`.

use std::fmt;

/// One kind of Habitat event.
///
/// The runbook also publishes two imperative commands by hand, `period.close` and
/// `allocation.calculate`; they parse to [`EventType::PeriodClosed`] and
/// [`EventType::AllocationCalculated`] because the worker handles them the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A member submitted a contribution (`contribution.submitted`).
    ContributionSubmitted,
    /// A contribution was approved (`contribution.approved`).
    ContributionApproved,
    /// A contribution was rejected (`contribution.rejected`).
    ContributionRejected,
    /// An allocation period started (`period.opened`).
    PeriodOpened,
    /// An allocation period ended (`period.closed`, or the command `period.close`).
    PeriodClosed,
    /// A member's allocation for a period was computed (`allocation.calculated`, or the
    /// command `allocation.calculate`).
    AllocationCalculated,
    /// An allocation was paid out to the member's balance (`allocation.distributed`).
    AllocationDistributed,
    /// A payment for an allocation was started (`payment.initiated`).
    PaymentInitiated,
    /// A payment settled (`payment.completed`).
    PaymentCompleted,
}

impl EventType {
    /// Every event type, in the runbook's order.
    pub const ALL: [EventType; 9] = [
        EventType::ContributionSubmitted,
        EventType::ContributionApproved,
        EventType::ContributionRejected,
        EventType::PeriodOpened,
        EventType::PeriodClosed,
        EventType::AllocationCalculated,
        EventType::AllocationDistributed,
        EventType::PaymentInitiated,
        EventType::PaymentCompleted,
    ];

    /// The routing key and `event_type` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ContributionSubmitted => "contribution.submitted",
            EventType::ContributionApproved => "contribution.approved",
            EventType::ContributionRejected => "contribution.rejected",
            EventType::PeriodOpened => "period.opened",
            EventType::PeriodClosed => "period.closed",
            EventType::AllocationCalculated => "allocation.calculated",
            EventType::AllocationDistributed => "allocation.distributed",
            EventType::PaymentInitiated => "payment.initiated",
            EventType::PaymentCompleted => "payment.completed",
        }
    }

    /// Parses a routing key, accepting the runbook's command spellings as aliases.
    pub fn parse(name: &str) -> Option<EventType> {
        let alias = match name {
            "period.close" => Some(EventType::PeriodClosed),
            "allocation.calculate" => Some(EventType::AllocationCalculated),
            _ => None,
        };
        alias.or_else(|| EventType::ALL.into_iter().find(|t| t.as_str() == name))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::EventType;

    fn case(name: &str, expected: Option<EventType>) {
        assert_eq!(EventType::parse(name), expected, "parsing `{name}`");
    }

    #[test]
    fn parses_names_and_command_aliases() {
        for t in EventType::ALL {
            case(t.as_str(), Some(t));
        }
        case("period.close", Some(EventType::PeriodClosed));
        case(
            "allocation.calculate",
            Some(EventType::AllocationCalculated),
        );
        case("payment.refunded", None);
        case("", None);
    }
}
