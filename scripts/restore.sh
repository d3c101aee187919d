#!/usr/bin/env bash
# Restore a backup made by scripts/backup.sh into a FRESH database and a fresh var folder, then prove
# it: checksums of the backup, of every restored file, and the row count of every table.
#
#   DATABASE_URL=postgres://user:pass@host:5432/zhufu_restored ZHUFU_VAR_DIR=/srv/zhufu/var \
#     scripts/restore.sh backups/zhufu-backup-<UTC time>
#
# The database is created when it does not exist; one that holds tables is refused, and so is a var
# folder whose checkpoints/, runs/ or judges/ is not empty (nothing is overwritten). Paths that the
# database stores under the old var folder (checkpoint and judge folders) are rewritten to the new one.
set -euo pipefail

die() { echo "restore: $*" >&2; exit 1; }
backup="${1:-}"
[[ -n "$backup" && -f "$backup/SHA256SUMS" ]] || die "usage: restore.sh BACKUP_DIR (a folder written by backup.sh)"
[[ "${DATABASE_URL:-}" =~ ^postgres(ql)?:// ]] || die "DATABASE_URL must be the postgres:// URL of the database to restore into"
[[ -n "${ZHUFU_VAR_DIR:-}" ]] || die "ZHUFU_VAR_DIR must name the var folder to restore the files into"
for tool in pg_restore psql tar sha256sum; do command -v "$tool" >/dev/null || die "$tool is not installed"; done
backup="$(cd "$backup" && pwd)"

echo "restore: checking the backup's checksums" >&2
(cd "$backup" && sha256sum --check --quiet SHA256SUMS) || die "$backup is damaged: checksums do not match"
old_var="$(sed -n 's/^var_dir //p' "$backup/manifest.txt")"

mkdir -p "$ZHUFU_VAR_DIR"
var_dir="$(cd "$ZHUFU_VAR_DIR" && pwd)"
for name in checkpoints runs judges; do
  if [[ -d "$var_dir/$name" ]] && [[ -n "$(ls -A "$var_dir/$name")" ]]; then
    die "$var_dir/$name is not empty: restore into a fresh var folder"
  fi
done

url="${DATABASE_URL%%\?*}"
database="${url##*/}"
[[ -n "$database" && "$database" != "$url" ]] || die "DATABASE_URL names no database"
maintenance="${url%/*}/postgres"
exists="$(psql "$maintenance" -XAt -v ON_ERROR_STOP=1 -v db="$database" \
  <<< "SELECT 1 FROM pg_database WHERE datname = :'db'")" || die "cannot reach the server's postgres database"
if [[ "$exists" != "1" ]]; then
  echo "restore: creating database $database" >&2
  psql "$maintenance" -XAtq -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"${database//\"/\"\"}\""
fi
tables="$(psql "$DATABASE_URL" -XAt -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")"
[[ "$tables" == "0" ]] || die "database $database holds $tables tables: restore into a fresh database"

echo "restore: database <- db.dump" >&2
pg_restore --no-owner --no-acl --exit-on-error --single-transaction --dbname="$DATABASE_URL" "$backup/db.dump"

echo "restore: files <- files.tar" >&2
tar --extract --file="$backup/files.tar" --directory="$var_dir" --no-same-owner
(cd "$var_dir" && sha256sum --check --quiet "$backup/files.sha256") || die "restored files do not match their checksums"

if [[ -n "$old_var" && "$old_var" != "$var_dir" ]]; then
  echo "restore: paths $old_var/... -> $var_dir/..." >&2
  # Every text, varchar and jsonb column of the public schema: replace the old var prefix where it occurs.
  psql "$DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -v old="$old_var/" -v new="$var_dir/" >/dev/null <<'SQL'
SELECT set_config('restore.old', :'old', false), set_config('restore.new', :'new', false);
DO $$
DECLARE
  col record;
  old text := current_setting('restore.old');
  new text := current_setting('restore.new');
  old_json text := btrim(to_json(old)::text, '"');  -- as the path appears inside a JSON string
  new_json text := btrim(to_json(new)::text, '"');
BEGIN
  FOR col IN SELECT table_name, column_name, data_type FROM information_schema.columns
             WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'jsonb') LOOP
    IF col.data_type = 'jsonb' THEN
      EXECUTE format('UPDATE %I SET %I = replace(%I::text, %L, %L)::jsonb WHERE strpos(%I::text, %L) > 0',
                     col.table_name, col.column_name, col.column_name, old_json, new_json, col.column_name, old_json);
    ELSE
      EXECUTE format('UPDATE %I SET %I = replace(%I, %L, %L) WHERE strpos(%I, %L) > 0',
                     col.table_name, col.column_name, col.column_name, old, new, col.column_name, old);
    END IF;
  END LOOP;
END $$;
SQL
fi

echo "restore: comparing row counts" >&2
mismatches=0
while IFS=$'\t' read -r table expected; do
  got="$(psql "$DATABASE_URL" -XAt -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM \"${table//\"/\"\"}\"")"
  if [[ "$got" != "$expected" ]]; then
    echo "restore: $table has $got rows, the backup had $expected" >&2
    mismatches=$((mismatches + 1))
  fi
done < "$backup/row_counts.tsv"
((mismatches == 0)) || die "$mismatches tables differ from the backup"
echo "restore: done: $(wc -l < "$backup/row_counts.tsv") tables and $(wc -l < "$backup/files.sha256") files match the backup" >&2
