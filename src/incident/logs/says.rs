//! What a log line is and says: the server that wrote it ([`Flavor`]), its severity
//! ([`Level`]), its meaning for a backend connection ([`Says`], read from Apache's message codes
//! and errnos or nginx's wording by [`classify_apache`] and [`classify_nginx`]) and the backend
//! it names ([`BackendRef`]).

use std::net::IpAddr;

use crate::decode::Endpoint;
use crate::diagnose::Verdict;

/// Which server wrote the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Apache,
    Nginx,
}

impl Flavor {
    pub fn label(self) -> &'static str {
        match self {
            Flavor::Apache => "apache",
            Flavor::Nginx => "nginx",
        }
    }
}

/// Severity, as both servers name it (Apache's trace1..8 are `Debug`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Emerg,
    Alert,
    Crit,
    Error,
    Warn,
    Notice,
    Info,
    Debug,
}

impl Level {
    pub(super) fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "emerg" => Level::Emerg,
            "alert" => Level::Alert,
            "crit" => Level::Crit,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "notice" => Level::Notice,
            "info" => Level::Info,
            "debug" => Level::Debug,
            t if t.starts_with("trace") => Level::Debug,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// `warn` or more severe: a line the report counts as an error.
    pub(crate) fn is_error(self) -> bool {
        self <= Level::Warn
    }
}

/// What a log line says happened to a backend connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Says {
    /// "(111)Connection refused", nginx "connect() failed (111: Connection refused)".
    ConnectRefused,
    /// "(113)No route to host", network or host unreachable.
    ConnectUnreachable,
    /// The connect timed out (Apache AH00957 with (70007), nginx "upstream timed out ... while
    /// connecting to upstream").
    ConnectTimeout,
    /// Another connect failure (Apache AH01114 alone).
    ConnectFailed,
    /// No status line: the backend closed (Apache AH01102 (20014)/(70014), nginx "upstream
    /// prematurely closed connection while reading response header").
    NoResponseClosed,
    /// No status line: a reset ((104) Connection reset by peer).
    NoResponseReset,
    /// No status line before the proxy's timeout.
    NoResponseTimeout,
    /// The response broke off (Apache AH01110, nginx "... while reading upstream").
    ResponseFailed,
    /// The response stalled until the proxy's timeout.
    ResponseTimeout,
    /// The backend's answer was not a valid HTTP response (nginx "upstream sent no valid HTTP/1.0
    /// header").
    BadResponse,
    /// The request (body) could not be sent: the backend closed or reset (Apache AH01084, nginx
    /// "writev() failed (32: Broken pipe) while sending request to upstream").
    SendFailed,
    /// Sending the request stalled until the proxy's timeout.
    SendTimeout,
    /// The proxy's own client stopped sending the request body (Apache AH02608, nginx "client
    /// prematurely closed connection while sending request to upstream").
    ClientAbortedRequest,
    /// The proxy's client went away while the response came (nginx "client prematurely closed
    /// connection, so upstream connection is closed too").
    ClientGone,
    /// A backend error of another kind (TLS handshake, a message not recognised).
    BackendError,
    /// No connection was attempted (nginx "no live upstreams", Apache AH00940 worker in error,
    /// AH01170 all balancer members in error).
    NotTried,
    /// Not about a backend connection (startup, configuration, the client side).
    Other,
}

