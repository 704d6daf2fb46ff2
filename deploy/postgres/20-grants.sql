-- The database role split, run once as the superuser in the service's database after the roles
-- exist (10-roles.sh in the compose stack). tests/integration/test_db_roles.py runs this same file.
--
-- ast_migrate owns the database and the public schema, so the tables `ast-migrate` creates are
-- its own; ast_app may connect, use the schema, and read and write rows of every table and
-- sequence ast_migrate creates (default privileges), and nothing else: no CREATE, ALTER, DROP or
-- TRUNCATE. Nobody else may connect.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I OWNER TO ast_migrate', current_database());
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO ast_app', current_database());
END
$$;

ALTER SCHEMA public OWNER TO ast_migrate;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO ast_app;

ALTER DEFAULT PRIVILEGES FOR ROLE ast_migrate IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ast_app;
ALTER DEFAULT PRIVILEGES FOR ROLE ast_migrate IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO ast_app;
