-- Fallback RegHook URL per client (issue 10, defect 9): when the client's
-- reghook fails (timeout, unreachable, HTTP 5xx, invalid reply, open circuit
-- breaker) the same request goes to this URL and its answer is used.
-- Dialplans need no change: {"callHook", "callHookFallback", "statusHook"}
-- objects are stored as they are in the dialplan JSON column.

ALTER TABLE clients ADD COLUMN reghook_fallback TEXT
    CHECK (reghook_fallback IS NULL OR reghook_fallback <> coalesce(reghook, ''));