impl Says {
    /// A stable label (JSON `says`).
    pub fn label(self) -> &'static str {
        match self {
            Says::ConnectRefused => "connect-refused",
            Says::ConnectUnreachable => "connect-unreachable",
            Says::ConnectTimeout => "connect-timeout",
            Says::ConnectFailed => "connect-failed",
            Says::NoResponseClosed => "no-response-closed",
            Says::NoResponseReset => "no-response-reset",
            Says::NoResponseTimeout => "no-response-timeout",
            Says::ResponseFailed => "response-failed",
            Says::ResponseTimeout => "response-timeout",
            Says::BadResponse => "bad-response",
            Says::SendFailed => "send-failed",
            Says::SendTimeout => "send-timeout",
            Says::ClientAbortedRequest => "client-aborted-request",
            Says::ClientGone => "client-gone",
            Says::BackendError => "backend-error",
            Says::NotTried => "not-tried",
            Says::Other => "other",
        }
    }

    pub(super) fn is_connect(self) -> bool {
        matches!(
            self,
            Says::ConnectRefused | Says::ConnectUnreachable | Says::ConnectTimeout | Says::ConnectFailed
        )
    }

    /// Can a connection with this verdict be what the line is about? (`capture-incomplete`
    /// goes with every failure: the capture could not show it.)
    pub(crate) fn fits(self, v: Verdict) -> bool {
        use Verdict as V;
        if v == V::CaptureIncomplete {
            return !matches!(self, Says::NotTried | Says::Other);
        }
        match self {
            Says::ConnectRefused | Says::ConnectUnreachable => {
                matches!(v, V::ConnectRefused | V::ConnectTimeout)
            }
            Says::ConnectTimeout => matches!(v, V::ConnectTimeout | V::LostInTransit),
            Says::ConnectFailed => matches!(v, V::ConnectRefused | V::ConnectTimeout | V::LostInTransit),
            Says::NoResponseClosed | Says::NoResponseReset => matches!(
                v,
                V::BackendEmptyReply
                    | V::KeepaliveRace
                    | V::BackendClosedDuringRequest
                    | V::BackendBadResponse
                    | V::RstFromMiddlebox
                    | V::LostInTransit
            ),
            Says::NoResponseTimeout => {
                matches!(v, V::BackendTimeout | V::LostInTransit | V::ZeroWindowStall)
            }
            Says::ResponseFailed => matches!(
                v,
                V::ResponseTruncated | V::BackendBadResponse | V::RstFromMiddlebox | V::LostInTransit
            ),
            Says::ResponseTimeout => matches!(
                v,
                V::BackendTimeout | V::ResponseTruncated | V::BackendBadResponse | V::LostInTransit
            ),
            Says::BadResponse => matches!(v, V::BackendBadResponse | V::ResponseTruncated),
            Says::SendFailed => matches!(
                v,
                V::BackendClosedDuringRequest
                    | V::KeepaliveRace
                    | V::BackendEmptyReply
                    | V::RstFromMiddlebox
                    | V::LostInTransit
            ),
            Says::SendTimeout => {
                matches!(v, V::ZeroWindowStall | V::BackendTimeout | V::LostInTransit)
            }
            Says::ClientAbortedRequest => v == V::RequestIncomplete,
            Says::ClientGone => matches!(v, V::ProxyAborted | V::RequestIncomplete),
            Says::BackendError => v != V::Ok,
            Says::NotTried | Says::Other => false,
        }
    }
}

/// How a line names the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendRef {
    /// An address and port (`10.0.2.2:8080`, `[fd00:2::2]:8080`).
    Addr(Endpoint),
    /// An address without the port (Apache AH01114 "backend: 10.0.2.2").
    Ip(IpAddr),
    /// A host name and port (Apache names the backend as configured): only the port is compared.
    Named(String, u16),
}

impl BackendRef {
    /// Read from `ip:port`, `[v6]:port`, `name:port` or a bare address.
    pub(super) fn parse(s: &str) -> Option<BackendRef> {
        let s = s.trim().trim_end_matches(['/', ',', '.']);
        if let Ok(e) = s.parse::<Endpoint>() {
            return Some(BackendRef::Addr(e));
        }
        if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Some(BackendRef::Ip(ip));
        }
        let (host, port) = s.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let name_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        name_ok.then(|| BackendRef::Named(host.to_ascii_lowercase(), port))
    }

    /// Read from an `address:port` (Apache writes IPv6 resolved addresses without brackets:
    /// `fd00:2::2:8080`).
    pub(super) fn parse_addr_port(s: &str) -> Option<BackendRef> {
        let s = s.trim();
        if let Some((ip, port)) = s.rsplit_once(':')
            && let (Ok(ip), Ok(port)) = (
                ip.trim_start_matches('[').trim_end_matches(']').parse(),
                port.parse(),
            )
        {
            return Some(BackendRef::Addr(Endpoint { ip, port }));
        }
        BackendRef::parse(s)
    }

    pub(super) fn strength(&self) -> u8 {
        match self {
            BackendRef::Addr(_) => 2,
            BackendRef::Ip(_) | BackendRef::Named(..) => 1,
        }
    }

    /// Could a connection to `e` be to this backend?
    pub(crate) fn matches(&self, e: Endpoint) -> bool {
        match self {
            BackendRef::Addr(a) => *a == e,
            BackendRef::Ip(ip) => *ip == e.ip,
            BackendRef::Named(_, port) => *port == e.port,
        }
    }

    pub(super) fn words(&self) -> String {
        match self {
            BackendRef::Addr(e) => e.to_string(),
            BackendRef::Ip(ip) => ip.to_string(),
            BackendRef::Named(h, p) => format!("{h}:{p}"),
        }
    }
}

