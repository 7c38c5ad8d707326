//! Why the relay closes a WebSocket, and the close code it sends for each reason
//! (PROTOCOL.md §3.5). Clients match on the code, never on the reason text.

use super::ErrorCode;

/// 1000: a normal close.
pub const NORMAL: u16 = 1000;
/// 1001: the relay is going away (shutting down); reconnect later.
pub const GOING_AWAY: u16 = 1001;
/// 1008: a fatal protocol or authentication error, named in the reason text.
pub const POLICY: u16 = 1008;
/// 1013: try again later (the relay's connection caps or login rate are reached).
pub const TRY_AGAIN_LATER: u16 = 1013;
/// 4001: a newer connection of the same identity took over. The client should not
/// reconnect at once, or two of its processes will keep replacing each other.
pub const REPLACED: u16 = 4001;
/// 4002: the peer stopped reading: its control queue overflowed.
pub const NOT_READING: u16 = 4002;

/// Why the relay closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// After a fatal `error` frame with this code.
    Fatal(ErrorCode),
    /// A newer login or resume of the same identity replaced this connection.
    Replaced,
    /// The peer stopped reading its socket.
    NotReading,
}

impl CloseReason {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Fatal(ErrorCode::ShuttingDown) => GOING_AWAY,
            CloseReason::Fatal(ErrorCode::TooManyConnections | ErrorCode::RateLimited) => {
                TRY_AGAIN_LATER
            }
            CloseReason::Fatal(_) => POLICY,
            CloseReason::Replaced => REPLACED,
            CloseReason::NotReading => NOT_READING,
        }
    }

    /// The close frame's reason text (for humans and logs).
    pub fn reason(self) -> &'static str {
        match self {
            CloseReason::Fatal(ErrorCode::ShuttingDown) => "relay shutting down",
            CloseReason::Fatal(ErrorCode::TooManyConnections) => "too many connections",
            CloseReason::Fatal(ErrorCode::RateLimited) => "too many logins from this address",
            CloseReason::Fatal(code) => code.as_str(),
            CloseReason::Replaced => "replaced by a newer connection",
            CloseReason::NotReading => "not reading",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_private_ones_in_the_private_range() {
        let all = [
            CloseReason::Fatal(ErrorCode::ShuttingDown),
            CloseReason::Fatal(ErrorCode::TooManyConnections),
            CloseReason::Fatal(ErrorCode::AuthFailed),
            CloseReason::Replaced,
            CloseReason::NotReading,
        ];
        let codes: std::collections::HashSet<u16> = all.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), all.len());
        assert!((4000..5000).contains(&REPLACED) && (4000..5000).contains(&NOT_READING));
        assert_eq!(CloseReason::Fatal(ErrorCode::AuthFailed).reason(), "auth_failed");
    }
}
