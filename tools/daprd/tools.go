//go:build tools

// Package tools pins the daprd command so that `go mod tidy` records its dependencies.
package tools

import _ "github.com/dapr/dapr/cmd/daprd"
