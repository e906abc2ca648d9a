# One image with both binaries: /usr/local/bin/gateway (the default command) and /usr/local/bin/tools.
#
#   docker build -t mcp-gateway .
#   docker run --rm -p 3000:3000 -e MCP_USE_OAUTH_WORKOS_SUBDOMAIN=my-app-54 mcp-gateway
#   docker run --rm mcp-gateway tools --help
#
# The binaries are built by deploy/build.sh, the script CI builds with, so the two cannot differ. GO_VERSION must be the
# go line of go.mod (the deploy module's tests check it). For a byte-for-byte repeatable image, pin the runtime image by
# digest: --build-arg RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:<digest>.
#
# It builds with BuildKit (docker buildx build, Docker 23 and later) and with the classic builder (DOCKER_BUILDKIT=0,
# Debian's and Ubuntu's docker.io without docker-buildx) alike, so it uses nothing only BuildKit knows (the deploy
# module's tests check): no heredocs, no RUN --mount, no COPY --chmod or --link, and no BuildKit platform argument in
# FROM. The build stage therefore runs on the target platform: a multi-platform build (--platform linux/amd64,linux/arm64)
# compiles under emulation for the other architecture, which is slower, but the binaries are the same.

ARG GO_VERSION=1.26.8
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM docker.io/library/golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Set by BuildKit to the stage's platform, empty with the classic builder: either way Go builds for the machine it runs on.
ARG TARGETOS
ARG TARGETARCH
# nodev leaves the gateway's development mode out; --build-arg BUILD_TAGS= keeps it (deploy/compose.yaml's dev profile).
ARG BUILD_TAGS=nodev
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH BUILD_TAGS=$BUILD_TAGS deploy/build.sh /out

# distroless/static: CA certificates, time zones and a non-root user; no shell, no package manager.
FROM ${RUNTIME_IMAGE}
ARG RUNTIME_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mcp-gateway" \
      org.opencontainers.image.description="Authenticating OAuth 2.1 gateway for MCP servers, and the example MCP tool service" \
      org.opencontainers.image.source="https://github.com/mcp-gateway/gateway" \
      org.opencontainers.image.url="https://github.com/mcp-gateway/gateway" \
      org.opencontainers.image.documentation="https://github.com/mcp-gateway/gateway#deploy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
COPY --from=build /out/gateway /out/tools /usr/local/bin/
# Commands are looked up here whatever the runtime image sets.
ENV PATH=/usr/local/bin
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
# 3000: the gateway (GATEWAY_LISTEN_ADDR). 9090: its metrics, when GATEWAY_METRICS_ADDR is set to listen beyond loopback.
EXPOSE 3000 9090
# GET /healthz on GATEWAY_LISTEN_ADDR over loopback, without a shell. A tools container overrides it with
# "tools --healthcheck" (deploy/compose.yaml does).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["gateway", "--healthcheck"]
CMD ["gateway"]
