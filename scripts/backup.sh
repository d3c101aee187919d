#!/usr/bin/env bash
# Back up Zhufu: the PostgreSQL database (pg_dump custom format) and the model files under the var
# folder (checkpoints/, runs/, judges/), with SHA-256 checksums of everything and the row count of
# every table, so that scripts/restore.sh can prove the copy complete.
#
#   DATABASE_URL=postgres://user:pass@host:5432/zhufu ZHUFU_VAR_DIR=var scripts/backup.sh [OUT_DIR]
#
# Writes OUT_DIR/zhufu-backup-<UTC time>/ (OUT_DIR defaults to ./backups) and prints its path last.
# pg_dump reads one consistent snapshot while the app keeps running; checkpoint folders are written
# atomically (a temporary folder renamed into place), so temporary folders are left out.
set -euo pipefail

die() { echo "backup: $*" >&2; exit 1; }
[[ "${DATABASE_URL:-}" =~ ^postgres(ql)?:// ]] || die "DATABASE_URL must be a postgres:// URL (SQLite demo data: copy var/ instead)"
for tool in pg_dump psql tar sha256sum; do command -v "$tool" >/dev/null || die "$tool is not installed"; done

repo="$(cd "$(dirname "$0")/.." && pwd)"
var_dir="$(cd "${ZHUFU_VAR_DIR:-$repo/var}" && pwd)" || die "no var folder at ${ZHUFU_VAR_DIR:-$repo/var}"
out_root="${1:-$repo/backups}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="$out_root/zhufu-backup-$stamp"
mkdir -p "$out_root"
[[ ! -e "$out" ]] || die "$out exists already"
work="$out.partial"  # renamed into place at the end: a folder without .partial is a complete backup
rm -rf "$work"
mkdir -p "$work"

# One REPEATABLE READ transaction exports its snapshot: pg_dump dumps exactly that snapshot and the row
# counts are read in it too, so the counts describe the dump even while the app keeps writing.
coproc SNAPSHOT { psql "$DATABASE_URL" -XAtq -v ON_ERROR_STOP=1; }
ask() {  # send SQL to the snapshot session; print its output lines up to a sentinel
  printf '%s\n' "$1" "SELECT '__end__';" >&"${SNAPSHOT[1]}"
  local line
  while IFS= read -r -t 600 line <&"${SNAPSHOT[0]}"; do [[ "$line" == "__end__" ]] && return 0; echo "$line"; done
  die "the database session stopped answering"
}
snapshot="$(ask "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot();")"
[[ -n "$snapshot" ]] || die "could not export a snapshot"

echo "backup: database -> db.dump" >&2
pg_dump --format=custom --no-owner --no-acl --snapshot="$snapshot" --file="$work/db.dump" "$DATABASE_URL"

echo "backup: row counts -> row_counts.tsv" >&2
ask "SELECT tablename || E'\t' || (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I',
       schemaname, tablename), false, true, '')))[1]::text FROM pg_tables WHERE schemaname = 'public'
     ORDER BY tablename;" > "$work/row_counts.tsv"
ask "COMMIT;" >/dev/null
exec {SNAPSHOT[1]}>&-

folders=()
for name in checkpoints runs judges; do if [[ -d "$var_dir/$name" ]]; then folders+=("$name"); fi; done
echo "backup: files (${folders[*]:-none}) -> files.tar, files.sha256" >&2
: > "$work/files.sha256"
if ((${#folders[@]})); then
  (cd "$var_dir" && find "${folders[@]}" -type f ! -path '*/.*.tmp-*' ! -path '*/.*.old-*' -print0 \
     | sort -z | xargs -0 --no-run-if-empty sha256sum) > "$work/files.sha256"
fi
(cd "$var_dir" && tar --create --file="$work/files.tar" --exclude='.*.tmp-*' --exclude='.*.old-*' \
   --files-from=/dev/null ${folders[@]+"${folders[@]}"})

{
  echo "created $stamp"
  echo "var_dir $var_dir"
  echo "database $(psql "$DATABASE_URL" -XAt -c 'SELECT current_database()')"
  echo "pg_dump $(pg_dump --version)"
  echo "tables $(wc -l < "$work/row_counts.tsv")"
  echo "files $(wc -l < "$work/files.sha256")"
} > "$work/manifest.txt"
(cd "$work" && sha256sum db.dump files.tar files.sha256 row_counts.tsv manifest.txt > SHA256SUMS)
mv "$work" "$out"
echo "backup: done: $(wc -l < "$out/row_counts.tsv") tables, $(wc -l < "$out/files.sha256") files" >&2
echo "$out"