/// How a line takes part in an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Starts an event (or, in an Apache request already failing, joins it).
    Primary,
    /// Follows a primary line about the same failure (AH01114 after AH00957); alone, it is an
    /// event of its own.
    Companion,
}

/// What an Apache line says (None: nothing about a backend connection).
pub(super) fn classify_apache(
    module: Option<&str>,
    code: Option<&str>,
    errno: Option<u32>,
    msg: &str,
) -> Option<(Says, Role)> {
    let timeout = matches!(errno, Some(70007 | 110 | 10060 | 60));
    let reset = matches!(errno, Some(104 | 10054 | 54));
    use Role::*;
    Some(match code.unwrap_or("") {
        "AH00957" => (
            match errno {
                Some(111 | 146 | 10061 | 61) => Says::ConnectRefused,
                Some(113 | 101 | 112 | 65 | 10065 | 10051 | 51) => Says::ConnectUnreachable,
                _ if timeout => Says::ConnectTimeout,
                _ => Says::ConnectFailed,
            },
            Primary,
        ),
        "AH01114" | "AH00959" => (Says::ConnectFailed, Companion),
        // A worker in error state (AH00940), or every member of a balancer (AH01170): the proxy
        // answered itself without trying a connection.
        "AH00940" | "AH01170" => (Says::NotTried, Primary),
        "AH01102" => (
            if timeout {
                Says::NoResponseTimeout
            } else if reset {
                Says::NoResponseReset
            } else {
                Says::NoResponseClosed
            },
            Primary,
        ),
        "AH00898" => (Says::BackendError, Companion),
        "AH01110" => (
            if timeout {
                Says::ResponseTimeout
            } else {
                Says::ResponseFailed
            },
            Primary,
        ),
        "AH01084" => (
            if timeout {
                Says::SendTimeout
            } else {
                Says::SendFailed
            },
            Primary,
        ),
        "AH01097" => (Says::SendFailed, Companion),
        "AH02608" | "AH01095" => (Says::ClientAbortedRequest, Primary),
        _ => {
            // Another message of the proxy modules about the backend (Apache 2.2 has no codes).
            let m = msg.to_ascii_lowercase();
            let proxy_module = module.is_none_or(|m| m.starts_with("proxy"));
            if proxy_module
                && (m.contains("remote server") || m.contains("backend") || m.contains("returned by"))
            {
                if m.contains("bad") && (m.contains("header") || m.contains("status")) {
                    (Says::BadResponse, Primary)
                } else {
                    (Says::BackendError, Primary)
                }
            } else {
                return None;
            }
        }
    })
}

/// What an nginx line says (None: nothing about a backend connection).
pub(super) fn classify_nginx(msg: &str) -> Option<(Says, Role)> {
    let m = msg.to_ascii_lowercase();
    let timeout = m.contains("timed out");
    let reset = m.contains("(104:") || m.contains("reset by peer");
    let client_gone = m.contains("client prematurely closed") || m.contains("client closed");
    use Role::*;
    let says = if m.contains("no live upstreams") {
        Says::NotTried
    } else if m.contains("upstream server temporarily disabled") {
        return Some((Says::ConnectFailed, Companion));
    } else if m.contains("while connecting to upstream") {
        if m.contains("(111:") || m.contains("connection refused") {
            Says::ConnectRefused
        } else if ["(113:", "(101:", "(112:", "no route to host", "unreachable"]
            .iter()
            .any(|k| m.contains(k))
        {
            Says::ConnectUnreachable
        } else if timeout {
            Says::ConnectTimeout
        } else {
            Says::ConnectFailed
        }
    } else if m.contains("while sending request to upstream") {
        if client_gone {
            Says::ClientAbortedRequest
        } else if timeout {
            Says::SendTimeout
        } else {
            Says::SendFailed
        }
    } else if m.contains("while reading response header from upstream") {
        if timeout {
            Says::NoResponseTimeout
        } else if m.contains("upstream sent") {
            Says::BadResponse
        } else if reset {
            Says::NoResponseReset
        } else if m.contains("prematurely closed") {
            Says::NoResponseClosed
        } else if client_gone {
            Says::ClientGone
        } else {
            Says::BackendError
        }
    } else if m.contains("while reading upstream") {
        if client_gone {
            Says::ClientGone
        } else if timeout {
            Says::ResponseTimeout
        } else if m.contains("upstream sent") {
            Says::BadResponse
        } else {
            Says::ResponseFailed
        }
    } else if m.contains("to upstream") || m.contains("from upstream") || m.contains("upstream") {
        if client_gone {
            Says::ClientGone
        } else {
            Says::BackendError
        }
    } else {
        return None;
    };
    Some((says, Primary))
}
