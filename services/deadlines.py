"""How long a coordinator's sessions and answers may take, and how its queries share sessions: defaults a command
line shows without loading the node."""

DEFAULT_TIMEOUT = 30.0  # seconds a session may last when its query gives no deadline
SEND_TIMEOUT = 60.0  # seconds an analyst may leave a release part unread before the call is closed
COALESCED_SESSIONS = 2  # sessions in flight per group of small single queries; those arriving meanwhile run together
