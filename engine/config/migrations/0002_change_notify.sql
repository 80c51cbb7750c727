-- Tell running engines that the configuration changed: every statement that
-- writes a configuration table sends NOTIFY dragonpbx_config '<table>'.
-- Statement-level, so an import of thousands of rows is one notification per
-- table (and PostgreSQL folds identical notifications of one transaction).
-- Engines also poll every CONFIG_TTL seconds, so a missed notification only
-- delays a change.

CREATE FUNCTION dragonpbx_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dragonpbx_config', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER domains_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON domains
    FOR EACH STATEMENT EXECUTE FUNCTION dragonpbx_config_changed();
CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION dragonpbx_config_changed();
CREATE TRIGGER trunks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON trunks
    FOR EACH STATEMENT EXECUTE FUNCTION dragonpbx_config_changed();
