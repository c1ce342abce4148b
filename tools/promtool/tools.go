//go:build tools

// Tool module that builds promtool (Prometheus's rule checker and unit tester) from Go modules.
// tools/bootstrap.py builds it with -tags remove_all_sd: no service discovery plugins, a much
// smaller build; promtool's `check rules` and `test rules` do not need them.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
