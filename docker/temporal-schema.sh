#!/bin/sh
# Brings the Temporal and visibility schemas to this admin-tools image's
# version, as temporalio/auto-setup (deprecated) used to on every start:
# setup-schema -v 0.0 and update-schema change nothing when current. The
# databases themselves are made by postgres-init.sql on a fresh volume.
# temporal-sql-tool reads SQL_PASSWORD from the environment.
set -eu
schema=/etc/temporal/schema/postgresql/v12
for pair in temporal:temporal temporal_visibility:visibility; do
  db=${pair%%:*}
  dir=${pair#*:}
  temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p 5432 -u "$SQL_USER" --db "$db" setup-schema -v 0.0
  temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p 5432 -u "$SQL_USER" --db "$db" update-schema -d "$schema/$dir/versioned"
done
