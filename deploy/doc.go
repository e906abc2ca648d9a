// Package deploy holds the deployment files of the gateway (compose.yaml, kubernetes/, grafana/, build.sh) and the
// tests that prove them consistent with the binaries without a container engine: the Kubernetes manifests decode
// strictly into the API types after a kustomize build, every variable the files set is one the binaries read, the
// Dockerfile builds with build.sh and nothing else, and the real binaries, started with exactly the arguments and
// environment the files declare, serve an authenticated tool call.
//
// It is a module of its own so that Kubernetes' and kustomize's packages stay out of the gateway's module:
//
//	cd deploy && go test ./...
package deploy
