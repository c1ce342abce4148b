//go:build tools

// Package tools pins the daprd command and the Dapr control plane commands TaskFlow's cluster runs
// (operator, sidecar injector, sentry; placement and scheduler stay off) so that `go mod tidy`
// records their dependencies.
package tools

import (
	_ "github.com/dapr/dapr/cmd/daprd"
	_ "github.com/dapr/dapr/cmd/injector"
	_ "github.com/dapr/dapr/cmd/operator"
	_ "github.com/dapr/dapr/cmd/sentry"
)
