"""Abuse protection: password-guessing bans shared through Redis, a per-source request-rate
limit, and the exemptions (ABUSE_ALLOW, trunk CIDRs). See README "Abuse protection".

``policy`` is pure (settings import it); ``redis`` holds the counters, ``guard`` is the
service actions and the dispatcher use, ``cli`` the ``dragonpbx bans`` command.
"""
