#!/bin/sh
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d), as the
# superuser: the two roles of the service. Their passwords come from the compose file's environment.
#   ast_migrate  owns the database and its schema: ast-migrate runs as it (DDL).
#   ast_app      the API, the relay and the workers: rows only (20-grants.sql), no DDL.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v migrate_password="$AST_MIGRATE_PASSWORD" -v app_password="$AST_APP_PASSWORD" <<'SQL'
CREATE ROLE ast_migrate LOGIN PASSWORD :'migrate_password';
CREATE ROLE ast_app LOGIN PASSWORD :'app_password';
SQL
