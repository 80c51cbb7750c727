"""The events the HTTP API delivers to machines (declared for the machine linter).

Imported by ``engine.actions.load_all`` so `dragonpbx validate` knows them even
when the API is off.
"""

from __future__ import annotations

from engine.fsm import declare_events

HANGUP_EVENT = "api.hangup"

declare_events("api", [HANGUP_EVENT],
               "api.hangup: an operator hung the call up (DELETE /api/v1/calls/{call_id})")
