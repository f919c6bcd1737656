#!/usr/bin/env bash
# Compile time of 200 annotated functions: `cargo build` wall time of a generated crate with 200
# plain async fns, 200 under #[db_retry], and 200 under #[tracing::instrument], as ratios to the
# plain crate, all measured in this run. Dependencies are built once first (shared target dir),
# so each timing is the crate itself.
#
#   bash benches/compile_time.sh [runs]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR="$work/target"

generate() { # name attribute
    local dir="$work/$1"
    mkdir -p "$dir/src"
    cat >"$dir/Cargo.toml" <<TOML
[package]
name = "$1"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
db-retry = { path = "$root" }
sqlx = { version = "0.8", default-features = false, features = ["runtime-tokio", "sqlite"] }
tracing = "0.1"

[workspace]
TOML
    {
        echo "use sqlx::SqlitePool;"
        for i in $(seq 1 200); do
            [ -n "$2" ] && echo "$2"
            echo "pub async fn find_$i(pool: &SqlitePool, id: i64) -> Result<i64, sqlx::Error> {"
            echo "    sqlx::query_scalar(\"SELECT ? + $i\").bind(id).fetch_one(pool).await"
            echo "}"
        done
    } >"$dir/src/lib.rs"
}

generate plain ""
generate db_retry "#[db_retry::db_retry]"
generate instrument "#[tracing::instrument(skip(pool))]"

# Warm the shared target dir with every dependency.
for crate in plain db_retry instrument; do
    (cd "$work/$crate" && cargo build -q 2>/dev/null)
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A result
for crate in plain db_retry instrument; do
    times=()
    for _ in $(seq 1 "$runs"); do
        touch "$work/$crate/src/lib.rs"
        start=$(date +%s.%N)
        (cd "$work/$crate" && cargo build -q)
        end=$(date +%s.%N)
        times+=("$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')")
    done
    result[$crate]=$(printf '%s\n' "${times[@]}" | median)
done

echo "| crate (200 async fns) | median cargo build (s) | ratio to plain |"
echo "|---|---|---|"
for crate in plain db_retry instrument; do
    awk -v c="$crate" -v t="${result[$crate]}" -v p="${result[plain]}" \
        'BEGIN { printf "| %s | %.2f | %.2f |\n", c, t, t / p }'
done
