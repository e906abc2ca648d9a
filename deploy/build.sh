#!/bin/sh
# The one command that builds the release binaries. The Dockerfile runs it, and so do the deploy module's tests that CI
# runs (.ci/deploy-checks), so the image and the binaries CI tests are built the same way.
#
#   deploy/build.sh OUTDIR                  writes OUTDIR/gateway and OUTDIR/tools for this machine
#   GOOS=linux GOARCH=arm64 deploy/build.sh OUTDIR
#   BUILD_TAGS= deploy/build.sh OUTDIR      with the gateway's development mode (--dev)
#
# Static (no cgo), reproducible (no file system paths, no VCS stamp, empty build id) and stripped. BUILD_TAGS defaults
# to nodev: a production gateway carries no development authorization server.
set -eu
tags=${BUILD_TAGS-nodev}
if [ "$#" -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
CGO_ENABLED=0 exec go build -tags="$tags" -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$out/" ./cmd/gateway ./cmd/tools
