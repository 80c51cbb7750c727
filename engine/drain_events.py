"""The event the daemon delivers to live calls when a drain's grace period is over.

On SIGTERM the daemon refuses new calls and lets live ones go on for
``SHUTDOWN_GRACE_SECS``. A call still up then gets ``app.shutdown``;
machines/inbound_call.yaml decides what that does (BYE/503 to the caller, the
verb hangs up its legs, the usual clean-up of the RTPEngine session and the
``call:*`` record), so no session or record outlives the process. Declared here
(an event source of ``engine.vocabulary``) so `dragonpbx validate` knows it.
"""

from __future__ import annotations

from engine.fsm import declare_events

SHUTDOWN_EVENT = "app.shutdown"

declare_events("app", [SHUTDOWN_EVENT],
               "app.shutdown: the drain's grace period ended with the call still up (SIGTERM)")
