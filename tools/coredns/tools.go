//go:build tools

// Package tools pins the coredns command so that `go mod tidy` records its dependencies.
package tools

import _ "github.com/coredns/coredns"
