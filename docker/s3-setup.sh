#!/bin/sh
# Creates the worker's own S3 account (role "user": no bucket of its own,
# only what docker/worker-bucket-policy.json grants), once.
set -eu
admin() { versitygw admin --er "$S3_ENDPOINT_URL" "$@"; }
if admin list-users | awk '{print $1}' | grep -qx "$WORKER_ACCESS_KEY"; then
  echo "the worker's account $WORKER_ACCESS_KEY exists"
else
  admin create-user -a "$WORKER_ACCESS_KEY" -s "$WORKER_SECRET_KEY" -r user
  echo "created the worker's account $WORKER_ACCESS_KEY"
fi
